/**
 * Hono middleware (`vlexivo/hono`), over the fetch-standard paywall (`fetch.ts`): answers 402
 * until the request carries a valid, unused proof for its price, then sets
 * `c.get('vlxPayment')` and runs the handler; its response gets the receipt, or its failure
 * (a 5xx, or a throw that Hono turned into its error response) releases the nonce.
 *
 *   app.post('/api/x', paywall({ apiSecret, price: '0.001' }), (c) => c.json(c.get('vlxPayment')));
 *   app.use('/api/*', paywall({ server: vlx, priceResolver: async (c) => ((await c.req.json()).model.includes('large') ? '0.01' : '0.001') }));
 *
 * The price resolver receives Hono's context: `c.req.json()` caches the body, so the handler
 * reads it again. Runs on Node (`@hono/node-server`): the core is a native addon.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { FetchPaywall, FETCH_KEYS, receiptOn, type FetchPaywallOptions } from './fetch';
import { isThenable, paymentOf, type VlexivoPayment } from './route';
import { VlexivoServer } from './server';

/** Hono variables a paid request carries. */
export interface VlexivoHonoVariables {
  vlxPayment: VlexivoPayment;
}

export type VlexivoHonoOptions = FetchPaywallOptions<Context>;

/** What @hono/node-server passes as `c.env`: the Node request and response behind `c.req.raw`. */
interface NodeBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

function nodeOf(env: unknown): NodeBindings | undefined {
  const b = env as Partial<NodeBindings> | undefined;
  return b !== undefined && b !== null && typeof b.incoming?.headers === 'object' && typeof b.outgoing?.setHeader === 'function' ? (b as NodeBindings) : undefined;
}

/** A Hono paywall middleware for `options` (a server's options or `server`, and a price). */
export function paywall(options: VlexivoHonoOptions): MiddlewareHandler<{ Variables: VlexivoHonoVariables }> {
  const fp = new FetchPaywall<Context>(options, FETCH_KEYS, 'vlexivo hono paywall');
  return async function vlexivoPaywall(c, next): Promise<Response | void> {
    // On @hono/node-server the request's headers are read from Node's parsed ones and the
    // receipt goes on Node's response: the fetch objects' Headers are never built.
    const node = nodeOf(c.env);
    const headers = node?.incoming.headers;
    // The body's bytes are read only for a body-bound proof (the closure is not made otherwise).
    let paid = fp.admitNow(c.req.raw, c, fp.route.bindBody ? () => c.req.arrayBuffer() : undefined, headers);
    if (isThenable(paid)) paid = await paid;
    if (paid instanceof Response) return paid;
    if (paid === null) {
      await next();
      return;
    }
    // The nonce is settled here, once, from what the handler did: the payment is kept in this
    // call rather than registered for `complete`/`fail` (two WeakMap entries per request, which
    // make every scavenge walk their tables).
    const payment = paymentOf(paid);
    c.set('vlxPayment', payment);
    await next();
    // Hono caught a throw from the handler and answered with its error handler's response.
    if (c.error !== undefined) {
      fp.failed(payment.storeKey);
      return;
    }
    if (!fp.keeps(payment.storeKey, c.res.status)) return;
    if (node !== undefined && headers?.origin === undefined) {
      // Node sends it with the response's own headers: the handler's `Response` is left as it is.
      receiptOn(node.outgoing, payment.receipt);
      return;
    }
    const res = fp.withReceipt(payment.receipt, c.res, c.req.raw);
    if (res !== c.res) c.res = res;
  };
}

export { VlexivoServer };
export default paywall;
