/**
 * Express (4 and 5) middleware. Core decides (`policy.ts`, the native paywall); this module
 * reads the request and the router, and writes the response.
 *
 * - Only a CORS preflight passes unpaid; `HEAD` runs the `GET` route's paywall (Express routes
 *   it there).
 * - Nested paywalls (`app.use('/zone', paywall)` + `app.get('/zone/x', paywall)`): the first one
 *   to run finds every paywall of the same server on the request's way in the router stack (up
 *   to and including the route that answers it) and asks core's effective price of them all,
 *   once; each later one only checks that the payment covers its own price, consuming nothing.
 * - The nonce is settled from the handler's outcome (`paid.ts`); `vlx.errorHandler()` reports a
 *   handler that threw.
 *
 * The paid path stays synchronous when the prices are static or the resolvers answer
 * synchronously.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { exposesHeaders, isFreeRequest } from './policy';
import { expressPrototype, handlerFailed, paidStateOf, releaseNow, watch } from './paid';
import {
  PaidRoute,
  PAYER_HEADER,
  PROOF_HEADER,
  headerValue,
  type Decision,
  type PaidFacts,
  exposeValue,
  forBrowser,
  isPaid,
  isThenable,
  paymentOf,
  rawBodyOf,
  resolvePrices,
  type Rejection,
  type VlexivoPayer,
  type VlexivoPayment,
} from './route';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Verified payment facts, set by `vlx.paywall()` on paid requests. */
      vlxPayment?: VlexivoPayment;
      /** Who the request is priced for (proven or hinted), set before a price resolver runs. */
      vlxPayer?: VlexivoPayer | null;
    }
  }
}

/** The request as the middleware reads it (Express adds `originalUrl`, `app` and `body`). */
export interface PaywallRequest extends IncomingMessage {
  originalUrl?: string;
  body?: unknown;
  rawBody?: unknown;
  vlxPayment?: VlexivoPayment;
  vlxPayer?: VlexivoPayer | null;
  app?: ExpressAppLike;
}

export type NextFunction = (err?: unknown) => void;
export type PaywallMiddleware = ((req: any, res: any, next: NextFunction) => void) & { [PAYWALL]?: PaidRoute };
export type PaywallErrorMiddleware = (err: unknown, req: any, res: any, next: NextFunction) => void;

/** Marks a paywall middleware with its route, for the router walk of an earlier paywall. */
export const PAYWALL = Symbol.for('vlexivo.express.paywall');

type Headers = IncomingMessage['headers'];

/** CORS: our headers exposed when core says so (only to a request carrying `Origin`). */
function expose(route: PaidRoute, headers: Headers, res: ServerResponse): void {
  if (!route.exposeHeaders || !exposesHeaders(headers.origin !== undefined)) return;
  const v = exposeValue(res.getHeader('Access-Control-Expose-Headers'));
  if (v !== undefined) res.setHeader('Access-Control-Expose-Headers', v);
}

function send(route: PaidRoute, req: IncomingMessage, res: ServerResponse, r: Rejection): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers = req.headers;
  const page = forBrowser(r, headers.accept, headers[PROOF_HEADER] !== undefined);
  res.statusCode = page.status;
  // JSON unless core's page for a browser says otherwise.
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  for (const k in page.headers) res.setHeader(k, page.headers[k]);
  expose(route, headers, res);
  res.end(page.body);
}

const pathOf = (req: PaywallRequest): string => req.originalUrl ?? req.url ?? '/';

// --- req.vlxPayment ------------------------------------------------------------------------

/**
 * On an Express request, `vlxPayment` is an accessor on the app's `app.request` (Express's
 * extension point; the outermost app's, which mounted apps inherit): adding a property to the
 * request itself would copy its descriptor array (see `paid.ts`). The payment object is built
 * from the native facts on first read, the same object after.
 */
const FACTS = new WeakMap<object, PaidFacts>();
const PAYMENTS = new WeakMap<object, VlexivoPayment | undefined>();
const ACCESSOR = new WeakSet<object>();
function paymentGetter(this: object): VlexivoPayment | undefined {
  if (PAYMENTS.has(this)) return PAYMENTS.get(this);
  const facts = FACTS.get(this);
  if (facts === undefined) return undefined;
  const p = paymentOf(facts);
  PAYMENTS.set(this, p);
  return p;
}
function paymentSetter(this: object, v: VlexivoPayment | undefined): void {
  PAYMENTS.set(this, v);
}

/** `req.vlxPayment` from the paid facts (built on first read on an Express request). */
function setPayment(req: PaywallRequest, facts: PaidFacts): void {
  const proto = expressPrototype(req);
  if (proto === undefined) {
    req.vlxPayment = paymentOf(facts);
    return;
  }
  if (!ACCESSOR.has(proto)) {
    ACCESSOR.add(proto);
    Object.defineProperty(proto, 'vlxPayment', { get: paymentGetter, set: paymentSetter, configurable: true, enumerable: false });
  }
  FACTS.set(req, facts);
}

