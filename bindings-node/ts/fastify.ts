/**
 * Fastify plugin (`vlexivo/fastify`): a route-level `preHandler` on every paid route that
 * answers 402 until the request carries a valid, unused proof for its price, then sets
 * `request.vlxPayment`. Core decides (`policy.ts`, the native paywall); the nonce is settled
 * from the handler's outcome by hooks in front of the paid response's `writeHead` and `end`
 * (`paid.ts`) rather than onResponse/onRequestAbort hooks (a fifth of the plugin's instructions
 * per request under callgrind). Registered in nested scopes (a default price for a zone, a higher one inside), the
 * paywalls of one route merge: the request pays once, at the effective price of both.
 *
 *   app.register(vlexivo, { apiSecret, price: '0.001' })           // every route in scope
 *   app.post('/x', { config: { vlexivo: { price: '0.01' } } }, h)  // per-route price
 *   app.get('/free', { config: { vlexivo: false } }, h)            // opt out
 *
 * Hooks are attached per route when it is declared (`onRoute`), so a request pays no
 * per-request configuration lookup; routes must be declared after the plugin is registered.
 */
import type {} from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { VlexivoServer, serverOf, SERVER_KEYS, type VlexivoServerOptions } from './server';
import { exposesHeaders, isFreeRequest } from './policy';
import { ownPaidStateOf, releaseNow, watch } from './paid';
import { PaidRoute, PAYER_HEADER, PROOF_HEADER, headerValue, type VlexivoPayer, PAYWALL_KEYS, pick, type Decision, exposeValue, forBrowser, isPaid, isThenable, paymentOf, rawBodyOf, resolvePrices, type PaidFacts, type PaywallOptions, type Rejection, type VlexivoPayment } from './route';

export interface VlexivoFastifyOptions extends VlexivoServerOptions, PaywallOptions<any> {
  /** Share one server (keys, nonce store) between registrations. */
  server?: VlexivoServer;
}

// Minimal structural types, so the package does not depend on fastify's types at run time.
interface FastifyRequestLike {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
  rawBody?: unknown;
  raw: IncomingMessage;
  vlxPayment: VlexivoPayment | null;
  vlxPayer: VlexivoPayer | null;
  [FACTS]?: PaidFacts | undefined;
  [PAYMENT]?: VlexivoPayment | null;
}
interface FastifyReplyLike {
  statusCode: number;
  raw: ServerResponse;
  code(n: number): FastifyReplyLike;
  header(k: string, v: string): FastifyReplyLike;
  getHeader(k: string): unknown;
  send(body?: unknown): FastifyReplyLike;
}
type Done = (err?: Error) => void;
type Headers = Record<string, string | string[] | undefined>;
type Hook = (...args: any[]) => unknown;
interface RouteOptionsLike {
  config?: { vlexivo?: unknown };
  preHandler?: Hook | Hook[];
}
interface FastifyInstanceLike {
  decorateRequest(name: string, value: unknown): unknown;
  hasRequestDecorator(name: string): boolean;
  addHook(name: string, fn: (...args: any[]) => unknown): unknown;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Verified payment facts, set by the vlexivo plugin on paid requests. */
    vlxPayment: VlexivoPayment | null;
    /** Who the request is priced for (proven or hinted), set before a price resolver runs. */
    vlxPayer: VlexivoPayer | null;
  }
  interface FastifyContextConfig {
    /** Per-route paywall options, or `false` to leave the route free. */
    vlexivo?: PaywallOptions<any> | false;
  }
}

/**
 * A paid request keeps the native facts (one string) and `request.vlxPayment` is a getter that
 * builds the payment object on first read, as Node does for `req.headers`: a handler that does
 * not look at the payment does not pay for ten substrings and an object per request.
 */
const FACTS = Symbol('vlexivo.facts');
const PAYMENT = Symbol('vlexivo.payment');

function getPayment(this: FastifyRequestLike): VlexivoPayment | null {
  let p = this[PAYMENT];
  if (p === undefined) {
    const facts = this[FACTS];
    if (facts === undefined) return null;
    p = this[PAYMENT] = paymentOf(facts);
  }
  return p;
}

function setPayment(this: FastifyRequestLike, v: VlexivoPayment | null): void {
  this[PAYMENT] = v;
}

