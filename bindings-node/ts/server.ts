/**
 * The provider side: `new VlexivoServer({ apiSecret })`, then `vlx.paywall({ price })` in front
 * of any Express route (Fastify and Hapi plugins live in `vlexivo/fastify` and `vlexivo/hapi`).
 */
import native = require('./native');
import { VlexivoConfigError, call, fromNative, type VlexivoError, type VlexivoErrorCode } from './errors';
import { expressErrorHandler, expressPaywall, type PaywallErrorMiddleware, type PaywallMiddleware } from './express';
import { PaidRoute, checkKeys, isPaid, pick, isThenable, paymentOf, type Decision, type PaidFacts, type PaywallOptions, type PriceValue, type Rejection, type VlexivoLogger, type VlexivoPayer, type VlexivoPayment } from './route';
import { UsageCache, type Usage, type UsageOptions } from './usage';
import { errorFromBody } from './wallet';

/**
 * A nonce store by URL (core's grammar, the same in every binding): `'memory'` (this process),
 * `'sqlite:///path/to/nonces.db'` (this machine), `'redis://host:6379'`,
 * `'redis+cluster://h1:p1,h2:p2'` or `'postgres://user@host/db'` (every instance that points at
 * it). Options may also ride in the query string (`redis://h?prefix=api1:`).
 */
export type NonceStoreUrl = string;

/**
 * Options of a nonce store: core's option names in camelCase (`pool_size` is `poolSize`; the
 * names come from core at run time, so every option core adds is taken here).
 */
export interface NonceStoreOptions {
  /** Key prefix (networked stores; default `vlexivo:nonce:` on Redis): one per provider sharing a store. */
  prefix?: string;
  /** Connections (networked stores; default 4). */
  poolSize?: number;
  /** Longest wait for one store operation before the request fails closed with 503 (default 1000). */
  timeoutMs?: number;
  /** Longest wait to connect (default 2000); the server must answer at construction. */
  connectTimeoutMs?: number;
  /** Live entries the memory store holds at most (default 1,000,000). */
  capacity?: number;
  /**
   * The memory store's page-making thread (`vlexivo-store-pages`), which writes the store's
   * memory before consumes need it (default true). `false` starts no thread for the store: its
   * consumes touch new memory themselves, and an idle default store is about 30 MB smaller.
   */
  pagesThread?: boolean;
}

/** The older spelling of `nonceStore` (still read): `'memory'`, `{ type: 'memory', capacity }`, `{ type: 'sqlite', path }`, or a store URL. */
export type NonceStoreOption = NonceStoreUrl | { type: 'memory'; capacity?: number } | { type: 'sqlite'; path: string };

/** `nonceStoreOptions` keys (camelCase) to core's option names (snake_case), from core's list. */
const STORE_OPTION_NAMES: Readonly<Record<string, string>> = Object.fromEntries(
  native.storeOptionNames().map((name) => [name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), name]),
);

export interface VlexivoServerOptions {
  /** `sk_test_…` (sandbox) or `sk_live_…`; default `process.env.VLX_SECRET_KEY`. */
  apiSecret?: string;
  /** Must agree with the secret's prefix when given. */
  mode?: 'sandbox' | 'live';
  /** Facilitator base URL put in challenges; default `VLX_FACILITATOR_URL`, else core's default. */
  facilitatorUrl?: string;
  /** "sandbox" or CAIP-2 "eip155:<chainId>" (live). */
  network?: string;
  /** Challenge lifetime in seconds (default 300). */
  challengeTtl?: number;
  /** Clock-skew leeway on token times in seconds (default 30). */
  leeway?: number;
  /** Bind challenges and tokens to the request body's SHA-256 (needs the raw body). */
  bindBody?: boolean;
  /**
   * Where consumed nonces are kept, by URL (default `'memory'`: this process only). Several
   * instances of an API behind a load balancer must share one: `'redis://…'`,
   * `'redis+cluster://…'` or `'postgres://…'`. An unknown scheme or option, or a server that
   * does not answer, is `config_invalid` here; a store that goes down later fails paid requests
   * closed (503 `nonce_store_unavailable`, the handler does not run).
   */
  nonceStore?: NonceStoreUrl;
  /** Options of `nonceStore` (also accepted in its query string, with core's snake_case names). */
  nonceStoreOptions?: NonceStoreOptions;
  /** @deprecated use `nonceStore` (a URL) and `nonceStoreOptions`. */
  store?: NonceStoreOption;
  /** The facilitator's JWKS, to also accept its EdDSA proof tokens. */
  jwks?: string | object;
  /** Unix seconds; inject for tests. Default: the system clock. */
  clock?: () => number;
  /** Where provider-side faults (bad price, store down) are logged. Default: console. */
  logger?: VlexivoLogger;
  /** Add Vlexivo headers to `Access-Control-Expose-Headers` (default true). */
  exposeHeaders?: boolean;
  /**
   * The origin clients call this API at (`'https://api.example.com'`), bound into every
   * challenge and proof. Default: each request's own scheme and `Host` header, which is wrong
   * behind a proxy that terminates TLS or rewrites `Host`, and lets a relaying site name itself
   * on a server that answers any `Host`: configure it in production.
   */
  origin?: string;
  /**
   * How long (ms) `usage()` answers are reused (default 2000; 0: ask the facilitator every
   * time). A payment this server accepts drops its payer's answers at once, so the staleness
   * bound applies only to payments made through other instances.
   */
  usageCacheMs?: number;
}