// --- the router walk ------------------------------------------------------------------------

interface LayerLike {
  handle: ((...a: any[]) => unknown) & { stack?: LayerLike[]; [PAYWALL]?: PaidRoute };
  route?: { stack: LayerLike[]; _handles_method?(m: string): boolean; _handlesMethod?(m: string): boolean; methods?: Record<string, boolean> };
  method?: string;
  path?: string;
  params?: unknown;
  match(path: string): unknown;
}
interface ExpressAppLike {
  _router?: { stack: LayerLike[] };
  router?: { stack: LayerLike[] };
  parent?: ExpressAppLike;
}

/** Does a route answer this method (Express maps HEAD to GET when the route has no HEAD)? */
function routeHandles(route: NonNullable<LayerLike['route']>, method: string): boolean {
  if (typeof route._handles_method === 'function') return route._handles_method(method);
  if (typeof route._handlesMethod === 'function') return route._handlesMethod(method);
  return true;
}

/**
 * Does a layer match `path`, and which leading part? Express 4's match() answers a boolean and
 * records params/path on the (shared) layer, which are put back; router 2 (Express 5) answers
 * the match itself.
 */
function layerMatches(layer: LayerLike, path: string): { matched: boolean; matchedPath: string } {
  const params = layer.params;
  const lpath = layer.path;
  let matched: boolean;
  let matchedPath = '';
  try {
    const m: unknown = layer.match(path);
    matched = Boolean(m);
    const p = m !== null && typeof m === 'object' ? (m as { path?: unknown }).path : layer.path;
    matchedPath = typeof p === 'string' ? p : '';
  } catch {
    matched = false;
  }
  layer.params = params;
  layer.path = lpath;
  return { matched, matchedPath };
}

/**
 * The paywalls of `self`'s server on the request's way through `stack`, in order, up to and
 * including the first route that answers the method (a route answers; middleware passes on).
 * Returns true once that route is reached.
 */
function collect(stack: LayerLike[], method: string, path: string, self: PaidRoute, out: PaidRoute[], depth: number): boolean {
  for (const layer of stack) {
    const { matched, matchedPath } = layerMatches(layer, path);
    if (!matched) continue;
    const route = layer.route;
    if (route !== undefined && route !== null) {
      if (!routeHandles(route, method)) continue;
      const lower = method.toLowerCase();
      // Express runs a HEAD request through the route's GET layers when it has no HEAD ones.
      const m = lower === 'head' && !(route.methods?.head ?? false) ? 'get' : lower;
      for (const l of route.stack) {
        const pw = l.handle[PAYWALL];
        if (pw !== undefined && pw.paywall === self.paywall && (l.method === undefined || l.method === m) && !out.includes(pw)) out.push(pw);
      }
      return true;
    }
    const pw = layer.handle[PAYWALL];
    if (pw !== undefined) {
      if (pw.paywall === self.paywall && !out.includes(pw)) out.push(pw);
      continue;
    }
    const sub = layer.handle.stack;
    if (Array.isArray(sub) && depth < 16) {
      const rest = path.slice(matchedPath.length) || '/';
      if (collect(sub, method, rest.startsWith('/') ? rest : '/' + rest, self, out, depth + 1)) return true;
    }
  }
  return false;
}

/**
 * The walk's answers per paywall, by method and path: routing is a function of those (and of
 * the stack, which apps build at startup; a stack that grows later is picked up when its
 * length changes). Bounded: a path with ids in it fills the cache, which then starts over.
 */
interface WalkCache {
  stack: unknown;
  length: number;
  byRequest: Map<string, PaidRoute[]>;
}
const WALK_CACHE_MAX = 512;
const walks = new WeakMap<PaidRoute, WalkCache>();

/** Every paywall of this server the request will meet (this one included), in order. */
function covering(req: PaywallRequest, self: PaidRoute, method: string, full: string): PaidRoute[] {
  let app = req.app;
  while (app?.parent !== undefined) app = app.parent;
  const stack = app?._router?.stack ?? app?.router?.stack;
  if (!Array.isArray(stack)) return [self];
  let cache = walks.get(self);
  if (cache === undefined || cache.stack !== stack || cache.length !== stack.length) {
    cache = { stack, length: stack.length, byRequest: new Map() };
    walks.set(self, cache);
  }
  const q = full.indexOf('?');
  const path = q < 0 ? full : full.slice(0, q);
  const m = method.toUpperCase();
  const key = m + ' ' + path;
  let out = cache.byRequest.get(key);
  if (out === undefined) {
    out = [];
    collect(stack, m, path, self, out, 0);
    if (!out.includes(self)) out.unshift(self);
    if (cache.byRequest.size >= WALK_CACHE_MAX) cache.byRequest.clear();
    cache.byRequest.set(key, out);
  }
  return out;
}

// --- the middleware -------------------------------------------------------------------------

/**
 * Express gives each request and response a map of its own (see `paid.ts`), so every property
 * read on them is a slow lookup: the middleware reads `method`, `headers` and the URL once and
 * passes them on.
 */
