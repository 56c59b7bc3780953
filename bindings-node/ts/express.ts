/**
 * Express (4 and 5) middleware. The paid path stays synchronous when the price is static or
 * the resolver returns synchronously: one native call, one header, one `close` listener.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  PaidRoute,
  PROOF_HEADER,
  RECEIPT_HEADER,
  exposeValue,
  isFacts,
  isThenable,
  rawBodyOf,
  requestOrigin,
  type Rejection,
  type VlexivoPayment,
} from './route';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Verified payment facts, set by `vlx.paywall()` on paid requests. */
      vlxPayment?: VlexivoPayment;
    }
  }
}

/** The request as the middleware reads it (Express adds `originalUrl` and `body`). */
export interface PaywallRequest extends IncomingMessage {
  originalUrl?: string;
  body?: unknown;
  rawBody?: unknown;
  vlxPayment?: VlexivoPayment;
}

export type NextFunction = (err?: unknown) => void;
export type PaywallMiddleware = (req: any, res: any, next: NextFunction) => void;
export type PaywallErrorMiddleware = (err: unknown, req: any, res: any, next: NextFunction) => void;

/** CORS: only a cross-origin request (it carries `Origin`) needs our headers exposed. */
function expose(route: PaidRoute, req: IncomingMessage, res: ServerResponse): void {
  if (!route.exposeHeaders || req.headers.origin === undefined) return;
  const v = exposeValue(res.getHeader('Access-Control-Expose-Headers'));
  if (v !== undefined) res.setHeader('Access-Control-Expose-Headers', v);
}

function send(route: PaidRoute, req: IncomingMessage, res: ServerResponse, r: Rejection): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = r.status;
  for (const k in r.headers) res.setHeader(k, r.headers[k]);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  expose(route, req, res);
  res.end(r.body);
}

const RELEASED = Symbol('vlexivo.released');

/** Release once per paid request (a second release could free a retry's consumption). */
export function releaseOnce(release: (storeKey: string) => void, payment: VlexivoPayment | undefined | null): void {
  const p = payment as (VlexivoPayment & { [RELEASED]?: boolean }) | undefined | null;
  if (p === undefined || p === null || p[RELEASED]) return;
  p[RELEASED] = true;
  release(p.storeKey);
}

export function expressPaywall(route: PaidRoute<any>): PaywallMiddleware {
  const free = route.freeMethods;
  const release = (k: string) => route.release(k);

  function proceed(req: PaywallRequest, res: ServerResponse, next: NextFunction, price: unknown): void {
    const method = req.method ?? 'GET';
    const path = req.originalUrl ?? req.url ?? '/';
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf(req);
      if (body === undefined) {
        send(route, req, res, route.fault('config_invalid', 'bindBody needs the raw body (req.rawBody or a Buffer req.body)', method, path));
        return;
      }
    }
    let r;
    try {
      r = route.decide(req.headers[PROOF_HEADER], method, path, requestOrigin(req), price, body);
    } catch (e) {
      next(e);
      return;
    }
    if (!isFacts(r)) {
      send(route, req, res, r);
      return;
    }
    req.vlxPayment = r;
    res.setHeader(RECEIPT_HEADER, r.receipt);
    expose(route, req, res);
    // `close` follows `finish` within the same tick, before any retry can arrive. Release when
    // the handler answered 5xx, or never answered at all.
    res.on('close', () => {
      if (!res.headersSent || res.statusCode >= 500) releaseOnce(release, r);
    });
    next();
  }

  return function vlexivoPaywall(req: PaywallRequest, res: ServerResponse, next: NextFunction): void {
    if (free.has(req.method ?? '') || req.vlxPayment !== undefined) {
      next();
      return;
    }
    const resolver = route.resolver;
    if (resolver === undefined) {
      proceed(req, res, next, route.price);
      return;
    }
    let price: unknown;
    try {
      price = resolver(req);
    } catch (e) {
      send(route, req, res, route.resolverFailed(e, req.method ?? 'GET', req.originalUrl ?? req.url ?? '/'));
      return;
    }
    if (isThenable(price)) {
      price.then(
        (v) => proceed(req, res, next, v),
        (e) => send(route, req, res, route.resolverFailed(e, req.method ?? 'GET', req.originalUrl ?? req.url ?? '/')),
      );
      return;
    }
    proceed(req, res, next, price);
  };
}

/**
 * Error middleware: a handler that threw releases its nonce (the same proof may be used
 * again), then the error goes on to the app's own error handling.
 */
export function expressErrorHandler(release: (storeKey: string) => void): PaywallErrorMiddleware {
  return function vlexivoErrorHandler(err: unknown, req: PaywallRequest, _res: ServerResponse, next: NextFunction): void {
    releaseOnce(release, req.vlxPayment);
    next(err);
  };
}
