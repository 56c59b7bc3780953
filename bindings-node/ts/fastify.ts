/**
 * Fastify plugin (`vlexivo/fastify`): a `preHandler` hook that answers 402 until the request
 * carries a valid, unused proof for its price, then sets `request.vlxPayment`. The nonce is
 * released when the handler answers 5xx or the request is aborted.
 *
 *   app.register(vlexivo, { apiSecret, price: '0.001' })           // every route in scope
 *   app.post('/x', { config: { vlexivo: { price: '0.01' } } }, h)  // per-route price
 *   app.get('/free', { config: { vlexivo: false } }, h)            // opt out
 */
import type {} from 'fastify';
import { VlexivoServer, type VlexivoServerOptions } from './server';
import { PaidRoute, PROOF_HEADER, RECEIPT_HEADER, exposeValue, isFacts, isThenable, rawBodyOf, type PaywallOptions, type Rejection, type VlexivoPayment } from './route';
import { releaseOnce } from './express';

export interface VlexivoFastifyOptions extends VlexivoServerOptions, PaywallOptions<any> {
  /** Share one server (keys, nonce store) between registrations. */
  server?: VlexivoServer;
}

// Minimal structural types, so the package does not depend on fastify's types.
interface FastifyRequestLike {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
  rawBody?: unknown;
  vlxPayment: VlexivoPayment | null;
  routeOptions?: { config?: { vlexivo?: unknown } };
}
interface FastifyReplyLike {
  statusCode: number;
  sent: boolean;
  code(n: number): FastifyReplyLike;
  header(k: string, v: string): FastifyReplyLike;
  getHeader(k: string): unknown;
  send(body?: unknown): FastifyReplyLike;
}
type Done = (err?: Error) => void;
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

function send(route: PaidRoute, reply: FastifyReplyLike, r: Rejection): void {
  reply.code(r.status);
  for (const k in r.headers) reply.header(k, r.headers[k]);
  expose(route, reply);
  reply.header('content-type', 'application/json; charset=utf-8');
  reply.send(r.body);
}

function expose(route: PaidRoute, reply: FastifyReplyLike): void {
  if (!route.exposeHeaders) return;
  const v = exposeValue(reply.getHeader('access-control-expose-headers'));
  if (v !== undefined) reply.header('Access-Control-Expose-Headers', v);
}

function vlexivoFastify(fastify: FastifyInstanceLike, options: VlexivoFastifyOptions, done: Done): void {
  let server: VlexivoServer;
  let base: PaidRoute | undefined;
  try {
    server = options.server ?? new VlexivoServer(options);
    base = options.price !== undefined || options.priceResolver !== undefined ? server.route(options) : undefined;
  } catch (e) {
    done(e as Error);
    return;
  }
  // Per-route settings, built once per route config object.
  const perRoute = new WeakMap<object, PaidRoute>();
  const routeFor = (req: FastifyRequestLike): PaidRoute | undefined => {
    const cfg = req.routeOptions?.config?.vlexivo;
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
  const release = (k: string) => server.release(k);

  if (!fastify.hasRequestDecorator('vlxPayment')) fastify.decorateRequest('vlxPayment', null);

  const proceed = (route: PaidRoute, request: FastifyRequestLike, reply: FastifyReplyLike, next: Done, price: unknown): void => {
    let body: Buffer | undefined;
    if (route.bindBody) {
      body = rawBodyOf(request);
      if (body === undefined) {
        send(route, reply, route.fault('config_invalid', 'bindBody needs the raw body (request.rawBody)', request.method, request.url));
        return;
      }
    }
    const r = route.decide(request.headers[PROOF_HEADER], request.method, request.url, price, body);
    if (!isFacts(r)) {
      send(route, reply, r);
      return;
    }
    request.vlxPayment = r;
    reply.header(RECEIPT_HEADER, r.receipt);
    expose(route, reply);
    next();
  };

  fastify.addHook('preHandler', function vlexivoPreHandler(request: FastifyRequestLike, reply: FastifyReplyLike, next: Done): void {
    const route = routeFor(request);
    if (route === undefined || route.freeMethods.has(request.method) || request.vlxPayment !== null) {
      next();
      return;
    }
    try {
      const resolver = route.resolver;
      if (resolver === undefined) {
        proceed(route, request, reply, next, route.price);
        return;
      }
      let price: unknown;
      try {
        price = resolver(request);
      } catch (e) {
        send(route, reply, route.resolverFailed(e, request.method, request.url));
        return;
      }
      if (isThenable(price)) {
        price.then(
          (v) => {
            try {
              proceed(route, request, reply, next, v);
            } catch (e) {
              next(e as Error);
            }
          },
          (e) => send(route, reply, route.resolverFailed(e, request.method, request.url)),
        );
        return;
      }
      proceed(route, request, reply, next, price);
    } catch (e) {
      next(e as Error);
    }
  });

  // After the response: a 5xx (including a thrown handler) frees the proof for a retry.
  fastify.addHook('onResponse', function vlexivoOnResponse(request: FastifyRequestLike, reply: FastifyReplyLike, next: Done): void {
    if (request.vlxPayment !== null && reply.statusCode >= 500) releaseOnce(release, request.vlxPayment);
    next();
  });
  fastify.addHook('onRequestAbort', function vlexivoOnAbort(request: FastifyRequestLike, next: Done): void {
    if (request.vlxPayment !== null) releaseOnce(release, request.vlxPayment);
    next();
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