export function expressPaywall(route: PaidRoute<any>): PaywallMiddleware {
  /**
   * Verify the proof at `prices[0]` (one paywall) or at the effective price of `routes`.
   * `hinted`: the price was resolved for the request's payer (its challenge names the hint).
   */
  function admit(
    req: PaywallRequest,
    res: ServerResponse,
    next: NextFunction,
    method: string,
    path: string,
    headers: Headers,
    routes: PaidRoute[] | undefined,
    prices: unknown[],
    hinted: boolean,
  ): void {
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf(req);
      if (body === undefined) {
        send(route, req, res, route.fault('config_invalid', 'bindBody needs the raw body (req.rawBody or a Buffer req.body)', method, path));
        return;
      }
    }
    let r: Decision | Promise<Decision>;
    try {
      const proof = headers[PROOF_HEADER];
      const hint = hinted ? headerValue(headers[PAYER_HEADER]) : undefined;
      const origin = route.originOf(req, headers);
      r = routes === undefined
        ? route.authorize(proof, method, path, origin, prices[0], body, hint)
        : route.authorizeStacked(proof, method, path, origin, routes, prices, body, hint);
    } catch (e) {
      next(e);
      return;
    }
    if (isThenable(r)) {
      // A networked store answers later; the event loop serves other requests meanwhile.
      r.then((d) => decided(req, res, next, headers, routes, d), next);
      return;
    }
    decided(req, res, next, headers, routes, r);
  }

  /** Run the handler on a paid decision, or send the refusal. */
  function decided(req: PaywallRequest, res: ServerResponse, next: NextFunction, headers: Headers, routes: PaidRoute[] | undefined, r: Decision): void {
    if (!isPaid(r)) {
      send(route, req, res, r);
      return;
    }
    setPayment(req, r);
    watch(res, r, route, routes ?? ONE);
    expose(route, headers, res);
    next();
  }

  /** A later paywall on a request an earlier one (same server) already took the proof for. */
  function checkCovered(req: PaywallRequest, res: ServerResponse, next: NextFunction, method: string, path: string, price: unknown): void {
    const state = paidStateOf(res);
    if (state === undefined || state.released) {
      next();
      return;
    }
    const refusal = route.checkStacked(state.facts, method, path, route.originOf(req), price);
    if (refusal === null) {
      next();
      return;
    }
    releaseNow(state);
    req.vlxPayment = undefined;
    send(route, req, res, refusal);
  }

  /** Every route's price, then `then(prices, hinted)` (see `resolvePrices`). */
  function priced(
    req: PaywallRequest,
    res: ServerResponse,
    next: NextFunction,
    method: string,
    path: string,
    routes: PaidRoute[],
    then: (prices: unknown[], hinted: boolean) => void,
  ): void {
    let payer: VlexivoPayer | null = null;
    const hinted = routes.some((r) => r.resolver !== undefined);
    if (hinted) {
      const headers = req.headers;
      payer = req.vlxPayer = route.payerFor(headers[PROOF_HEADER], headers[PAYER_HEADER]);
    }
    resolvePrices(routes, req, method, path, (r) => send(route, req, res, r), (p) => then(p, hinted), next, payer);
  }

  const ONE = [route];
  const middleware: PaywallMiddleware = function vlexivoPaywall(req: PaywallRequest, res: ServerResponse, next: NextFunction): void {
    const method = req.method ?? 'GET';
    const earlier = paidStateOf(res);
    if (earlier !== undefined && earlier.route.paywall === route.paywall) {
      // Its price was part of the one the proof was checked at: nothing more to check.
      if (earlier.covered.includes(route)) next();
      else {
        const path = pathOf(req);
        priced(req, res, next, method, path, ONE, (p) => checkCovered(req, res, next, method, path, p[0]));
      }
      return;
    }
    const headers = req.headers;
    if (isFreeRequest(method, headers['access-control-request-method'] !== undefined)) {
      next();
      return;
    }
    const path = pathOf(req);
    const routes = covering(req, route, method, path);
    if (routes.length === 1) {
      // The common case: one paywall, its price static or resolved (sync or async).
      if (route.resolver === undefined) {
        admit(req, res, next, method, path, headers, undefined, [route.price], false);
        return;
      }
      priced(req, res, next, method, path, routes, (p, hinted) => admit(req, res, next, method, path, headers, undefined, p, hinted));
      return;
    }
    priced(req, res, next, method, path, routes, (p, hinted) => admit(req, res, next, method, path, headers, routes, p, hinted));
  };
  middleware[PAYWALL] = route;
  return middleware;
}

/**
 * Error middleware: a handler that threw before its response was complete has failed, so its
 * nonce is released (the same proof may be used again); one that threw after a complete
 * response keeps it. The error goes on to the app's own error handling.
 */
export function expressErrorHandler(): PaywallErrorMiddleware {
  return function vlexivoErrorHandler(err: unknown, _req: PaywallRequest, res: ServerResponse, next: NextFunction): void {
    handlerFailed(res);
    next(err);
  };
}
