/**
 * Hapi plugin (`vlexivo/hapi`): an `onPreHandler` extension that answers 402 until the request
 * carries a valid, unused proof for its price. The payment is on `request.plugins.vlexivo.payment`
 * (and `request.vlxPayment`). In `onPreResponse`, core's response policy decides from the
 * response the handler produced (a thrown handler is a Boom 500) whether the nonce is released
 * and whether the receipt goes out. Hapi skips `onPreResponse` for a request whose client left
 * (it answers the abort at once, while the handler keeps running): the handler's own outcome
 * then settles the nonce, observed by a wrapper around the route's handler.
 *
 *   await server.register({ plugin: vlexivo, options: { apiSecret, price: '0.001' } })
 *   server.route({ method: 'POST', path: '/x', options: { plugins: { vlexivo: { price: '0.01' } } }, handler })
 *   server.route({ ..., options: { plugins: { vlexivo: false } } })   // free route
 */
import type { Plugin } from '@hapi/hapi';
import type { IncomingMessage } from 'node:http';
import { VlexivoServer, serverOf, SERVER_KEYS, type VlexivoServerOptions } from './server';
import { exposesHeaders, isFreeRequest, releases, sendsReceipt } from './policy';
import { PaidRoute, PAYWALL_KEYS, PAYER_HEADER, PROOF_HEADER, headerValue, RECEIPT_HEADER, EXPOSED_HEADERS, exposeValue, forBrowser, isFacts, isThenable, pick, rawBodyOf, type PaywallOptions, type Rejection, type VlexivoPayment } from './route';

export interface VlexivoHapiOptions extends VlexivoServerOptions, PaywallOptions<any> {
  /** Share one server (keys, nonce store) between registrations. */
  server?: VlexivoServer;
  /**
   * Paywall every route (with `price`/`priceResolver` from these options) unless a route says
   * `plugins: { vlexivo: false }`. Default: true when a price or resolver is given here.
   */
  all?: boolean;
}

interface HapiRequestLike {
  method: string;
  path: string;
  url?: { pathname?: string; search?: string };
  headers: Record<string, string | string[] | undefined>;
  payload?: unknown;
  rawBody?: unknown;
  route: { settings: { plugins?: { vlexivo?: unknown }; handler?: unknown } };
  events: { once(event: string, listener: () => void): void };
  active(): boolean;
  plugins: Record<string, unknown>;
  response: HapiResponseLike | HapiBoomLike | null | undefined;
  raw: { req: IncomingMessage; res?: { statusCode?: number } };
  vlxPayment?: VlexivoPayment;
}
type HandlerLike = ((this: unknown, ...args: unknown[]) => unknown) & { [WRAPPED]?: true };
/** The parts of a Hapi response object the plugin uses. */
interface HapiResponseLike {
  isBoom?: false;
  statusCode?: number;
  code(status: number): HapiResponseLike;
  type(mimeType: string): HapiResponseLike;
  header(name: string, value: string, options?: { append?: boolean }): HapiResponseLike;
  takeover(): HapiResponseLike;
}
/** A Boom error as Hapi answers it (a handler's throw becomes a Boom 500). */
interface HapiBoomLike {
  isBoom: true;
  output: { statusCode: number; headers: Record<string, string | string[] | number | undefined> };
}
interface HapiToolkitLike {
  continue: symbol;
  response(body?: unknown): HapiResponseLike;
}
interface HapiServerLike {
  ext(event: string, method: (request: HapiRequestLike, h: HapiToolkitLike) => unknown): void;
}

declare module '@hapi/hapi' {
  interface PluginsStates {
    vlexivo?: { payment: VlexivoPayment };
  }
  interface PluginSpecificConfiguration {
    vlexivo?: PaywallOptions<any> | false;
  }
  interface Request {
    vlxPayment?: VlexivoPayment;
  }
}

/** Marks a route handler already wrapped by `watchHandler`. */
const WRAPPED = Symbol('vlexivo.hapi.wrapped');
/** The paid request's paywall, until its nonce is settled (once). */
const PAID_BY = Symbol('vlexivo.hapi.paidBy');
/** The status the handler ended with, once it has. */
const OUTCOME = Symbol('vlexivo.hapi.outcome');
/** The client left before Hapi answered: `onPreResponse` will not run. */
const LEFT = Symbol('vlexivo.hapi.left');

