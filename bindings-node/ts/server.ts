/**
 * The provider side: `new VlexivoServer({ apiSecret })`, then `vlx.paywall({ price })` in front
 * of any Express route (Fastify and Hapi plugins live in `vlexivo/fastify` and `vlexivo/hapi`).
 */
import native = require('./native');
import type { PaymentFacts } from '../native/index.js';
import { VlexivoConfigError, call, fromNative, type VlexivoError, type VlexivoErrorCode } from './errors';
import { expressErrorHandler, expressPaywall, type PaywallErrorMiddleware, type PaywallMiddleware } from './express';
import { PaidRoute, type PaywallOptions, type PriceValue, type Rejection, type VlexivoLogger, type VlexivoPayment } from './route';

export type NonceStoreOption =
  | 'memory'
  | { type: 'memory'; capacity?: number }
  | { type: 'sqlite'; path: string };

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
  /** Nonce store: in-process memory (default) or a SQLite file. */
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

  constructor(options: VlexivoServerOptions = {}) {
    const apiSecret = options.apiSecret ?? call(() => native.envVar('VLX_SECRET_KEY', process.env as Record<string, string>));
    if (typeof apiSecret !== 'string' || apiSecret === '') {
      throw new VlexivoConfigError('config_invalid', 'apiSecret is required (or set VLX_SECRET_KEY)', { status: 500 });
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new VlexivoConfigError('config_invalid', 'clock must be a function returning unix seconds', { status: 500 });
    }
    const store = options.store ?? 'memory';
    const storeOpts =
      store === 'memory'
        ? { store: 'memory' }
        : store.type === 'memory'
          ? { store: 'memory', storeCapacity: store.capacity }
          : { store: store.type, storePath: (store as { path?: string }).path };
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

  /** A paid route's settings, for adapters of other frameworks. */
  route<Req = any>(options: PaywallOptions<Req>): PaidRoute<Req> {
    return new PaidRoute<Req>(
      { paywall: this.native, clock: this.clock, logger: this.logger, exposeHeaders: this.exposeHeaders },
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
    return call<PaymentFacts>(() =>
      this.native.verify(proof, target.method, target.path, target.host, target.secure, price, target.currency ?? 'usd', this.clock?.(), target.body),
    );
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
