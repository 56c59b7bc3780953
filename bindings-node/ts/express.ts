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
import { isFreeRequest } from './policy';
import { handlerFailed, paidStateOf, releaseNow, watch } from './paid';
import {
  PaidRoute,
  PAYER_HEADER,
  PROOF_HEADER,
  headerValue,
  type Decision,
  exposeValue,
  forBrowser,
  isPaid,
  isThenable,
  paymentOf,
  rawBodyOf,
  requestOrigin,
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
  const page = forBrowser(r, req.headers.accept, req.headers[PROOF_HEADER] !== undefined);
  res.statusCode = page.status;
  // JSON unless core's page for a browser says otherwise.
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  for (const k in page.headers) res.setHeader(k, page.headers[k]);
  expose(route, req, res);
  res.end(page.body);
}

const pathOf = (req: PaywallRequest): string => req.originalUrl ?? req.url ?? '/';

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
function covering(req: PaywallRequest, self: PaidRoute): PaidRoute[] {
  let app = req.app;
  while (app?.parent !== undefined) app = app.parent;
  const stack = app?._router?.stack ?? app?.router?.stack;
  if (!Array.isArray(stack)) return [self];
  const method = (req.method ?? 'GET').toUpperCase();
  const full = pathOf(req);
  const q = full.indexOf('?');
  const path = q < 0 ? full : full.slice(0, q);
  let cache = walks.get(self);
  if (cache === undefined || cache.stack !== stack || cache.length !== stack.length) {
    cache = { stack, length: stack.length, byRequest: new Map() };
    walks.set(self, cache);
  }
  const key = method + ' ' + path;
  let out = cache.byRequest.get(key);
  if (out === undefined) {
    out = [];
    collect(stack, method, path, self, out, 0);
    if (!out.includes(self)) out.unshift(self);
    if (cache.byRequest.size >= WALK_CACHE_MAX) cache.byRequest.clear();
    cache.byRequest.set(key, out);
  }
  return out;
}

// --- the middleware -------------------------------------------------------------------------

export function expressPaywall(route: PaidRoute<any>): PaywallMiddleware {
  /** Verify `proof` at `price` (one paywall) or at the effective price of `routes`. */
  function admit(req: PaywallRequest, res: ServerResponse, next: NextFunction, routes: PaidRoute[] | undefined, prices: unknown[]): void {
    const method = req.method ?? 'GET';
    const path = pathOf(req);
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
      const proof = req.headers[PROOF_HEADER];
      // A price resolved for a hinted payer: the challenge names that payer.
      const hint = req.vlxPayer === undefined ? undefined : headerValue(req.headers[PAYER_HEADER]);
      r = routes === undefined
        ? route.authorize(proof, method, path, requestOrigin(req), prices[0], body, hint)
        : route.authorizeStacked(proof, method, path, requestOrigin(req), routes, prices, body, hint);
    } catch (e) {
      next(e);
      return;
    }
    if (isThenable(r)) {
      // A networked store answers later; the event loop serves other requests meanwhile.
      r.then((d) => decided(req, res, next, routes, d), next);
      return;
    }
    decided(req, res, next, routes, r);
  }

  /** Run the handler on a paid decision, or send the refusal. */
  function decided(req: PaywallRequest, res: ServerResponse, next: NextFunction, routes: PaidRoute[] | undefined, r: Decision): void {
    if (!isPaid(r)) {
      send(route, req, res, r);
      return;
    }
    req.vlxPayment = paymentOf(r);
    watch(res, r, route, routes ?? ONE);
    expose(route, req, res);
    next();
  }

  /** A later paywall on a request an earlier one (same server) already took the proof for. */
  function checkCovered(req: PaywallRequest, res: ServerResponse, next: NextFunction, price: unknown): void {
    const state = paidStateOf(res);
    if (state === undefined || state.released) {
      next();
      return;
    }
    const refusal = route.checkStacked(state.facts, req.method ?? 'GET', pathOf(req), requestOrigin(req), price);
    if (refusal === null) {
      next();
      return;
    }
    releaseNow(state);
    req.vlxPayment = undefined;
    send(route, req, res, refusal);
  }

  /** Every route's price, then `then` (see `resolvePrices`). */
  function priced(req: PaywallRequest, res: ServerResponse, next: NextFunction, routes: PaidRoute[], then: (prices: unknown[]) => void): void {
    let payer: VlexivoPayer | null = null;
    if (routes.some((r) => r.resolver !== undefined)) {
      payer = req.vlxPayer = route.payerFor(req.headers[PROOF_HEADER], req.headers[PAYER_HEADER]);
    }
    resolvePrices(routes, req, req.method ?? 'GET', pathOf(req), (r) => send(route, req, res, r), then, next, payer);
  }

  const ONE = [route];
  const middleware: PaywallMiddleware = function vlexivoPaywall(req: PaywallRequest, res: ServerResponse, next: NextFunction): void {
    const method = req.method ?? 'GET';
    const earlier = paidStateOf(res);
    if (earlier !== undefined && earlier.route.paywall === route.paywall) {
      // Its price was part of the one the proof was checked at: nothing more to check.
      if (earlier.covered.includes(route)) next();
      else priced(req, res, next, ONE, (p) => checkCovered(req, res, next, p[0]));
      return;
    }
    if (isFreeRequest(method, req.headers['access-control-request-method'] !== undefined)) {
      next();
      return;
    }
    const routes = covering(req, route);
    if (routes.length === 1) {
      // The common case: one paywall, its price static or resolved (sync or async).
      const resolver = route.resolver;
      if (resolver === undefined) {
        admit(req, res, next, undefined, [route.price]);
        return;
      }
      priced(req, res, next, routes, (p) => admit(req, res, next, undefined, p));
      return;
    }
    priced(req, res, next, routes, (p) => admit(req, res, next, routes, p));
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
