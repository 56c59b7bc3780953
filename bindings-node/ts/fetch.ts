/**
 * The fetch-standard paywall: WHATWG `Request` in, a 402 `Response` or the payment out; the
 * handler's `Response` in, the same response with the receipt out. Next.js route handlers
 * (`vlexivo/next`) and Hono (`vlexivo/hono`) are built on it; any runtime that speaks
 * `Request`/`Response` on Node (Bun-style servers, itty, h3's web handlers) can use it directly.
 *
 *   const paywall = fetchPaywall({ apiSecret, price: '0.001' });
 *   const paid = await paywall.protect(request);
 *   if (paid instanceof Response) return paid;          // 402, or a 5xx for a provider fault
 *   return paywall.complete(paid, await handler(request));  // receipt; releases on a 5xx
 *
 *   export const POST = withPaywall(async (req) => Response.json(getPayment(req)), { price: '0.001' });
 *
 * Core decides (`policy.ts`, the native paywall): which requests are free, whether the nonce is
 * released (from the handler's response status, or its throw), whether a receipt goes out.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { VlexivoServer, serverOf, SERVER_KEYS, type VlexivoServerOptions } from './server';
import { exposesHeaders, isFreeRequest, releases, sendsReceipt } from './policy';
import { headerObjectArg } from './paid';
import {
  CONFIGURED_ORIGIN,
  PaidRoute,
  PAYWALL_KEYS,
  PAYER_HEADER,
  PROOF_HEADER,
  RECEIPT_HEADER,
  exposeValue,
  forBrowser,
  isPaid,
  isThenable,
  paymentOf,
  pick,
  type Decision,
  type PaidFacts,
  type PaywallOptions,
  type Rejection,
  type RequestOrigin,
  type VlexivoPayment,
} from './route';

/** Options of a fetch-standard paywall: the server's (or `server`) and the paywall's. */
export interface FetchPaywallOptions<Req = Request> extends VlexivoServerOptions, PaywallOptions<Req> {
  /** Share one server (keys, nonce store) between paywalls. */
  server?: VlexivoServer;
}

export const FETCH_KEYS: readonly string[] = [...SERVER_KEYS, ...PAYWALL_KEYS, 'server'];

/** A paid request's payment, as `protect` returns it (settle it with `complete` or `fail`). */
export type FetchPayment = VlexivoPayment;

interface Settlement {
  route: PaidRoute<any>;
  settled: boolean;
}

/** The nonce settlement of each payment `protect` returned (kept off the payment object). */
const SETTLEMENTS = new WeakMap<VlexivoPayment, Settlement>();

/** The payment of a request a `withPaywall` handler (or `protect`) let through. */
const PAYMENTS = new WeakMap<Request, VlexivoPayment>();

/** The payment a paywall verified for this request (undefined on a free request). */
export function getPayment(request: Request): VlexivoPayment | undefined {
  return PAYMENTS.get(request);
}

/** Distinct request methods whose upper case is remembered (as `policy.ts` bounds its memos). */
const METHODS_MAX = 64;
const UPPER = new Map<string, string>();

/** A request's method in upper case, remembered: `toUpperCase` goes through V8's runtime. */
function upperCase(method: string): string {
  let u = UPPER.get(method);
  if (u === undefined) {
    u = method.toUpperCase();
    if (UPPER.size < METHODS_MAX) UPPER.set(method, u);
  }
  return u;
}

/**
 * One request header: from Node's parsed headers when the server that made the `Request` hands
 * them over (a property read; @hono/node-server's `Request` materializes a `Headers` lookup per
 * call), else from the `Request`'s `Headers`.
 */