interface PaidRequest extends HapiRequestLike {
  [PAID_BY]?: PaidRoute;
  [OUTCOME]?: number;
  [LEFT]?: true;
}

function isBoom(v: unknown): v is HapiBoomLike {
  return v !== null && typeof v === 'object' && (v as { isBoom?: unknown }).isBoom === true;
}

/** The status Hapi will answer for what a handler returned or threw (a thrown non-Boom is a 500). */
function statusOf(v: unknown, raw: { statusCode?: number }): number {
  if (isBoom(v)) return v.output.statusCode;
  if (typeof v === 'symbol') return raw.statusCode ?? 0; // h.abandon/h.close: the handler wrote raw
  if (v !== null && typeof v === 'object') {
    // A response object (`h.response()`): it carries its status and a `code` method.
    const r = v as { statusCode?: unknown; code?: unknown };
    if (typeof r.statusCode === 'number' && typeof r.code === 'function') return r.statusCode;
  }
  return 200;
}

/** Settle the paid request's nonce once, by the status its handler ended with (core decides). */
function settle(request: PaidRequest, status: number): void {
  const paidBy = request[PAID_BY];
  const payment = request.vlxPayment;
  if (paidBy === undefined || payment === undefined) return;
  request[PAID_BY] = undefined;
  if (releases(status, false, status > 0)) paidBy.release(payment.storeKey);
}

/**
 * Wrap the route's handler (once per route; Hapi reads `route.settings.handler` per request) so
 * that a paid request whose client left is settled when its handler ends.
 */
function watchHandler(request: PaidRequest): void {
  const settings = request.route.settings;
  const original = settings.handler as HandlerLike | undefined;
  if (typeof original !== 'function' || original[WRAPPED]) return;
  const wrapped: HandlerLike = async function vlexivoPaidHandler(this: unknown, ...args: unknown[]) {
    const req = args[0] as PaidRequest;
    let status = 500;
    try {
      const out = await original.apply(this, args);
      status = statusOf(out, req.raw.res ?? {});
      return out;
    } catch (e) {
      status = isBoom(e) ? e.output.statusCode : 500;
      throw e;
    } finally {
      if (req[PAID_BY] !== undefined) {
        req[OUTCOME] = status;
        if (req[LEFT]) settle(req, status);
      }
    }
  };
  wrapped[WRAPPED] = true;
  settings.handler = wrapped;
}

function respond(route: PaidRoute, request: HapiRequestLike, h: HapiToolkitLike, r: Rejection): unknown {
  const page = forBrowser(r, request.headers.accept, request.headers[PROOF_HEADER] !== undefined);
  const res = h.response(page.body).code(page.status).type(page.headers['Content-Type'] ?? 'application/json; charset=utf-8');
  for (const k in page.headers) if (k !== 'Content-Type') res.header(k, page.headers[k]);
  // CORS: our headers exposed when core says so (only to a request carrying `Origin`).
  if (route.exposeHeaders && exposesHeaders(request.headers.origin !== undefined)) res.header('Access-Control-Expose-Headers', EXPOSED_HEADERS);
  return res.takeover();
}

const PLUGIN_KEYS = [...SERVER_KEYS, ...PAYWALL_KEYS, 'server', 'all'];

