/**
 * Koa middleware (`vlexivo/koa`): answers 402 until the request carries a valid, unused proof
 * for its price, then sets `ctx.state.vlxPayment` and runs the rest of the chain.
 *
 *   app.use(bodyParser());                                    // if the resolver reads the body
 *   router.post('/x', paywall({ apiSecret, price: '0.001' }), (ctx) => { ctx.body = ctx.state.vlxPayment; });
 *
 * Core decides (`policy.ts`, the native paywall). Koa writes the response after the whole
 * chain has run, so the handler's outcome is known here before anything is sent: a chain that
 * throws releases the nonce (the error goes on to Koa), and otherwise core's response policy
 * decides from `ctx.status` whether the nonce is released and whether the receipt goes out.
 * Two paywalls of one server on the way (a zone and a route) charge once: the later one only
 * checks that the payment covers its own price.
 */
import type { Middleware, ParameterizedContext } from 'koa';
import { VlexivoServer, serverOf, SERVER_KEYS, type VlexivoServerOptions } from './server';
import { exposesHeaders, isFreeRequest, releases, sendsReceipt } from './policy';
import { PaidRoute, PAYER_HEADER, PAYWALL_KEYS, PROOF_HEADER, RECEIPT_HEADER, exposeValue, forBrowser, isPaid, isThenable, paymentOf, pick, rawBodyOf, type PaidFacts, type PaywallOptions, type Rejection, type RequestOrigin, type VlexivoPayer, type VlexivoPayment } from './route';

/** What a Koa paywall's state holds: `ctx.state.vlxPayment` on paid requests. */
export interface VlexivoKoaState {
  vlxPayment?: VlexivoPayment;
  /** Who the request is priced for (a resolver-priced paywall): proven by its proof, else hinted. */
  vlxPayer?: VlexivoPayer | null;
}

export type KoaContext = ParameterizedContext<VlexivoKoaState & Record<string, any>>;

export interface VlexivoKoaOptions extends VlexivoServerOptions, PaywallOptions<KoaContext> {
  /** Share one server (keys, nonce store) between paywalls. */
  server?: VlexivoServer;
}

const KOA_KEYS: readonly string[] = [...SERVER_KEYS, ...PAYWALL_KEYS, 'server'];

/** The paid request's settlement, on the context (shared with a later paywall of the chain). */
const PAID = Symbol('vlexivo.koa.paid');
interface Paid {
  route: PaidRoute<any>;
  facts: PaidFacts;
  payment: VlexivoPayment;
  settled: boolean;
}
type WithPaid = KoaContext & { [PAID]?: Paid };

function originOf(ctx: KoaContext): RequestOrigin {
  const host = ctx.get('host');
  return { host: host === '' ? undefined : host, secure: (ctx.req.socket as { encrypted?: boolean }).encrypted === true };
}

function expose(route: PaidRoute<any>, ctx: KoaContext): void {
  if (!route.exposeHeaders || !exposesHeaders(ctx.get('origin') !== '')) return;
  const v = exposeValue(ctx.response.get('Access-Control-Expose-Headers') || undefined);
  if (v !== undefined) ctx.set('Access-Control-Expose-Headers', v);
}

function send(route: PaidRoute<any>, ctx: KoaContext, r: Rejection): void {
  const page = forBrowser(r, ctx.get('accept') || undefined, ctx.get(PROOF_HEADER) !== '');
  ctx.status = page.status;
  ctx.set(page.headers);
  ctx.type = page.headers['Content-Type'] ?? 'application/json; charset=utf-8';
  ctx.body = page.body;
  expose(route, ctx);
}

/** Settle once: core's response policy on the handler's outcome. */
function settle(ctx: KoaContext, paid: Paid, raised: boolean): void {
  if (paid.settled) return;
  paid.settled = true;
  const started = ctx.res.headersSent ? ctx.res.statusCode : 0;
  const status = raised ? started : ctx.status;
  if (releases(status, raised, !raised)) {
    paid.route.release(paid.payment.storeKey);
    return;
  }
  if (!raised && !ctx.res.headersSent && sendsReceipt(status)) {
    ctx.set(RECEIPT_HEADER, paid.payment.receipt);
    expose(paid.route, ctx);
  }
}

/** A Koa paywall middleware for `options` (a server's options or `server`, and a price). */
export function paywall(options: VlexivoKoaOptions): Middleware<VlexivoKoaState & Record<string, any>> {
  const server = serverOf(options ?? {}, KOA_KEYS, 'vlexivo koa paywall');
  const route = server.route<KoaContext>(pick(options, PAYWALL_KEYS));

  return async function vlexivoPaywall(koaCtx, next): Promise<void> {
    const ctx = koaCtx as WithPaid;
    const method = ctx.method;
    const path = ctx.originalUrl;
    const earlier = ctx[PAID];
    const stacked = earlier !== undefined && !earlier.settled && earlier.route.paywall === route.paywall;
    if (!stacked && isFreeRequest(method, ctx.get('access-control-request-method') !== '')) {
      await next();
      return;
    }
    const proofHeader = ctx.get(PROOF_HEADER);
    const proof = proofHeader === '' ? undefined : proofHeader;
    // Who the request is priced for (core decides: the proof's payer, else the hint), and the
    // hint a resolver-priced challenge names.
    let hint: string | undefined;
    let payer: VlexivoPayer | null = null;
    if (route.resolver !== undefined) {
      const h = ctx.get(PAYER_HEADER);
      hint = h === '' ? undefined : h;
      payer = route.payerFor(proof, hint);
      ctx.state.vlxPayer = payer;
    }
    let price: unknown;
    try {
      price = route.priceFor(ctx, payer);
      if (isThenable(price)) price = await price;
    } catch (e) {
      send(route, ctx, route.resolverFailed(e, method, path));
      return;
    }
    if (stacked) {
      // An earlier paywall of this server took the proof: it must cover this price too.
      const refusal = route.checkStacked(earlier.facts, method, path, originOf(ctx), price);
      if (refusal === null) {
        await next();
        return;
      }
      earlier.settled = true;
      earlier.route.release(earlier.payment.storeKey);
      ctx.state.vlxPayment = undefined;
      send(route, ctx, refusal);
      return;
    }
    let body: Buffer | undefined;
    if (route.bindBody) {
      const req = ctx.request as { rawBody?: unknown; body?: unknown };
      body = rawBodyOf({ rawBody: req.rawBody, body: req.body });
      if (body === undefined) {
        send(route, ctx, route.fault('config_invalid', 'bindBody needs the raw body (ctx.request.rawBody)', method, path));
        return;
      }
    }
    let r = route.authorize(proof, method, path, originOf(ctx), price, body, hint);
    if (isThenable(r)) r = await r;
    if (!isPaid(r)) {
      send(route, ctx, r);
      return;
    }
    const paid: Paid = { route, facts: r, payment: paymentOf(r), settled: false };
    ctx[PAID] = paid;
    ctx.state.vlxPayment = paid.payment;
    try {
      await next();
    } catch (e) {
      settle(ctx, paid, true);
      throw e;
    }
    settle(ctx, paid, false);
  };
}

export { VlexivoServer };
export default paywall;
