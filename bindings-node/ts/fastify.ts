/**
 * Fastify plugin (`vlexivo/fastify`): a route-level `preHandler` on every paid route that
 * answers 402 until the request carries a valid, unused proof for its price, then sets
 * `request.vlxPayment`. The nonce is released when the handler answers 5xx (a thrown handler
 * included) or the connection closes before the response headers went out (as in Express), by
 * one `close` listener on the paid response rather than onResponse/onRequestAbort hooks (a
 * fifth of the plugin's instructions per request under callgrind).
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
import { VlexivoServer, type VlexivoServerOptions } from './server';
import { PaidRoute, PROOF_HEADER, RECEIPT_HEADER_LC, exposeValue, isPaid, isThenable, paymentOf, rawBodyOf, receiptOf, requestOrigin, type PaidFacts, type PaywallOptions, type Rejection, type VlexivoPayment } from './route';

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
  [FACTS]?: PaidFacts;
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

/** Free the request's nonce (from the facts: the application may have replaced vlxPayment). */
function releaseFacts(request: FastifyRequestLike, release: (k: string) => void): void {
  const facts = request[FACTS];
  if (facts !== undefined) release(paymentOf(facts).storeKey);
}

function send(route: PaidRoute, request: FastifyRequestLike, reply: FastifyReplyLike, r: Rejection): void {
  reply.code(r.status);
  for (const k in r.headers) reply.header(k, r.headers[k]);
  expose(route, request, reply);
  reply.header('content-type', 'application/json; charset=utf-8');
  reply.send(r.body);
}

/** CORS: only a cross-origin request (it carries `Origin`) needs our headers exposed. */
function expose(route: PaidRoute, request: FastifyRequestLike, reply: FastifyReplyLike): void {
  if (!route.exposeHeaders || request.headers.origin === undefined) return;
  const v = exposeValue(reply.getHeader('access-control-expose-headers'));
  if (v !== undefined) reply.header('Access-Control-Expose-Headers', v);
}

const asArray = (h: Hook | Hook[] | undefined): Hook[] => (h === undefined ? [] : Array.isArray(h) ? h : [h]);

/** The hooks of one paid route. */
function routeHooks(route: PaidRoute, release: (k: string) => void) {
  const free = route.freeMethods;

  const proceed = (request: FastifyRequestLike, reply: FastifyReplyLike, next: Done, price: unknown): void => {
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf(request);
      if (body === undefined) {
        send(route, request, reply, route.fault('config_invalid', 'bindBody needs the raw body (request.rawBody)', request.method, request.url));
        return;
      }
    }
    const r = route.authorize(request.headers[PROOF_HEADER], request.method, request.url, requestOrigin(request.raw), price, body);
    if (!isPaid(r)) {
      send(route, request, reply, r);
      return;
    }
    request[FACTS] = r;
    // One listener (so one release at most) for both ways a paid request can fail its payer: a
    // 5xx (a thrown handler included) or a response cut off before its headers went out.
    // Status and headersSent only: fastify.inject()'s response never sets writableFinished.
    const res = reply.raw;
    res.on('close', () => {
      if (!res.headersSent || res.statusCode >= 500) releaseFacts(request, release);
    });
    // Lowercase, as Fastify stores it: its `header()` lowercases every name, and an already
    // lowercase literal is returned as is instead of a new string to intern on each request.
    reply.header(RECEIPT_HEADER_LC, receiptOf(r));
    expose(route, request, reply);
    next();
  };

  function vlexivoPreHandler(request: FastifyRequestLike, reply: FastifyReplyLike, next: Done): void {
    if (request[FACTS] !== undefined || free.has(request.method)) {
      next();
      return;
    }
    try {
      const resolver = route.resolver;
      if (resolver === undefined) {
        proceed(request, reply, next, undefined);
        return;
      }
      let price: unknown;
      try {
        price = resolver(request);
      } catch (e) {
        send(route, request, reply, route.resolverFailed(e, request.method, request.url));
        return;
      }
      if (isThenable(price)) {
        price.then(
          (v) => {
            try {
              proceed(request, reply, next, v);
            } catch (e) {
              next(e as Error);
            }
          },
          (e) => send(route, request, reply, route.resolverFailed(e, request.method, request.url)),
        );
        return;
      }
      proceed(request, reply, next, price);
    } catch (e) {
      next(e as Error);
    }
  }

  return { vlexivoPreHandler };
}

function vlexivoFastify(fastify: FastifyInstanceLike, options: VlexivoFastifyOptions, done: Done): void {
  let server: VlexivoServer;
  let baseHooks: ReturnType<typeof routeHooks> | undefined;
  const release = (k: string) => server.release(k);
  try {
    server = options.server ?? new VlexivoServer(options);
    if (options.price !== undefined || options.priceResolver !== undefined) {
      baseHooks = routeHooks(server.route(options), release);
    }
  } catch (e) {
    done(e as Error);
    return;
  }
  if (!fastify.hasRequestDecorator('vlxPayment')) fastify.decorateRequest('vlxPayment', { getter: getPayment, setter: setPayment });

  fastify.addHook('onRoute', (routeOptions: RouteOptionsLike) => {
    const cfg = routeOptions.config?.vlexivo;
    if (cfg === false) return;
    const hooks =
      cfg !== undefined && cfg !== null && typeof cfg === 'object'
        ? routeHooks(server.route(cfg as PaywallOptions<any>), release)
        : baseHooks;
    if (hooks === undefined) return;
    // Ours first among the route's own preHandlers: nothing else runs for an unpaid request.
    routeOptions.preHandler = [hooks.vlexivoPreHandler, ...asArray(routeOptions.preHandler)];
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