function send(route: PaidRoute, request: FastifyRequestLike, reply: FastifyReplyLike, r: Rejection): void {
  const page = forBrowser(r, request.headers.accept, request.headers[PROOF_HEADER] !== undefined);
  reply.code(page.status);
  // JSON unless core's page for a browser says otherwise.
  reply.header('content-type', 'application/json; charset=utf-8');
  for (const k in page.headers) reply.header(k, page.headers[k]);
  expose(route, request.headers, reply);
  reply.send(page.body);
}

/** CORS: our headers exposed when core says so (only to a request carrying `Origin`). */
function expose(route: PaidRoute, headers: Headers, reply: FastifyReplyLike): void {
  if (!route.exposeHeaders || !exposesHeaders(headers.origin !== undefined)) return;
  const v = exposeValue(reply.getHeader('access-control-expose-headers'));
  if (v !== undefined) reply.header('Access-Control-Expose-Headers', v);
}

/** The symbol under which Fastify keeps a reply's header object (`null`: not found). */
let headersKey: symbol | null | undefined;

/**
 * Fastify's own header object of a reply, the one it hands to `writeHead` (`reply.header` writes
 * there, lower-casing the name): found once by its symbol's description (Fastify 4 and 5 name it
 * `fastify.reply.headers`). Undefined if this Fastify keeps it otherwise: the receipt then goes
 * through `reply.header`.
 */
function headerObjectOf(reply: FastifyReplyLike): Record<string, unknown> | undefined {
  if (headersKey === undefined) {
    headersKey = Object.getOwnPropertySymbols(reply).find((s) => s.description === 'fastify.reply.headers') ?? null;
  }
  if (headersKey === null) return undefined;
  const h = (reply as unknown as Record<symbol, unknown>)[headersKey];
  return h !== null && typeof h === 'object' ? (h as Record<string, unknown>) : undefined;
}

const asArray = (h: Hook | Hook[] | undefined): Hook[] => (h === undefined ? [] : Array.isArray(h) ? h : [h]);

/** Marks our preHandler with the paywalls it executes (to merge stacked registrations). */
const ROUTES = Symbol('vlexivo.fastify.routes');
type PaywallHook = Hook & { [ROUTES]?: readonly PaidRoute[] };

/**
 * The preHandler of one route, for the paywalls that cover it (`routes`, one server: several
 * when the plugin is registered in nested scopes). The request pays once, at core's effective
 * price of them all.
 */
function paywallHook(routes: readonly PaidRoute[]): PaywallHook {
  const route = routes[0];
  const stacked = routes.length > 1;
  const resolver = stacked ? undefined : route.resolver;
  const priceByPayer = routes.some((r) => r.resolver !== undefined);

  /**
   * Verify and consume at `prices` (every route's; `undefined`: the one route's static price).
   * `headers`: the request's (Fastify's `request.headers` is a getter: read once).
   */
  const admit = (request: FastifyRequestLike, headers: Headers, reply: FastifyReplyLike, next: Done, prices: unknown[] | undefined): void => {
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf(request);
      if (body === undefined) {
        send(route, request, reply, route.fault('config_invalid', 'bindBody needs the raw body (request.rawBody)', request.method, request.url));
        return;
      }
    }
    const proof = headers[PROOF_HEADER];
    const origin = route.originOf(request.raw);
    // A price resolved for a hinted payer: the challenge names that payer.
    const hint = request.vlxPayer === null ? undefined : headerValue(headers[PAYER_HEADER]);
    const r = stacked
      ? route.authorizeStacked(proof, request.method, request.url, origin, routes, prices as unknown[], body, hint)
      : route.authorize(proof, request.method, request.url, origin, prices === undefined ? route.price : prices[0], body, hint);
    if (isThenable(r)) {
      // A networked store answers later; the event loop serves other requests meanwhile.
      r.then((d) => decided(request, headers, reply, next, d), next);
      return;
    }
    decided(request, headers, reply, next, r);
  };

  /** Run the handler on a paid decision, or send the refusal. */
  const decided = (request: FastifyRequestLike, headers: Headers, reply: FastifyReplyLike, next: Done, r: Decision): void => {
    if (!isPaid(r)) {
      send(route, request, reply, r);
      return;
    }
    request[FACTS] = r;
    watch(reply.raw, r, route, routes, reply, headerObjectOf(reply));
    expose(route, headers, reply);
    next();
  };

  /** Every route's price, then `then` (see `resolvePrices`). */
  const priced = (request: FastifyRequestLike, headers: Headers, reply: FastifyReplyLike, next: Done, then: (prices: unknown[]) => void): void => {
    const payer = priceByPayer ? route.payerFor(headers[PROOF_HEADER], headers[PAYER_HEADER]) : null;
    request.vlxPayer = payer;
    resolvePrices(routes, request, request.method, request.url, (r) => send(route, request, reply, r), then, (e) => next(e as Error), payer);
  };

  const hook: PaywallHook = function vlexivoPreHandler(request: FastifyRequestLike, reply: FastifyReplyLike, next: Done): void {
    try {
      const headers = request.headers;
      const earlier = ownPaidStateOf(reply.raw);
      if (earlier !== undefined) {
        // Another registration of this server's plugin already took the proof.
        if (earlier.route.paywall !== route.paywall || routes.every((r) => earlier.covered.includes(r))) {
          next();
          return;
        }
        priced(request, headers, reply, next, (prices) => {
          for (let i = 0; i < routes.length; i++) {
            const refusal = routes[i].checkStacked(earlier.facts, request.method, request.url, routes[i].originOf(request.raw), prices[i]);
            if (refusal !== null) {
              releaseNow(earlier);
              request[FACTS] = undefined;
              send(route, request, reply, refusal);
              return;
            }
          }
          next();
        });
        return;
      }
      if (isFreeRequest(request.method, headers['access-control-request-method'] !== undefined)) {
        next();
        return;
      }
      if (resolver === undefined && !stacked) {
        admit(request, headers, reply, next, undefined);
        return;
      }
      priced(request, headers, reply, next, (prices) => admit(request, headers, reply, next, prices));
    } catch (e) {
      next(e as Error);
    }
  };
  hook[ROUTES] = routes;
  return hook;
}

