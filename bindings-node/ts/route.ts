/**
 * The framework-agnostic part of every adapter: one paid route's price, currency and scope,
 * and the single native call that verifies a proof and consumes its nonce (or says what to
 * answer instead). Adapters only read the request and write the response.
 */
import native = require('./native');
import type { PricedRoute, Rejection } from '../native/index.js';
import { VlexivoConfigError, createError, fromNative, type VlexivoErrorCode } from './errors';


/** What `req.vlxPayment` holds on a paid request. */
export interface VlexivoPayment {
  /** Payer's wallet address (EIP-55). */
  payer: string;
  /** Amount paid, canonical decimal string ("0.001"). */
  amount: string;
  currency: string;
  /** The payment's transaction hash. */
  txHash: string;
  /** The challenge nonce this payment consumed. */
  nonce: string;
  /** Unix seconds. */
  paidAt: number;
  /** Unix seconds: the proof token's expiry. */
  expiresAt: number;
  /** "METHOD /path" the token is bound to. */
  resource: string;
  /** Nonce-store key (used to release the nonce if the handler fails). */
  storeKey: string;
  /** The `Vlexivo-Receipt` header value. */
  receipt: string;
}

export type { Rejection };

/**
 * Who a request is priced for, the price resolver's second argument (and `req.vlxPayer`): the
 * payer its proof proves (`proven: true`, on the paid retry), else the one its `Vlexivo-Payer`
 * hint names (`proven: false`, on the unpaid request), else `null`. A challenge priced for a
 * hinted payer names it, only that wallet may pay it, and the retry is priced again for the
 * proven payer: a wallet that hints another's address is never served cheaper.
 */
export interface VlexivoPayer {
  /** EIP-55 address. */
  address: string;
  proven: boolean;
}

/** A price: a decimal string ("0.001") or a number (read exactly; 0.1 + 0.2 is refused). */
export type PriceValue = string | number;
/** What a price resolver may return: a price, or a price in another currency. */
export type ResolvedPrice = PriceValue | { price: PriceValue; currency?: string };

export interface PaywallOptions<Req = any> {
  /** Fixed price per call. */
  price?: PriceValue;
  /** Default "usd". */
  currency?: string;
  /** Default "per-call". */
  scope?: string;
  /**
   * Dynamic price from the request and its payer (see {@link VlexivoPayer}: `null` when the
   * request names none); sync (fast path) or async. Overrides `price`.
   */
  priceResolver?: (req: Req, payer: VlexivoPayer | null) => ResolvedPrice | Promise<ResolvedPrice>;
  /**
   * Removed: a whole method can no longer pass unpaid (a handler mounted with `app.use` answers
   * every method). CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) are always
   * free; leave a route without a paywall to make it free. Giving it is `config_invalid`.
   */
  freeMethods?: never;
}

/** Minimal logger (console by default): provider-side faults are logged with their details. */
export interface VlexivoLogger {
  error(message: string): void;
  warn?(message: string): void;
}

/**
 * A refusal as the request's client should get it: core's HTML page for a browser that asked
 * without a proof (same 402, same challenge header), the JSON rejection for everyone else.
 */
export function forBrowser(r: Rejection, accept: string | string[] | undefined, proofPresent: boolean): Rejection {
  return native.forBrowser(r, Array.isArray(accept) ? accept.join(',') : accept, proofPresent);
}

const HEADER_NAMES = native.headerNames();
/** `native.authorizeFixed` takes the usual methods by number (see `httpMethods`). */
const METHOD_CODES = new Map(native.httpMethods().map((m, i) => [m, i]));
/** Headers a browser client must be allowed to read (core's list). */
export const EXPOSED_HEADERS = HEADER_NAMES.expose;
export const PROOF_HEADER = HEADER_NAMES.proof.toLowerCase();
export const RECEIPT_HEADER = HEADER_NAMES.receipt;
export const RECEIPT_HEADER_LC = HEADER_NAMES.receipt.toLowerCase();
export const PAYER_HEADER = HEADER_NAMES.payer.toLowerCase();