/** Every option key `new VlexivoServer()` reads; any other is `config_invalid`. */
export const SERVER_KEYS: readonly string[] = [
  'apiSecret', 'mode', 'facilitatorUrl', 'network', 'challengeTtl', 'leeway', 'bindBody', 'nonceStore',
  'nonceStoreOptions', 'store', 'jwks', 'clock', 'logger', 'exposeHeaders', 'origin', 'usageCacheMs',
];

const configError = (message: string): VlexivoConfigError => new VlexivoConfigError('config_invalid', message, { status: 500 });

/** The store URL and core's options from the server's options (core checks both). */
function storeOf(options: VlexivoServerOptions): { nonceStore: string; nonceStoreOptions: Record<string, string> } {
  const opts: Record<string, string> = {};
  let url: unknown = options.nonceStore;
  if (options.store !== undefined) {
    if (url !== undefined) throw configError('give nonceStore or store (its older name), not both');
    const old = options.store as unknown;
    if (typeof old === 'string') url = old;
    else if (old !== null && typeof old === 'object' && (old as { type?: unknown }).type === 'memory') {
      checkKeys(old, ['type', 'capacity'], 'store');
      url = 'memory';
      const c = (old as { capacity?: unknown }).capacity;
      if (c !== undefined) opts.capacity = String(c);
    } else if (old !== null && typeof old === 'object' && (old as { type?: unknown }).type === 'sqlite') {
      checkKeys(old, ['type', 'path'], 'store');
      const path = (old as { path?: unknown }).path;
      if (typeof path !== 'string' || path === '') throw configError('store { type: "sqlite" } needs a path');
      url = 'sqlite://' + path.replace(/%/g, '%25').replace(/\?/g, '%3F');
    } else {
      throw configError('store must be a store URL, { type: "memory" } or { type: "sqlite", path }');
    }
  }
  if (url === undefined) url = 'memory';
  if (typeof url !== 'string') throw configError('nonceStore must be a store URL string (memory, sqlite://, redis://, redis+cluster://, postgres://)');
  const given = options.nonceStoreOptions as unknown;
  if (given !== undefined) {
    if (given === null || typeof given !== 'object') throw configError('nonceStoreOptions must be an object');
    checkKeys(given, Object.keys(STORE_OPTION_NAMES), 'nonceStoreOptions');
    for (const [k, v] of Object.entries(given as Record<string, unknown>)) {
      if (v === undefined) continue;
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        throw configError(`nonceStoreOptions.${k} must be a string, a number or a boolean`);
      }
      opts[STORE_OPTION_NAMES[k]] = String(v);
    }
  }
  return { nonceStore: url, nonceStoreOptions: opts };
}

export interface RequestTarget {
  method: string;
  /** Path, with or without the query string. */
  path: string;
  /** The request's `Host` header (used when the server has no configured `origin`). */
  host?: string;
  /** The request came over TLS (used with `host`). */
  secure?: boolean;
  price?: PriceValue;
  currency?: string;
  scope?: string;
  body?: Buffer;
}

export class VlexivoServer {
  /** @internal */
  readonly native: native.Paywall;
  readonly clock: (() => number) | undefined;
  readonly logger: VlexivoLogger;
  readonly exposeHeaders: boolean;
  readonly #usage: UsageCache;