function register(hapi: HapiServerLike, options: VlexivoHapiOptions): void {
  const server = serverOf(options ?? {}, PLUGIN_KEYS, 'vlexivo plugin');
  const hasPrice = options.price !== undefined || options.priceResolver !== undefined;
  const base = hasPrice && options.all !== false ? server.route(pick(options, PAYWALL_KEYS)) : undefined;
  const perRoute = new WeakMap<object, PaidRoute>();
  const routeFor = (request: HapiRequestLike): PaidRoute | undefined => {
    const cfg = request.route.settings.plugins?.vlexivo;
    if (cfg === false) return undefined;
    if (cfg !== undefined && cfg !== null && typeof cfg === 'object') {
      let r = perRoute.get(cfg);
      if (r === undefined) {
        r = server.route(cfg as PaywallOptions<any>);
        perRoute.set(cfg, r);
      }
      return r;
    }
    return base;
  };
  const proceed = (route: PaidRoute, request: HapiRequestLike, h: HapiToolkitLike, price: unknown): unknown => {
    const method = request.method.toUpperCase();
    const target = request.path + (request.url?.search ?? '');
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf({ rawBody: request.rawBody, body: request.payload });
      if (body === undefined) {
        return respond(route, request, h, route.fault('config_invalid', 'bindBody needs the raw payload (payload: { parse: false } or request.rawBody)', method, target));
      }
    }
    // A price resolved for a hinted payer: the challenge names that payer.
    const hint = route.resolver === undefined ? undefined : headerValue(request.headers[PAYER_HEADER]);
    const r = route.decide(request.headers[PROOF_HEADER], method, target, route.originOf(request.raw.req), price, body, hint);
    // A networked store answers later (Hapi waits on the returned promise, serving others).
    if (isThenable(r)) return r.then((d) => decided(route, request, h, d));
    return decided(route, request, h, r);
  };

  const decided = (route: PaidRoute, request: HapiRequestLike, h: HapiToolkitLike, r: VlexivoPayment | Rejection): unknown => {
    if (!isFacts(r)) return respond(route, request, h, r);
    // The client left while the price or the store was awaited: Hapi will not run the handler.
    if (!request.active()) {
      route.release(r.storeKey);
      return h.continue;
    }
    request.plugins.vlexivo = { payment: r };
    request.vlxPayment = r;
    const paid = request as PaidRequest;
    paid[PAID_BY] = route;
    watchHandler(paid);
    request.events.once('disconnect', () => {
      paid[LEFT] = true;
      const status = paid[OUTCOME];
      if (status !== undefined) settle(paid, status);
    });
    return h.continue;
  };

  hapi.ext('onPreHandler', (request, h) => {
    const route = routeFor(request);
    if (route === undefined || request.vlxPayment !== undefined) return h.continue;
    if (isFreeRequest(request.method.toUpperCase(), request.headers['access-control-request-method'] !== undefined)) return h.continue;
    const resolver = route.resolver;
    if (resolver === undefined) return proceed(route, request, h, route.price);
    let price: unknown;
    try {
      const payer = route.payerFor(request.headers[PROOF_HEADER], request.headers[PAYER_HEADER]);
      (request as { vlxPayer?: unknown }).vlxPayer = payer;
      price = resolver(request, payer);
    } catch (e) {
      return respond(route, request, h, route.resolverFailed(e, request.method.toUpperCase(), request.path));
    }
    if (isThenable(price)) {
      return Promise.resolve(price).then(
        (v) => proceed(route, request, h, v),
        (e) => respond(route, request, h, route.resolverFailed(e, request.method.toUpperCase(), request.path)),
      );
    }
    return proceed(route, request, h, price);
  });

  // The handler's outcome is the response Hapi is about to send (a thrown handler is a Boom
  // 500): core says whether it releases the nonce and whether it carries the receipt. Hapi runs
  // this whether or not the client is still connected.
  hapi.ext('onPreResponse', (request, h) => {
    const payment = request.vlxPayment;
    const paid = request as PaidRequest;
    if (payment === undefined || paid[PAID_BY] === undefined) return h.continue;
    const response = request.response;
    const status = isBoom(response) ? response.output.statusCode : response?.statusCode ?? 0;
    settle(paid, status);
    if (!sendsReceipt(status)) return h.continue;
    const expose = exposeValue(undefined) as string;
    const cors = exposesHeaders(request.headers.origin !== undefined);
    if (isBoom(response)) {
      response.output.headers[RECEIPT_HEADER] = payment.receipt;
      if (cors && (base?.exposeHeaders ?? server.exposeHeaders)) response.output.headers['Access-Control-Expose-Headers'] = expose;
    } else if (response && typeof response.header === 'function') {
      response.header(RECEIPT_HEADER, payment.receipt);
      if (cors && server.exposeHeaders) response.header('Access-Control-Expose-Headers', expose, { append: true });
    }
    return h.continue;
  });
}

export const plugin: Plugin<VlexivoHapiOptions> = {
  name: 'vlexivo',
  version: '0.1.0',
  register: register as unknown as Plugin<VlexivoHapiOptions>['register'],
};

export { VlexivoServer };
export default plugin;