/** The first value of a header (Node gives repeated ones as an array). */
export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The payer of paid facts (the line's second field) without building the payment. */
export function payerOf(r: PaidFacts): string {
  if (typeof r !== 'string') return r[0];
  const a = r.indexOf('\u001f') + 1;
  return r.slice(a, r.indexOf('\u001f', a));
}
export const CHALLENGE_HEADER_LC = HEADER_NAMES.challenge.toLowerCase();

/** The array form of a paid result (rare; see `PaidFacts`): [payer, amount, currency, txHash, nonce, paidAt, expiresAt, resource, storeKey, receipt]. */
type PaidTuple = [string, string, string, string, string, number, number, string, string, string];

/**
 * A paid request's facts as the native call returns them: one U+001F-separated string (the
 * usual form: one string crosses the boundary) or, rarely, the array form.
 */
export type PaidFacts = string | PaidTuple;

/** What a paywall decides for a request: the paid facts, or the response to send instead. */
export type Decision = PaidFacts | Rejection;

/** Is this native result a paid request's facts (not a rejection)? */
export function isPaid(r: PaidFacts | Rejection): r is PaidFacts {
  return typeof r === 'string' || Array.isArray(r);
}

/** The payment object of paid facts. */
export function paymentOf(r: PaidFacts): VlexivoPayment {
  if (typeof r !== 'string') {
    return {
      payer: r[0],
      amount: r[1],
      currency: r[2],
      txHash: r[3],
      nonce: r[4],
      paidAt: r[5],
      expiresAt: r[6],
      resource: r[7],
      storeKey: r[8],
      receipt: r[9],
    };
  }
  // receipt␟payer␟amount␟currency␟txHash␟nonce␟paidAt␟expiresAt␟resource␟storeKey, read with
  // indexOf + slice: `split` goes through V8's C++ runtime and costs about twice as much here.
  const e0 = r.indexOf(SEP);
  const e1 = r.indexOf(SEP, e0 + 1);
  const e2 = r.indexOf(SEP, e1 + 1);
  const e3 = r.indexOf(SEP, e2 + 1);
  const e4 = r.indexOf(SEP, e3 + 1);
  const e5 = r.indexOf(SEP, e4 + 1);
  const e6 = r.indexOf(SEP, e5 + 1);
  const e7 = r.indexOf(SEP, e6 + 1);
  const e8 = r.indexOf(SEP, e7 + 1);
  return {
    payer: r.slice(e0 + 1, e1),
    amount: r.slice(e1 + 1, e2),
    currency: r.slice(e2 + 1, e3),
    txHash: r.slice(e3 + 1, e4),
    nonce: r.slice(e4 + 1, e5),
    paidAt: integerAt(r, e5 + 1, e6),
    expiresAt: integerAt(r, e6 + 1, e7),
    resource: r.slice(e7 + 1, e8),
    storeKey: r.slice(e8 + 1),
    receipt: r.slice(0, e0),
  };
}

const SEP = '\u001f';

/**
 * The decimal integer at `[start, end)` of a facts line (core writes Unix seconds as digits),
 * read in place: `Number()` of a slice goes through V8's runtime. Anything else: `Number()`.
 */
function integerAt(r: string, start: number, end: number): number {
  if (end - start > 15) return Number(r.slice(start, end));
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = r.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return Number(r.slice(start, end));
    n = n * 10 + d;
  }
  return n;
}

/** The `Vlexivo-Receipt` value of paid facts (the line's first field) without building the payment. */
export function receiptOf(r: PaidFacts): string {
  return typeof r === 'string' ? r.slice(0, r.indexOf('\u001f')) : r[9];
}

/** The nonce-store handle of paid facts (the line's last field). */
export function storeKeyOf(r: PaidFacts): string {
  return typeof r === 'string' ? r.slice(r.lastIndexOf('\u001f') + 1) : r[8];
}

/** The amount paid (canonical decimal) and its currency, from paid facts. */
export function amountOf(r: PaidFacts): { amount: string; currency: string } {
  if (typeof r !== 'string') return { amount: r[1], currency: r[2] };
  const p = paymentOf(r);
  return { amount: p.amount, currency: p.currency };
}

export function isFacts(r: VlexivoPayment | Rejection): r is VlexivoPayment {
  return (r as VlexivoPayment).storeKey !== undefined;
}

const toPayment = (r: Decision): VlexivoPayment | Rejection => (isPaid(r) ? paymentOf(r) : r);

/** The option keys of a paywall (`vlx.paywall({...})`, a route's plugin config). */
export const PAYWALL_KEYS: readonly string[] = ['price', 'currency', 'scope', 'priceResolver', 'freeMethods'];