function header(request: Request, node: IncomingHttpHeaders | undefined, name: string): string | undefined {
  if (node === undefined) return request.headers.get(name) ?? undefined;
  const v = node[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * A request URL's origin facts and path (with the query), read from the absolute URL string
 * (a WHATWG `URL` costs more than the rest of the paid path): its `Host` header, else the
 * URL's host, and whether the scheme is https. `node`: the request's parsed Node headers, if known.
 */
export function fetchTarget(request: Request, node?: IncomingHttpHeaders): { origin: RequestOrigin; path: string } {
  const u = request.url;
  const start = pathStart(u);
  return { origin: urlOrigin(request, node, u, start), path: urlPath(u, start) };
}

/** Where the authority of the absolute URL `u` begins (after the scheme's `://`). */
const authorityStart = (u: string): number => u.indexOf('://') + 3;

/** Where the path of the absolute URL `u` begins: where its authority ends (-1: no path). */
const pathStart = (u: string): number => u.indexOf('/', authorityStart(u));

/** The path and query of the absolute URL `u` (no fragment); `start`: its `pathStart`. */
function urlPath(u: string, start: number): string {
  const path = start < 0 ? '/' : u.slice(start);
  const hash = path.indexOf('#');
  return hash < 0 ? path : path.slice(0, hash);
}

/** The origin facts of a request whose URL is `u` (see `fetchTarget`); `start`: its `pathStart`. */
function urlOrigin(request: Request, node: IncomingHttpHeaders | undefined, u: string, start: number): RequestOrigin {
  const secure = u.charCodeAt(4) === 115; /* "https" */
  const host = header(request, node, 'host');
  if (host !== undefined) return { host, secure };
  const from = authorityStart(u);
  return { host: start < 0 ? u.slice(from) : u.slice(from, start), secure };
}

/** A refusal as a `Response` (CORS: our headers exposed to a cross-origin caller). */
export function rejectionResponse(route: PaidRoute<any>, request: Request, r: Rejection): Response {
  const page = forBrowser(r, request.headers.get('accept') ?? undefined, request.headers.has(PROOF_HEADER));
  const headers = new Headers({ 'content-type': 'application/json; charset=utf-8' });
  for (const k in page.headers) headers.set(k, page.headers[k]);
  if (route.exposeHeaders && exposesHeaders(request.headers.has('origin'))) headers.set('access-control-expose-headers', exposeValue(undefined) as string);
  return new Response(page.body, { status: page.status, headers });
}

/**
 * Put the receipt (and the CORS expose header) on a handler's response. Headers of some
 * responses are immutable (`Response.redirect`, a `fetch()` answer passed through): those are
 * copied into a new response with the same body.
 */
function withHeaders(response: Response, set: [string, string][]): Response {
  try {
    for (const [k, v] of set) response.headers.set(k, v);
    return response;
  } catch {
    const headers = new Headers(response.headers);
    for (const [k, v] of set) headers.set(k, v);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }
}

/**
 * A paid request's end with a response of `status` (core's policy): its nonce (`storeKey`) is
 * released on `route`, or kept. True when that response carries the receipt.
 */
function kept(route: PaidRoute<any>, storeKey: string, status: number): boolean {
  if (releases(status, false, true)) {
    route.release(storeKey);
    return false;
  }
  return sendsReceipt(status);
}

/** A paid request's handler threw: its nonce is released when core's policy says so. */
function released(route: PaidRoute<any>, storeKey: string): void {
  if (releases(0, true, false)) route.release(storeKey);
}

const RECEIPT = Symbol('vlexivo.receipt');
const WRITE_HEAD = Symbol('vlexivo.writeHead');
type WriteHead = (this: ServerResponse, status: number, reason?: unknown, headers?: unknown) => ServerResponse;
type Outgoing = ServerResponse & { [RECEIPT]?: string; [WRITE_HEAD]?: WriteHead };

/**
 * Send `receipt` with the headers a Node response writes next (unless they are gone already).
 * It joins the header object its server hands to `writeHead` (a copy: the object may be the
 * handler's `Response`'s): a `setHeader` before makes Node merge every header of that object
 * through `setHeader` into a dictionary of its own, then enumerate it.
 */
export function receiptOn(outgoing: ServerResponse, receipt: string): void {
  if (outgoing.headersSent) return;
  const o = outgoing as Outgoing;
  o[RECEIPT] = receipt;
  // A second receipt for the same response replaces the first (as a second setHeader would).
  if (o.writeHead === writeHeadWithReceipt) return;
  o[WRITE_HEAD] = o.writeHead as WriteHead;
  o.writeHead = writeHeadWithReceipt;
}

function writeHeadWithReceipt(this: Outgoing, status: number, reason?: unknown, headers?: unknown): ServerResponse {
  const writeHead = this[WRITE_HEAD] as WriteHead;
  // Once: whatever calls it again gets the response's own.
  this.writeHead = writeHead;
  const receipt = this[RECEIPT] as string;
  const given = headerObjectArg(reason, headers);
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    this.setHeader(RECEIPT_HEADER, receipt);
    return writeHead.call(this, status, reason, headers);
  }
  // Object.assign then a store: a computed key in an object literal is defined by V8's runtime.
  const withReceipt: Record<string, unknown> = Object.assign({}, given as Record<string, unknown>);
  withReceipt[RECEIPT_HEADER] = receipt;
  return writeHead.call(this, status, given === reason ? undefined : reason, withReceipt);
}

/** One paid route over WHATWG requests. `Req` is what the price resolver receives. */
export class FetchPaywall<Req = Request> {
  readonly server: VlexivoServer;
  readonly route: PaidRoute<Req>;

  constructor(options: FetchPaywallOptions<Req>, known: readonly string[] = FETCH_KEYS, what = 'fetch paywall') {
    if (options === null || typeof options !== 'object') throw new TypeError('paywall options must be an object');
    this.server = serverOf(options, known, what);
    this.route = this.server.route<Req>(pick(options, PAYWALL_KEYS));
  }

  /**
   * Verify the request's proof at its price and consume the nonce: resolves with the payment,
   * or with the response to send instead (402 with a fresh challenge, 409 replay, a logged 500
   * for a price that is not one, 503 when the nonce store is down). A CORS preflight resolves
   * with `null`: it passes unpaid. `input` is what the price resolver receives (default: a
   * clone of the request, so the resolver may read the body and the handler still can).
   * `readBody` reads the body's bytes for a `bindBody` server (default: from a clone), for
   * frameworks that cache the body themselves.
   */
  async protect(request: Request, input?: Req, readBody?: () => Promise<ArrayBuffer>, nodeHeaders?: IncomingHttpHeaders): Promise<FetchPayment | Response | null> {
    return this.protectNow(request, input, readBody, nodeHeaders);
  }

  /**
   * `protect` that answers at once (no promise) when nothing has to be awaited: a static price,
   * no body binding and a store in this process. For adapters on a hot path.
   * @internal
   */
  protectNow(
    request: Request,
    input?: Req,
    readBody?: () => Promise<ArrayBuffer>,
    nodeHeaders?: IncomingHttpHeaders,
  ): FetchPayment | Response | null | Promise<FetchPayment | Response | null> {
    const a = this.admitNow(request, input, readBody, nodeHeaders);
    return isThenable(a) ? a.then((x) => this.#payment(request, x)) : this.#payment(request, a);
  }

  /**
   * `protectNow` that leaves a paid request's facts in their native form and registers nothing:
   * for an adapter that settles the payment itself (`keeps`, `failed`), so `getPayment`,
   * `complete` and `fail` do not know it.
   * @internal
   */
  admitNow(
    request: Request,
    input?: Req,
    readBody?: () => Promise<ArrayBuffer>,
    nodeHeaders?: IncomingHttpHeaders,
  ): PaidFacts | Response | null | Promise<PaidFacts | Response | null> {
    const method = upperCase(request.method);
    if (isFreeRequest(method, header(request, nodeHeaders, 'access-control-request-method') !== undefined)) return null;
    const route = this.route;
    const u = request.url;
    const start = pathStart(u);
    const path = urlPath(u, start);
    // A paywall with a configured origin binds that one: the request's is not read.
    const origin = route.bindsRequestOrigin ? urlOrigin(request, nodeHeaders, u, start) : CONFIGURED_ORIGIN;
    const proof = header(request, nodeHeaders, PROOF_HEADER);
    if (route.resolver === undefined && !route.bindBody) {
      const r = route.authorize(proof, method, path, origin, route.price, undefined, undefined);
      return isThenable(r) ? r.then((d) => this.#admitted(request, d)) : this.#admitted(request, r);
    }
    return this.#priced(request, input, readBody, nodeHeaders, method, origin, path, proof);
  }

  /** The rest of `protect` for a resolved price or a body-bound proof. */
  async #priced(
    request: Request,
    input: Req | undefined,
    readBody: (() => Promise<ArrayBuffer>) | undefined,
    nodeHeaders: IncomingHttpHeaders | undefined,
    method: string,
    origin: RequestOrigin,
    path: string,
    proof: string | undefined,
  ): Promise<PaidFacts | Response> {
    const route = this.route;
    let price: unknown = route.price;
    let hint: string | undefined;
    if (route.resolver !== undefined) {
      // A price resolved for a hinted payer: the challenge names that payer.
      hint = header(request, nodeHeaders, PAYER_HEADER);
      try {
        const payer = route.payerFor(proof, hint);
        price = route.resolver(input ?? ((request.body === null ? request : request.clone()) as unknown as Req), payer);
        if (isThenable(price)) price = await price;
      } catch (e) {
        return rejectionResponse(route, request, route.resolverFailed(e, method, path));
      }
    }
    let body: Buffer | undefined;
    if (route.bindBody) {
      if (readBody !== undefined) body = Buffer.from(await readBody());
      else body = request.body === null ? Buffer.alloc(0) : Buffer.from(await request.clone().arrayBuffer());
    }
    let r: Decision | Promise<Decision> = route.authorize(proof, method, path, origin, price, body, hint);
    if (isThenable(r)) r = await r;
    return this.#admitted(request, r);
  }

  /** A paid decision's facts, or the refusal's response. */
  #admitted(request: Request, r: Decision): PaidFacts | Response {
    return isPaid(r) ? r : rejectionResponse(this.route, request, r);
  }

  /** The payment of admitted facts (its settlement pending, `getPayment` knows it). */
  #payment(request: Request, a: PaidFacts | Response | null): FetchPayment | Response | null {
    if (a === null || a instanceof Response) return a;
    const payment = paymentOf(a);
    SETTLEMENTS.set(payment, { route: this.route, settled: false });
    PAYMENTS.set(request, payment);
    return payment;
  }

  /** Settle the payment for a response with `status` (core's policy); true when that response carries the receipt. */
  #settle(payment: VlexivoPayment, status: number): boolean {
    const s = SETTLEMENTS.get(payment);
    if (s === undefined || s.settled) return sendsReceipt(status);
    s.settled = true;
    return kept(s.route, payment.storeKey, status);
  }

  /**
   * Settle a nonce (`storeKey`) its adapter tracks itself (see `admitNow`) for a response with
   * `status`: released when core's policy says so, else kept. True when that response carries
   * the receipt. Call once per payment.
   * @internal
   */
  keeps(storeKey: string, status: number): boolean {
    return kept(this.route, storeKey, status);
  }

  /**
   * `fail` for a nonce its adapter tracks itself (see `admitNow`): the handler threw.
   * @internal
   */
  failed(storeKey: string): void {
    released(this.route, storeKey);
  }

  /**
   * `complete` for a handler's response that a Node server writes to `outgoing` (Hono on
   * @hono/node-server): the receipt goes with the headers `outgoing` writes next (`receiptOn`),
   * so the handler's `Response` is left as it is (its `Headers` never built).
   * Not for a cross-origin request (its expose header merges with the response's: use `complete`).
   */
  completeOn(payment: VlexivoPayment, status: number, outgoing: ServerResponse): void {
    if (this.#settle(payment, status)) receiptOn(outgoing, payment.receipt);
  }

  /**
   * The handler answered `response`: core's policy releases the nonce when it failed (5xx) and
   * puts the receipt on a response that keeps the payment. Returns the response to send.
   */
  complete(payment: VlexivoPayment, response: Response, request?: Request): Response {
    if (!this.#settle(payment, response.status)) return response;
    return this.withReceipt(payment.receipt, response, request);
  }

  /**
   * A response that keeps its payment, with the receipt (and for a cross-origin request the
   * CORS expose header) on it.
   * @internal
   */
  withReceipt(receipt: string, response: Response, request?: Request): Response {
    const set: [string, string][] = [[RECEIPT_HEADER, receipt]];
    if (this.route.exposeHeaders && exposesHeaders(request?.headers.has('origin') === true)) {
      const v = exposeValue(response.headers.get('access-control-expose-headers'));
      if (v !== undefined) set.push(['Access-Control-Expose-Headers', v]);
    }
    return withHeaders(response, set);
  }

  /** The handler threw (no response): the nonce is released, the same proof may be used again. */
  fail(payment: VlexivoPayment): void {
    const s = SETTLEMENTS.get(payment);
    if (s === undefined || s.settled) return;
    s.settled = true;
    released(s.route, payment.storeKey);
  }

  /**
   * Wrap a fetch handler: the paywall first, then the handler (its payment in
   * `getPayment(request)`), then the receipt or the release. A handler that throws releases
   * the nonce and the error goes on to the framework.
   */
  wrap<R extends Request, Args extends unknown[]>(handler: (request: R, ...args: Args) => Response | Promise<Response>): (request: R, ...args: Args) => Promise<Response> {
    return async (request: R, ...args: Args): Promise<Response> => {
      const paid = await this.protect(request);
      if (paid instanceof Response) return paid;
      if (paid === null) return handler(request, ...args);
      let response: Response;
      try {
        response = await handler(request, ...args);
      } catch (e) {
        this.fail(paid);
        throw e;
      }
      return this.complete(paid, response, request);
    };
  }
}

/** A fetch-standard paywall (`protect`, `complete`, `fail`, `wrap`). */
export function fetchPaywall<Req = Request>(options: FetchPaywallOptions<Req>): FetchPaywall<Req> {
  return new FetchPaywall<Req>(options);
}

/**
 * A route handler behind a paywall: `withPaywall(handler, { price: '0.001' })` (or a
 * `priceResolver` that receives a clone of the request). The payment is `getPayment(request)`.
 */
export function withPaywall<R extends Request, Args extends unknown[]>(
  handler: (request: R, ...args: Args) => Response | Promise<Response>,
  options: FetchPaywallOptions<R>,
): (request: R, ...args: Args) => Promise<Response> {
  return new FetchPaywall<R>(options).wrap(handler);
}

export { VlexivoServer };
