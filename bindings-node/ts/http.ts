/**
 * Plain `node:http` (`vlexivo/http`): a `(req, res)` handler behind a paywall.
 *
 *   http.createServer(withPaywall((req, res) => res.end(JSON.stringify(req.vlxPayment)), { apiSecret, price: '0.001' }))
 *
 * Core decides (`policy.ts`, the native paywall); the paid response is followed by `paid.ts`,
 * as for Express: the receipt goes out with the headers when core says the status keeps the
 * payment, and the nonce is settled from the handler's outcome (its response's status, or its
 * throw or rejection), never from the connection.
 *
 * node:http parses no body, so a paywall whose price resolver (or `bindBody`) needs it reads
 * it first, up to `bodyLimit` bytes: `req.rawBody` (a Buffer) and `req.body` (the parsed JSON
 * for a JSON content type) are then there for the resolver and the handler.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { VlexivoServer, serverOf, SERVER_KEYS, type VlexivoServerOptions } from './server';
import { exposesHeaders, isFreeRequest } from './policy';
import { handlerFailed, watch } from './paid';
import { PaidRoute, PAYER_HEADER, PAYWALL_KEYS, PROOF_HEADER, exposeValue, forBrowser, headerValue, isPaid, isThenable, paymentOf, pick, type Decision, type PaywallOptions, type Rejection, type VlexivoPayer, type VlexivoPayment } from './route';

/** The request a paid handler receives. */
export interface PaidIncomingMessage extends IncomingMessage {
  /** Verified payment facts (set on paid requests). */
  vlxPayment?: VlexivoPayment;
  /** The request body's bytes, when the paywall read it (`readBody`). */
  rawBody?: Buffer;
  /** The parsed JSON body (JSON content types), when the paywall read it. */
  body?: unknown;
  /** Who the request is priced for (a resolver-priced paywall): proven by its proof, else hinted. */
  vlxPayer?: VlexivoPayer | null;
}

export type HttpHandler = (req: PaidIncomingMessage, res: ServerResponse) => unknown;

export interface VlexivoHttpOptions extends VlexivoServerOptions, PaywallOptions<PaidIncomingMessage> {
  /** Share one server (keys, nonce store) between paywalls. */
  server?: VlexivoServer;
  /**
   * Read the body before the paywall decides (`req.rawBody`, `req.body`). Default: when there
   * is a `priceResolver` or `bindBody`. The handler then finds the stream consumed.
   */
  readBody?: boolean;
  /** Largest body read, in bytes (default 1 MiB): a larger one is 413 `request_too_large`. */
  bodyLimit?: number;
}

const HTTP_KEYS: readonly string[] = [...SERVER_KEYS, ...PAYWALL_KEYS, 'server', 'readBody', 'bodyLimit'];
const DEFAULT_BODY_LIMIT = 1 << 20;

function expose(route: PaidRoute<any>, req: IncomingMessage, res: ServerResponse): void {
  if (!route.exposeHeaders || !exposesHeaders(req.headers.origin !== undefined)) return;
  const v = exposeValue(res.getHeader('Access-Control-Expose-Headers'));
  if (v !== undefined) res.setHeader('Access-Control-Expose-Headers', v);
}

function send(route: PaidRoute<any>, req: IncomingMessage, res: ServerResponse, r: Rejection): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const page = forBrowser(r, req.headers.accept, req.headers[PROOF_HEADER] !== undefined);
  res.statusCode = page.status;
  // JSON unless core's page for a browser says otherwise.
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  for (const k in page.headers) res.setHeader(k, page.headers[k]);
  expose(route, req, res);
  res.end(page.body);
}

/**
 * The body's bytes, `null` past `limit` (the rest is drained, not kept), or `undefined` when
 * the client went away before sending it all (nothing to answer).
 */
function readAll(req: IncomingMessage, limit: number): Promise<Buffer | null | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      if (!over) chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks, size)));
    // After 'end' this changes nothing (the first answer stands).
    req.on('close', () => resolve(undefined));
    req.on('error', reject);
  });
}