/**
 * Refuse option keys nobody reads: a misspelt `priceResolver` or `nonceStore` must not start a
 * server that silently does something else (`config_invalid`, naming the key).
 */
export function checkKeys(options: object, known: readonly string[], what: string): void {
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) {
      throw new VlexivoConfigError('config_invalid', `unknown ${what} option ${JSON.stringify(k)} (known: ${known.join(', ')})`, {
        status: 500,
        details: { option: k },
      });
    }
  }
}

/** The entries of `options` under `keys` (a plugin's options split into the server's and the paywall's). */
export function pick<T extends object>(options: T, keys: readonly string[]): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (Object.prototype.hasOwnProperty.call(options, k)) out[k] = (options as Record<string, unknown>)[k];
  return out as Partial<T>;
}

/** Resolver prices seen recently, parsed once each (bounded). */
const PRICE_CACHE_MAX = 256;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}

/** Is this a promise-like value (an async resolver's result)? */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

/** Core's `Access-Control-Expose-Headers` value for an answer that sets none of its own. */
const EXPOSE_ALONE = native.exposeValue(null) ?? EXPOSED_HEADERS;

/** Our headers merged into `Access-Control-Expose-Headers` without dropping the app's own (core's
 * merge): `undefined` when the app's value needs no change. */
export function exposeValue(existing: unknown): string | undefined {
  if (existing === undefined || existing === null || existing === '') return EXPOSE_ALONE;
  const s = Array.isArray(existing) ? existing.join(', ') : String(existing);
  return native.exposeValue(s) ?? undefined;
}

/**
 * How the request reached the server, for a paywall without a configured `origin`: the `Host`
 * header and whether the connection was TLS. Core binds challenges and proofs to it.
 */
export interface RequestOrigin {
  host: string | undefined;
  secure: boolean;
}

/** The origin facts of a Node request (`Host`, or HTTP/2 `:authority`; TLS socket). `headers`: `req.headers`, when the caller has read it already. */
export function requestOrigin(
  req: { headers: Record<string, string | string[] | undefined>; socket?: unknown },
  headers: Record<string, string | string[] | undefined> = req.headers,
): RequestOrigin {
  const h = headers.host ?? headers[':authority'];
  const socket = req.socket as { encrypted?: boolean } | undefined;
  return { host: typeof h === 'string' ? h : undefined, secure: socket?.encrypted === true };
}

/** What a paywall with a configured `origin` is given for every request: core binds that origin, not the request's. */
export const CONFIGURED_ORIGIN: RequestOrigin = Object.freeze({ host: undefined, secure: false });

export interface RouteContext {
  paywall: native.Paywall;
  clock?: () => number;
  logger: VlexivoLogger;
  exposeHeaders: boolean;
  /** Told of every payer whose payment this server accepted (the usage cache drops its counts). */
  paid?: PaidListener;
}

/** Told of payers whose payment was accepted; `active` false: nobody is listening now. */
export interface PaidListener {
  readonly active: boolean;
  paid(payer: string): void;
}

/** One paid route (one `paywall()` / plugin registration). */
export class PaidRoute<Req = any> {
  readonly paywall: native.Paywall;
  readonly currency: string;
  readonly scope: string;
  /** Canonical static price, when there is no resolver. */
  readonly price: string | undefined;
  readonly resolver: ((req: Req, payer: VlexivoPayer | null) => ResolvedPrice | Promise<ResolvedPrice>) | undefined;
  readonly bindBody: boolean;
  readonly exposeHeaders: boolean;
  /** Core binds each request's own origin (`Host`, TLS): the paywall has no configured `origin`. */
  readonly bindsRequestOrigin: boolean;
  private readonly clock: (() => number) | undefined;
  private readonly logger: VlexivoLogger;
  private readonly listener: PaidListener | undefined;
  /**
   * The nonce store waits on the network (Redis, PostgreSQL): decisions that reach the store
   * come as promises, resolved from the store's own threads (the event loop never waits).
   */
  readonly remote: boolean;
  /** The static price's pre-parsed native route. */
  private readonly fixed: PricedRoute | undefined;
  /** `fixed` as `native.authorizeFixed` takes it, when nothing else per request is needed (a
   * local store, no injected clock). */
  private readonly handle: PricedRoute['handle'] | undefined;
  private readonly priced = new Map<string | number, PricedRoute>();