  constructor(options: VlexivoServerOptions = {}) {
    if (options === null || typeof options !== 'object') throw configError('VlexivoServer options must be an object');
    checkKeys(options, SERVER_KEYS, 'VlexivoServer');
    const apiSecret = options.apiSecret ?? call(() => native.envVar('VLX_SECRET_KEY', process.env as Record<string, string>));
    if (typeof apiSecret !== 'string' || apiSecret === '') {
      throw new VlexivoConfigError('config_invalid', 'apiSecret is required (or set VLX_SECRET_KEY)', { status: 500 });
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new VlexivoConfigError('config_invalid', 'clock must be a function returning unix seconds', { status: 500 });
    }
    const storeOpts = storeOf(options);
    this.native = call(
      () =>
        new native.Paywall({
          apiSecret,
          mode: options.mode,
          facilitatorUrl: options.facilitatorUrl ?? native.envVar('VLX_FACILITATOR_URL', process.env as Record<string, string>) ?? undefined,
          network: options.network,
          challengeTtl: options.challengeTtl,
          leeway: options.leeway,
          bindBody: options.bindBody,
          origin: options.origin,
          jwks: options.jwks === undefined || typeof options.jwks === 'string' ? options.jwks : JSON.stringify(options.jwks),
          ...storeOpts,
        }),
    );
    this.clock = options.clock;
    this.logger = options.logger ?? console;
    this.exposeHeaders = options.exposeHeaders ?? true;
    this.#usage = new UsageCache(this.native.facilitatorUrl, apiSecret, options.usageCacheMs);
  }

  /**
   * How many payments (and how much) `payer` made to this provider since `since` (a `Date` or
   * unix seconds; default: ever), as the facilitator's ledger records them — what usage-based
   * prices are made of:
   *
   *     priceResolver: async (req, payer) => {
   *       if (payer === null) return '0.001';
   *       const { count } = await vlx.usage(payer, { since: startOfMonth() });
   *       return count >= 10 ? '0.0005' : '0.001';
   *     }
   *
   * Answers are reused for `usageCacheMs` (2 s by default; a payment this server accepts drops
   * its payer's answers at once), so a resolver may call it on every request. Rejects with the
   * facilitator's typed error (`facilitator_unavailable` when it cannot be reached).
   */
  usage(payer: string | VlexivoPayer, options: UsageOptions = {}): Promise<Usage> {
    return this.#usage.get(typeof payer === 'string' ? payer : payer.address, options);
  }

  /** The provider account id (`acct_…`). */
  get account(): string {
    return this.native.account;
  }

  get mode(): 'sandbox' | 'live' {
    return this.native.mode as 'sandbox' | 'live';
  }

  get facilitatorUrl(): string {
    return this.native.facilitatorUrl;
  }

  /** The configured origin, or null when each request's own is bound. */
  get origin(): string | null {
    return this.native.origin ?? null;
  }

  /** The nonce store's kind: `memory`, `sqlite`, `redis` or `postgres`. */
  get nonceStore(): string {
    return this.native.storeKind;
  }

  /**
   * Nonce-store operations that failed on the store's side (unreachable, timed out, full)
   * since this server was built; each failed request also logs a `nonce_store_unavailable`
   * (or `nonce_store_full`) line. Export it to your metrics.
   */
  get storeFailures(): number {
    return this.native.storeFailures;
  }