function parseJson(req: IncomingMessage, raw: Buffer): unknown {
  const type = req.headers['content-type'] ?? '';
  if (raw.length === 0 || !/^application\/([\w.+-]*\+)?json/i.test(type)) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * `handler` behind a paywall, as a `node:http` request listener. A handler that throws or
 * rejects before its response is complete releases the nonce; this listener then answers 500
 * if nothing was sent yet.
 */
export function withPaywall(handler: HttpHandler, options: VlexivoHttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  if (typeof handler !== 'function') throw new TypeError('withPaywall needs a (req, res) handler');
  const server = serverOf(options ?? {}, HTTP_KEYS, 'vlexivo http paywall');
  const route = server.route<PaidIncomingMessage>(pick(options, PAYWALL_KEYS));
  const readBody = options.readBody ?? (route.resolver !== undefined || route.bindBody);
  const limit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;

  const run = (req: PaidIncomingMessage, res: ServerResponse, paid: boolean): void => {
    const failed = (e: unknown): void => {
      if (paid) handlerFailed(res);
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.end(JSON.stringify({ error: 'internal', message: 'handler failed' }));
      } else if (!res.writableEnded) {
        res.destroy();
      }
      if (server.logger.warn !== undefined) server.logger.warn(`[vlexivo] handler failed: ${e instanceof Error ? e.message : String(e)}`);
    };
    let out: unknown;
    try {
      out = handler(req, res);
    } catch (e) {
      failed(e);
      return;
    }
    if (isThenable(out)) out.then(undefined, failed);
  };

  const decided = (req: PaidIncomingMessage, res: ServerResponse, r: Decision): void => {
    if (!isPaid(r)) {
      send(route, req, res, r);
      return;
    }
    req.vlxPayment = paymentOf(r);
    watch(res, r, route, [route]);
    expose(route, req, res);
    run(req, res, true);
  };

  const admit = (req: PaidIncomingMessage, res: ServerResponse, method: string, path: string, price: unknown): void => {
    const body = route.bindBody ? (req.rawBody ?? Buffer.alloc(0)) : undefined;
    // A price resolved for a hinted payer: the challenge names that payer.
    const hint = req.vlxPayer === undefined ? undefined : headerValue(req.headers[PAYER_HEADER]);
    const r = route.authorize(req.headers[PROOF_HEADER], method, path, route.originOf(req), price, body, hint);
    if (isThenable(r)) {
      r.then((d) => decided(req, res, d), (e: unknown) => send(route, req, res, route.fault('internal', String(e), method, path)));
      return;
    }
    decided(req, res, r);
  };

  const priced = (req: PaidIncomingMessage, res: ServerResponse): void => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    let payer: VlexivoPayer | null = null;
    if (route.resolver !== undefined) payer = req.vlxPayer = route.payerFor(req.headers[PROOF_HEADER], req.headers[PAYER_HEADER]);
    let price: unknown;
    try {
      price = route.priceFor(req, payer);
    } catch (e) {
      send(route, req, res, route.resolverFailed(e, method, path));
      return;
    }
    if (isThenable(price)) {
      Promise.resolve(price).then(
        (p) => admit(req, res, method, path, p),
        (e: unknown) => send(route, req, res, route.resolverFailed(e, method, path)),
      );
      return;
    }
    admit(req, res, method, path, price);
  };

  return function vlexivoPaywall(incoming: IncomingMessage, res: ServerResponse): void {
    const req = incoming as PaidIncomingMessage;
    if (isFreeRequest(req.method ?? 'GET', req.headers['access-control-request-method'] !== undefined)) {
      run(req, res, false);
      return;
    }
    if (!readBody || req.rawBody !== undefined) {
      priced(req, res);
      return;
    }
    readAll(req, limit).then(
      (raw) => {
        if (raw === undefined) {
          res.destroy();
          return;
        }
        if (raw === null) {
          const r = route.paywall.reject('request_too_large', { limit }, req.method ?? 'GET', req.url ?? '/', null, null, null, null, route.scope, route.now());
          res.setHeader('Connection', 'close');
          send(route, req, res, r);
          return;
        }
        req.rawBody = raw;
        req.body = parseJson(req, raw);
        priced(req, res);
      },
      () => res.destroy(),
    );
  };
}

export { VlexivoServer };