  constructor(ctx: RouteContext, opts: PaywallOptions<Req>) {
    if (opts === null || typeof opts !== 'object') {
      throw new VlexivoConfigError('config_invalid', 'paywall options must be an object', { status: 500 });
    }
    checkKeys(opts, PAYWALL_KEYS, 'paywall');
    this.paywall = ctx.paywall;
    this.clock = ctx.clock;
    this.logger = ctx.logger;
    this.listener = ctx.paid;
    this.exposeHeaders = ctx.exposeHeaders;
    this.bindBody = ctx.paywall.bindsBody;
    this.bindsRequestOrigin = ctx.paywall.origin == null;
    this.remote = ctx.paywall.storeBlocks;
    this.currency = opts.currency ?? 'usd';
    this.scope = opts.scope ?? 'per-call';
    if ((opts as { freeMethods?: unknown }).freeMethods !== undefined) {
      throw new VlexivoConfigError(
        'config_invalid',
        'freeMethods was removed: only CORS preflights pass unpaid; leave a route without a paywall to make it free',
        { status: 500 },
      );
    }
    if (opts.priceResolver !== undefined && typeof opts.priceResolver !== 'function') {
      throw new VlexivoConfigError('config_invalid', 'priceResolver must be a function', { status: 500 });
    }
    this.resolver = opts.priceResolver;
    if (opts.price !== undefined) {
      // A bad static price is a startup error, not a 500 on every request.
      try {
        this.fixed = this.paywall.route(opts.price, this.currency, this.scope);
        if (!this.remote && this.clock === undefined) this.handle = this.fixed.handle;
        this.price = this.fixed.price;
      } catch (e) {
        throw fromNative(e);
      }
    } else if (this.resolver === undefined) {
      throw new VlexivoConfigError('config_invalid', 'paywall needs a price or a priceResolver', { status: 500 });
    }
  }

  /**
   * The origin facts of a Node request as this paywall needs them: none when it has a configured
   * origin (core ignores the request's then), else `requestOrigin(req, headers)`.
   */
  originOf(
    req: { headers: Record<string, string | string[] | undefined>; socket?: unknown },
    headers?: Record<string, string | string[] | undefined>,
  ): RequestOrigin {
    return this.bindsRequestOrigin ? requestOrigin(req, headers) : CONFIGURED_ORIGIN;
  }

  /** The current time for the paywall (the injected clock, else the native system clock). */
  now(): number | undefined {
    return this.clock === undefined ? undefined : this.clock();
  }

  /**
   * Verify `proof` for this request at `resolved` (a resolver's result or the static price) and
   * consume its nonce; or the response to send instead. Never throws for a refusal.
   */
  decide(
    proof: string | string[] | undefined,
    method: string,
    path: string,
    origin: RequestOrigin,
    resolved: unknown,
    body?: Buffer,
    hint?: string,
  ): VlexivoPayment | Rejection | Promise<VlexivoPayment | Rejection> {
    const r = this.authorize(proof, method, path, origin, resolved, body, hint);
    if (isThenable(r)) return r.then(toPayment);
    return toPayment(r);
  }

  /**
   * `decide` with the paid facts left in their native form ({@link PaidFacts}), for adapters
   * that build the payment object only when the application reads it.
   */
  authorize(
    proof: string | string[] | undefined,
    method: string,
    path: string,
    origin: RequestOrigin,
    resolved: unknown,
    body?: Buffer,
    hint?: string,
  ): Decision | Promise<Decision> {
    const p = Array.isArray(proof) ? proof[0] : proof;
    const now = this.clock === undefined ? undefined : this.clock();
    let route: PricedRoute | undefined;
    if (this.resolver === undefined && this.fixed !== undefined) route = this.fixed;
    else if (typeof resolved === 'string' || typeof resolved === 'number') route = this.routeFor(resolved);
    let r: Decision | Promise<Decision>;
    const code = METHOD_CODES.get(method);
    if (route === this.fixed && this.handle !== undefined && body === undefined && hint === undefined && code !== undefined) {
      // The usual paid request: the plain native function on the route's handle.
      r = native.authorizeFixed(this.handle, p, code, path, origin.host, origin.secure);
    } else if (route !== undefined) {
      r = this.remote
        ? route.authorizeAsync(p, method, path, origin.host, origin.secure, now, body, hint)
        : route.authorize(p, method, path, origin.host, origin.secure, now, body, hint);
    } else {
      // A price in another currency, or one that does not parse (a logged 500).
      const v = this.split(resolved);
      if (v === undefined) {
        return this.fault('price_invalid', `priceResolver returned ${describe(resolved)}, not a price`, method, path);
      }
      r = this.remote
        ? this.paywall.authorizeAsync(p, method, path, origin.host, origin.secure, v.amount, v.currency, this.scope, now, body, hint)
        : this.paywall.authorize(p, method, path, origin.host, origin.secure, v.amount, v.currency, this.scope, now, body, hint);
    }
    if (typeof r === 'string') {
      if (this.listener?.active === true) this.listener.paid(payerOf(r));
      return r;
    }
    if (isThenable(r)) return r.then((d) => this.logged(d, method, path));
    return this.logged(r, method, path);
  }