  /** A paid route's settings, for adapters of other frameworks. */
  route<Req = any>(options: PaywallOptions<Req>): PaidRoute<Req> {
    return new PaidRoute<Req>(
      { paywall: this.native, clock: this.clock, logger: this.logger, exposeHeaders: this.exposeHeaders, paid: this.#usage },
      options,
    );
  }

  /**
   * Express middleware (Express 4 and 5): answers 402 with a challenge until the request
   * carries a valid, unused proof of payment for its price (the effective price of every
   * paywall of this server on its way); then sets `req.vlxPayment`, sends `Vlexivo-Receipt`
   * with a response that keeps the payment, and releases the nonce if the handler fails.
   */
  paywall<Req = any>(options: PaywallOptions<Req>): PaywallMiddleware {
    return expressPaywall(this.route(options));
  }

  /**
   * Express error middleware, after your routes: a paid handler that threw before its response
   * was complete has failed, so its nonce is released and the same proof may be used again.
   */
  errorHandler(): PaywallErrorMiddleware {
    return expressErrorHandler();
  }

  /** The clock the paywall uses (unix seconds). */
  now(): number {
    return this.clock ? this.clock() : native.nowSeconds();
  }

  /**
   * Verify a proof for a request and consume its nonce. Throws a typed `VlexivoError` when the
   * proof does not buy the request (`payment_required`, `token_underpaid`, `token_replayed`, …).
   */
  verify(proof: string | undefined | null, target: RequestTarget): VlexivoPayment {
    const price = target.price;
    if (price === undefined) {
      throw new VlexivoConfigError('config_invalid', 'verify needs a price', { status: 500 });
    }
    if (this.native.storeBlocks) {
      // It would hold the event loop for a network round trip (or a timeout).
      throw configError(`verify cannot wait on a ${this.nonceStore} store: use verifyAsync`);
    }
    // The same compact result as the adapters' path: one string crosses the boundary, and the
    // object is made here (cheaper than setting ten properties from native code).
    return paymentOf(
      call<PaidFacts>(() =>
        this.native.verify(proof, target.method, target.path, target.host, target.secure, price, target.currency ?? 'usd', this.clock?.(), target.body),
      ),
    );
  }

  /**
   * `verify` for any store, without blocking the event loop on a networked one: resolves with
   * the payment or rejects with the typed error (`nonce_store_unavailable` when the store does
   * not answer within its timeout).
   */
  async verifyAsync(proof: string | undefined | null, target: RequestTarget): Promise<VlexivoPayment> {
    const price = target.price;
    if (price === undefined) {
      throw new VlexivoConfigError('config_invalid', 'verifyAsync needs a price', { status: 500 });
    }
    const run = (): Decision | Promise<Decision> =>
      this.native.storeBlocks
        ? this.native.authorizeAsync(proof, target.method, target.path, target.host, target.secure, price, target.currency ?? 'usd', target.scope ?? 'per-call', this.clock?.(), target.body)
        : this.native.authorize(proof, target.method, target.path, target.host, target.secure, price, target.currency ?? 'usd', target.scope ?? 'per-call', this.clock?.(), target.body);
    let r = call(run);
    if (isThenable(r)) r = await r;
    if (isPaid(r)) return paymentOf(r);
    throw errorFromBody(r.status, r.body);
  }

  /** Forget a consumed nonce so the same proof may be presented again. */
  release(payment: VlexivoPayment | string): void {
    const key = typeof payment === 'string' ? payment : payment.storeKey;
    call(() => this.native.release(key));
  }

  /** A fresh 402 response (status, headers, JSON body) for this request and price. */
  challenge(target: RequestTarget): Rejection {
    const price = target.price;
    if (price === undefined) {
      throw new VlexivoConfigError('config_invalid', 'challenge needs a price', { status: 500 });
    }
    return call(() =>
      this.native.challenge(target.method, target.path, target.host, target.secure, price, target.currency ?? 'usd', target.scope, this.clock?.(), target.body),
    );
  }

  /** The response for a refusal: a code or a caught error; with a price, a fresh challenge. */
  reject(error: VlexivoErrorCode | VlexivoError | { code: string; details?: unknown }, target: RequestTarget): Rejection {
    const e = typeof error === 'string' ? { code: error, details: undefined } : (fromNative(error) as { code: string; details?: unknown });
    return call(() =>
      this.native.reject(e.code, e.details ?? null, target.method, target.path, target.host, target.secure, target.price, target.currency, target.scope, this.clock?.()),
    );
  }

  /** Drop expired nonces from the store; returns how many. */
  purge(): number {
    return call(() => this.native.purge(this.clock?.()));
  }

  /** Parse a price (string or number) exactly; throws `price_invalid`. */
  static parsePrice(value: PriceValue, currency = 'usd'): string {
    return call(() => native.parsePrice(value, currency));
  }

  parsePrice(value: PriceValue, currency = 'usd'): string {
    return VlexivoServer.parsePrice(value, currency);
  }
}

/**
 * The server of a plugin registration (Fastify, Hapi): `options.server` shared between
 * registrations, or one built from the server keys among `options`. Every key must be one the
 * plugin reads (`known`); server keys beside `server` would be ignored, so they are refused.
 */
export function serverOf(options: object, known: readonly string[], what: string): VlexivoServer {
  checkKeys(options, known, what);
  const shared = (options as { server?: unknown }).server;
  const own = pick(options as VlexivoServerOptions, SERVER_KEYS);
  if (shared === undefined) return new VlexivoServer(own);
  if (!(shared instanceof VlexivoServer)) throw configError('server must be a VlexivoServer');
  const extra = Object.keys(own);
  if (extra.length > 0) throw configError(`server is given: its options (${extra.join(', ')}) belong in new VlexivoServer()`);
  return shared;
}