/** Options Fastify itself reads from `register(plugin, options)` and leaves in them. */
const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers'];
const PLUGIN_KEYS = [...SERVER_KEYS, ...PAYWALL_KEYS, 'server', ...FASTIFY_REGISTER_KEYS];

function vlexivoFastify(fastify: FastifyInstanceLike, options: VlexivoFastifyOptions, done: Done): void {
  let server: VlexivoServer;
  let base: PaidRoute | undefined;
  try {
    server = serverOf(options ?? {}, PLUGIN_KEYS, 'vlexivo plugin');
    if (options.price !== undefined || options.priceResolver !== undefined) base = server.route(pick(options, PAYWALL_KEYS));
  } catch (e) {
    done(e as Error);
    return;
  }
  if (!fastify.hasRequestDecorator('vlxPayment')) fastify.decorateRequest('vlxPayment', { getter: getPayment, setter: setPayment });
  if (!fastify.hasRequestDecorator('vlxPayer')) fastify.decorateRequest('vlxPayer', null);
  // One PaidRoute per route config object (a HEAD route Fastify derives from a GET one shares it).
  const perConfig = new WeakMap<object, PaidRoute>();

  fastify.addHook('onRoute', (routeOptions: RouteOptionsLike) => {
    const cfg = routeOptions.config?.vlexivo;
    if (cfg === false) return;
    let route = base;
    if (cfg !== undefined && cfg !== null && typeof cfg === 'object') {
      route = perConfig.get(cfg);
      if (route === undefined) perConfig.set(cfg, (route = server.route(cfg as PaywallOptions<any>)));
    }
    if (route === undefined) return;
    // Ours first among the route's own preHandlers: nothing else runs for an unpaid request. A
    // registration of the same server's plugin in an enclosing scope already put one there:
    // merge, so the request pays once for both.
    const hooks = asArray(routeOptions.preHandler);
    const at = hooks.findIndex((h) => (h as PaywallHook)[ROUTES]?.[0]?.paywall === route.paywall);
    if (at >= 0) {
      const prior = (hooks[at] as PaywallHook)[ROUTES] as readonly PaidRoute[];
      if (!prior.includes(route)) hooks[at] = paywallHook([...prior, route]);
      routeOptions.preHandler = hooks;
      return;
    }
    routeOptions.preHandler = [paywallHook([route]), ...hooks];
  });
  done();
}

// Like fastify-plugin: hooks apply to the scope that registers the plugin, not a child scope.
const plugin = vlexivoFastify as typeof vlexivoFastify & Record<symbol, unknown>;
plugin[Symbol.for('skip-override')] = true;
plugin[Symbol.for('fastify.display-name')] = 'vlexivo';
plugin[Symbol.for('plugin-meta')] = { name: 'vlexivo', fastify: '4.x || 5.x' };

export { vlexivoFastify, VlexivoServer };
export default vlexivoFastify;