  /** A decision, its provider-side fault (store down, bad price) logged. */
  private logged(r: Decision, method: string, path: string): Decision {
    if (isPaid(r)) {
      if (this.listener?.active === true) this.listener.paid(payerOf(r));
      return r;
    }
    if (r.logMessage !== undefined && r.logMessage !== null) this.log(r.code, r.logMessage, method, path);
    return r;
  }

  /** A resolved price as an amount and its currency, or undefined when it is not a price. */
  private split(resolved: unknown): { amount: string | number; currency: string } | undefined {
    let amount: unknown = resolved;
    let currency = this.currency;
    if (amount !== null && typeof amount === 'object' && 'price' in (amount)) {
      const o = amount as { price: unknown; currency?: unknown };
      amount = o.price;
      if (o.currency !== undefined) currency = String(o.currency);
    }
    if (typeof amount !== 'string' && typeof amount !== 'number') return undefined;
    return { amount, currency };
  }

  /** This route's price for a request: the fixed price, or the resolver's answer (a promise
   * when it is async). Throws what the resolver throws. */
  priceFor(req: Req, payer: VlexivoPayer | null = null): unknown {
    return this.resolver === undefined ? this.price : this.resolver(req, payer);
  }

  /**
   * Who a request with this proof and `Vlexivo-Payer` hint is priced for (core decides: the
   * proof's payer if it verifies, else the hinted one, else `null`).
   */
  payerFor(proof: string | string[] | undefined, hint: string | string[] | undefined): VlexivoPayer | null {
    const p = headerValue(proof);
    const h = headerValue(hint);
    if (p === undefined && h === undefined) return null;
    return this.paywall.pricedPayer(p, h, this.now()) ?? null;
  }

  /**
   * Several paywalls of this server cover the request (`routes`, this one first, with their
   * `resolved` prices): verify at core's effective price of them all — asked once — and consume
   * the nonce; or the response to send instead.
   */
  authorizeStacked(
    proof: string | string[] | undefined,
    method: string,
    path: string,
    origin: RequestOrigin,
    routes: readonly PaidRoute<any>[],
    resolved: readonly unknown[],
    body?: Buffer,
    hint?: string,
  ): Decision | Promise<Decision> {
    const amounts: (string | number)[] = [];
    const currencies: string[] = [];
    for (let i = 0; i < routes.length; i++) {
      const v = routes[i].split(resolved[i]);
      if (v === undefined) {
        return this.fault('price_invalid', `priceResolver returned ${describe(resolved[i])}, not a price`, method, path);
      }
      amounts.push(v.amount);
      currencies.push(v.currency);
    }
    let price: string;
    try {
      price = this.paywall.effectivePrice(amounts, currencies);
    } catch (e) {
      return this.fault('price_invalid', (fromNative(e) as Error).message, method, path);
    }
    const p = Array.isArray(proof) ? proof[0] : proof;
    const r = this.remote
      ? this.paywall.authorizeAsync(p, method, path, origin.host, origin.secure, price, currencies[0], this.scope, this.now(), body, hint)
      : this.paywall.authorize(p, method, path, origin.host, origin.secure, price, currencies[0], this.scope, this.now(), body, hint);
    if (isThenable(r)) return r.then((d) => this.logged(d, method, path));
    return this.logged(r, method, path);
  }

  /**
   * A paywall after the one that consumed the request's proof (`facts`): `null` when the payment
   * covers this paywall's `resolved` price too, else the refusal to send (402 `token_underpaid`
   * with a challenge for this price) once the consumed nonce is released.
   */
  checkStacked(facts: PaidFacts, method: string, path: string, origin: RequestOrigin, resolved: unknown): Rejection | null {
    const v = this.split(resolved);
    if (v === undefined) return this.fault('price_invalid', `priceResolver returned ${describe(resolved)}, not a price`, method, path);
    const paid = amountOf(facts);
    const r = this.paywall.checkStacked(paid.amount, paid.currency, v.amount, v.currency, method, path, origin.host, origin.secure, this.scope, this.now());
    if (r !== null && r !== undefined && r.logMessage !== undefined && r.logMessage !== null) this.log(r.code, r.logMessage, method, path);
    return r ?? null;
  }

  /** The parsed route for a resolver's price (cached), or undefined if it does not parse. */
  private routeFor(price: string | number): PricedRoute | undefined {
    let route = this.priced.get(price);
    if (route === undefined) {
      try {
        route = this.paywall.route(price, this.currency, this.scope);
      } catch {
        return undefined;
      }
      if (this.priced.size >= PRICE_CACHE_MAX) this.priced.clear();
      this.priced.set(price, route);
    }
    return route;
  }

  /** A provider-side fault (bad resolver, no raw body): logged with details, a bare 5xx out. */
  fault(code: VlexivoErrorCode, reason: string, method: string, path: string): Rejection {
    const r = this.paywall.reject(code, { reason }, method, path, null, null, null, null, this.scope, this.now());
    this.log(code, r.logMessage ?? reason, method, path);
    return r;
  }

  /** The resolver threw or rejected. */
  resolverFailed(err: unknown, method: string, path: string): Rejection {
    const msg = err instanceof Error ? err.message : String(err);
    return this.fault('price_invalid', `priceResolver threw: ${msg}`, method, path);
  }

  /** The handler failed: the same proof may be presented again. */
  release(storeKey: string): void {
    try {
      this.paywall.release(storeKey);
    } catch (e) {
      const err = fromNative(e) as Error;
      this.logger.error(`[vlexivo] could not release nonce ${storeKey}: ${err.message}`);
    }
  }

  private log(code: string, message: string, method: string, path: string): void {
    this.logger.error(`[vlexivo] ${code}: ${message} (${method} ${path})`);
  }
}

/**
 * Every paywall's price for one request, then `then(prices)`: synchronously when every price is
 * static or its resolver answers synchronously (the paid path then stays synchronous), after
 * the promises otherwise. Resolvers get `payer` as their second argument. A resolver that
 * throws or rejects is answered with `refuse` (its logged 500); an exception from `then` after
 * an await goes to `fail`.
 */
export function resolvePrices(
  routes: readonly PaidRoute<any>[],
  req: unknown,
  method: string,
  path: string,
  refuse: (r: Rejection) => void,
  then: (prices: unknown[]) => void,
  fail: (e: unknown) => void,
  payer: VlexivoPayer | null = null,
): void {
  const prices: unknown[] = new Array(routes.length);
  let pending: Promise<unknown>[] | undefined;
  for (let i = 0; i < routes.length; i++) {
    let v: unknown;
    try {
      v = routes[i].priceFor(req, payer);
    } catch (e) {
      refuse(routes[i].resolverFailed(e, method, path));
      return;
    }
    if (isThenable(v)) {
      const at = i;
      (pending ??= []).push(
        Promise.resolve(v).then(
          (x) => (prices[at] = x),
          (e) => Promise.reject(new ResolverFailure(routes[at], e)),
        ),
      );
    } else {
      prices[i] = v;
    }
  }
  if (pending === undefined) {
    then(prices);
    return;
  }
  Promise.all(pending).then(
    () => {
      try {
        then(prices);
      } catch (e) {
        fail(e);
      }
    },
    (f: ResolverFailure) => refuse(f.route.resolverFailed(f.error, method, path)),
  );
}

/** A resolver's rejection, tagged with its paywall (an Error, as promise rejections should be). */
class ResolverFailure extends Error {
  constructor(
    readonly route: PaidRoute<any>,
    readonly error: unknown,
  ) {
    super('price resolver failed');
  }
}

/** The raw request body for body-bound paywalls, if the framework kept it. */
export function rawBodyOf(req: { rawBody?: unknown; body?: unknown }): Buffer | undefined {
  const raw = req.rawBody ?? req.body;
  if (Buffer.isBuffer(raw)) return raw;
  if (typeof raw === 'string') return Buffer.from(raw);
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (raw === undefined || raw === null) return Buffer.alloc(0);
  return undefined;
}

export { createError };
