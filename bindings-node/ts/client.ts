/**
 * The payer side: `client.fetch()` is `fetch` that meets a 402, pays for exactly that call
 * (within the spending limits, topping the wallet up when told to) and retries once with the
 * same method, headers and body plus the proof of payment.
 */
import native = require('./native');
import type { PaymentReceipt as NativeReceipt, PaymentRequired, PreparedPayment } from '../native/index.js';
import {
  VlexivoConfigError,
  VlexivoError,
  VlexivoFacilitatorError,
  VlexivoRequestError,
  call,
  fromData,
  fromNative,
} from './errors';
import type { PriceValue } from './route';

/** Largest 402 or facilitator body read (as core). */
const MAX_BODY = 64 * 1024;
const PROOF_HEADER = 'Vlexivo-Proof';
const CHALLENGE_HEADER = 'vlexivo-challenge';

export interface AutoTopUpOptions {
  /** Default true when the object is given. */
  enabled?: boolean;
  /** Top up when the balance after a payment would fall below this. */
  triggerBalance: PriceValue;
  /** How much to add each time (more if a single price needs it). */
  topUpAmount: PriceValue;
}

export interface SpendingWindow {
  seconds: number;
  max: PriceValue;
}

/** What `onPayment` receives after each payment. */
export interface PaymentInfo {
  url: string;
  method: string;
  host: string;
  /** The price the challenge asked (canonical decimal). */
  price: string;
  amount: string;
  currency: string;
  txHash: string;
  payer: string;
  /** Wallet balance after this payment. */
  balance: string;
  nonce: string;
  paidAt: number;
  expiresAt: number;
  /** The facilitator had already been paid for this challenge (nothing debited again). */
  replayed: boolean;
  /** Amount topped up before this payment, if any. */
  toppedUp?: string;
}

export interface VlexivoClientOptions {
  /** Wallet private key (64 hex digits); default `process.env.VLX_WALLET_KEY`. */
  walletKey?: string;
  /** The one facilitator to pay through; by default the one each challenge names. */
  facilitatorUrl?: string;
  /** Resolve relative URLs (`client.fetch('/api/v1/analyze')`) against this. */
  baseUrl?: string;
  autoTopUp?: AutoTopUpOptions;
  /** Most one call may cost. */
  maxPerCall?: PriceValue;
  /** Most spent on any one host over the client's lifetime. */
  maxPerHost?: PriceValue;
  /** Most spent over the client's lifetime. */
  maxTotal?: PriceValue;
  /** Most spent within any rolling window. */
  window?: SpendingWindow;
  /** Called after each payment (awaited; its errors are logged, never thrown). */
  onPayment?: (info: PaymentInfo) => void | Promise<void>;
  /** Timeout of facilitator requests in ms (default 15000). */
  facilitatorTimeoutMs?: number;
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

type Body = RequestInit['body'];

interface PreparedBody {
  body: Body;
  replayable: boolean;
  /** Node needs `duplex: 'half'` to send a stream. */
  stream: boolean;
  contentType?: string;
}

function isStream(b: unknown): boolean {
  if (typeof ReadableStream !== 'undefined' && b instanceof ReadableStream) return true;
  return b !== null && typeof b === 'object' && typeof (b as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

/** Make the body sendable twice, or say it cannot be. */
async function prepareBody(body: Body | undefined, url: string, method: string): Promise<PreparedBody> {
  if (body === undefined || body === null) return { body: undefined, replayable: true, stream: false };
  if (typeof body === 'string' || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    return { body, replayable: true, stream: false };
  }
  if (body instanceof URLSearchParams || (typeof Blob !== 'undefined' && body instanceof Blob)) {
    return { body, replayable: true, stream: false };
  }
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    // Serialize once so both sends carry identical bytes (and the same multipart boundary).
    const r = new Request(url, { method: method === 'GET' || method === 'HEAD' ? 'POST' : method, body });
    const bytes = Buffer.from(await r.arrayBuffer());
    return { body: bytes, replayable: true, stream: false, contentType: r.headers.get('content-type') ?? undefined };
  }
  if (isStream(body)) return { body, replayable: false, stream: true };
  // Anything else fetch stringifies, which it can do twice.
  return { body, replayable: true, stream: false };
}

async function readLimited(res: Response, limit = MAX_BODY): Promise<Buffer> {
  const buf = Buffer.from(await res.arrayBuffer());
  return buf.length > limit ? buf.subarray(0, limit + 1) : buf;
}

function message(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

interface UnusedProof {
  token: string;
  amount: string;
  currency: string;
  expiresAt: number;
}

export class VlexivoClient {
  private readonly payer: native.Payer;
  private readonly opts: VlexivoClientOptions;
  private readonly doFetch: typeof fetch;
  private readonly autoTopUp: { trigger: PriceValue; amount: PriceValue } | undefined;
  private topUpQueue: Promise<unknown> = Promise.resolve();
  /** Proofs paid for but not served (the handler failed): reused instead of paying again. */
  private readonly unused = new Map<string, UnusedProof>();

  constructor(options: VlexivoClientOptions = {}) {
    const walletKey = options.walletKey ?? call(() => native.envVar('VLX_WALLET_KEY', process.env as Record<string, string>));
    if (typeof walletKey !== 'string' || walletKey === '') {
      throw new VlexivoConfigError('config_invalid', 'walletKey is required (or set VLX_WALLET_KEY)', { status: 500 });
    }
    if (options.window !== undefined && (typeof options.window !== 'object' || options.window === null)) {
      throw new VlexivoConfigError('config_invalid', 'window must be { seconds, max }', { status: 500 });
    }
    this.payer = call(
      () =>
        new native.Payer({
          walletKey,
          facilitatorUrl: options.facilitatorUrl,
          maxPerCall: options.maxPerCall,
          maxPerHost: options.maxPerHost,
          maxTotal: options.maxTotal,
          windowSeconds: options.window?.seconds,
          windowMax: options.window?.max,
        }),
    );
    const atu = options.autoTopUp;
    if (atu !== undefined && atu !== null && atu.enabled !== false) {
      // Validate now: a bad top-up setting is a startup error.
      call(() => native.autoTopUpAmount('0', '0', atu.triggerBalance, atu.topUpAmount));
      this.autoTopUp = { trigger: atu.triggerBalance, amount: atu.topUpAmount };
    }
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') {
      throw new VlexivoConfigError('config_invalid', 'no fetch available (Node 18+ or options.fetch)', { status: 500 });
    }
    this.doFetch = f;
    this.opts = options;
  }

  /** The wallet's address (EIP-55). */
  get address(): string {
    return this.payer.address;
  }

  /** Committed spend so far (canonical decimal). */
  get spent(): string {
    return this.payer.spentTotal;
  }

  /** Spend reserved by payments in flight. */
  get reserved(): string {
    return this.payer.reservedTotal;
  }

  private resolveUrl(input: string | URL): string {
    const s = input instanceof URL ? input.href : String(input);
    if (/^https?:\/\//i.test(s)) return s;
    if (this.opts.baseUrl === undefined) {
      throw new VlexivoRequestError('request_malformed', `relative URL ${JSON.stringify(s)} needs the client option baseUrl`, { status: 400 });
    }
    return new URL(s, this.opts.baseUrl).href;
  }

  /**
   * `fetch`, paying for 402 responses. Resolves with the paid response (or any non-402 one);
   * rejects with a typed `VlexivoError` when the payment cannot be made.
   */
  async fetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    let url: string;
    let method: string;
    let headers: Headers;
    let rawBody: Body | undefined;
    if (typeof Request !== 'undefined' && input instanceof Request) {
      url = input.url;
      method = (init.method ?? input.method).toUpperCase();
      headers = new Headers(init.headers ?? input.headers);
      rawBody = init.body !== undefined ? init.body : input.body === null ? undefined : Buffer.from(await input.arrayBuffer());
    } else {
      url = this.resolveUrl(input as string | URL);
      method = (init.method ?? 'GET').toUpperCase();
      headers = new Headers(init.headers);
      rawBody = init.body;
    }
    const prepared = await prepareBody(rawBody, url, method);
    if (prepared.contentType !== undefined && !headers.has('content-type')) headers.set('content-type', prepared.contentType);
    const send = (h: Headers): Promise<Response> => {
      const req: RequestInit & { duplex?: 'half' } = { ...init, method, headers: h, body: prepared.body };
      if (prepared.stream) req.duplex = 'half';
      return this.doFetch(url, req);
    };

    const first = await send(headers);
    if (first.status !== 402) return first;

    const body402 = await readLimited(first);
    let pr: PaymentRequired;
    try {
      const challenge = first.headers.get(CHALLENGE_HEADER);
      pr = this.payer.parsePaymentRequired(402, challenge === null ? {} : { [CHALLENGE_HEADER]: challenge }, body402);
    } catch (e) {
      const err = fromNative(e);
      if (err instanceof VlexivoError && err.code === 'not_payment_required') {
        // Someone else's 402: hand it back untouched.
        return new Response(body402, { status: first.status, statusText: first.statusText, headers: first.headers });
      }
      throw err;
    }
    if (!prepared.replayable) {
      throw new VlexivoRequestError(
        'body_not_replayable',
        `${method} ${url} costs ${pr.price} ${pr.currency}, but its body is a one-shot stream that cannot be sent again after paying; pass a string, Buffer, typed array, Blob, URLSearchParams or FormData`,
        { status: 400, details: { price: pr.price, currency: pr.currency } },
      );
    }

    const key = `${method} ${url.split(/[?#]/)[0]}`;
    let token = this.takeUnused(key, pr);
    if (token === undefined) token = (await this.pay(pr, method, url)).token;

    const retryHeaders = new Headers(headers);
    retryHeaders.set(PROOF_HEADER, token);
    const second = await send(retryHeaders);
    if (second.status >= 500) {
      // The provider released the nonce: keep the proof for the next call to this resource.
      this.unused.set(key, { token, amount: pr.price, currency: pr.currency, expiresAt: this.tokenExpiry(token) });
    }
    return second;
  }

  private tokenExpiry(token: string): number {
    try {
      const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: number };
      return typeof claims.exp === 'number' ? claims.exp : 0;
    } catch {
      return 0;
    }
  }

  private takeUnused(key: string, pr: PaymentRequired): string | undefined {
    const u = this.unused.get(key);
    if (u === undefined) return undefined;
    this.unused.delete(key);
    const now = native.nowSeconds();
    if (u.expiresAt <= now + 5 || u.amount !== pr.price || u.currency !== pr.currency) return undefined;
    return u.token;
  }

  /** Pay for one decoded challenge: top up if needed, reserve budget, sign, POST, finish. */
  private async pay(pr: PaymentRequired, method: string, url: string, retried = false): Promise<NativeReceipt> {
    const facilitator = this.payer.facilitatorFor(pr);
    let toppedUp: string | undefined;
    if (this.autoTopUp !== undefined) toppedUp = await this.ensureFunds(facilitator, pr.price, retried);

    const prepared: PreparedPayment = call(() => this.payer.prepare(pr, method, url, native.nowSeconds()));
    let status: number;
    let body: Buffer;
    try {
      const res = await this.doFetch(prepared.payUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: prepared.body,
        signal: AbortSignal.timeout(this.opts.facilitatorTimeoutMs ?? 15000),
      });
      status = res.status;
      body = await readLimited(res);
    } catch (e) {
      this.payer.abandon(prepared);
      throw new VlexivoFacilitatorError('facilitator_unavailable', `facilitator unavailable: ${message(e)}`, {
        status: 503,
        details: { reason: message(e), facilitator },
        cause: e,
      });
    }
    let receipt: NativeReceipt;
    try {
      receipt = this.payer.finish(prepared, status, body);
    } catch (e) {
      const err = fromNative(e);
      if (!retried && this.autoTopUp !== undefined && err instanceof VlexivoError && err.code === 'insufficient_funds') {
        // Concurrent payments drained the wallet between the balance check and this payment.
        return this.pay(pr, method, url, true);
      }
      throw err;
    }
    const hook = this.opts.onPayment;
    if (hook !== undefined) {
      const info: PaymentInfo = {
        url,
        method,
        host: prepared.host,
        price: pr.price,
        amount: receipt.amount,
        currency: receipt.currency,
        txHash: receipt.txHash,
        payer: receipt.payer,
        balance: receipt.balance,
        nonce: receipt.nonce,
        paidAt: receipt.paidAt,
        expiresAt: receipt.expiresAt,
        replayed: receipt.replayed,
        ...(toppedUp !== undefined ? { toppedUp } : {}),
      };
      try {
        await hook(info);
      } catch (e) {
        console.warn(`[vlexivo] onPayment hook failed: ${message(e)}`);
      }
    }
    return receipt;
  }

  /** Serialized so concurrent calls see each other's top-ups instead of all topping up. */
  private ensureFunds(facilitator: string, price: string, force: boolean): Promise<string | undefined> {
    const atu = this.autoTopUp!;
    const run = async (): Promise<string | undefined> => {
      const balance = await this.balanceAt(facilitator);
      let amount = call(() => native.autoTopUpAmount(balance, price, atu.trigger, atu.amount));
      if (amount === null && force) amount = call(() => native.parseMoney(atu.amount, 'usd'));
      if (amount === null) return undefined;
      await this.topUpAt(facilitator, amount);
      return amount;
    };
    const next = this.topUpQueue.then(run, run);
    this.topUpQueue = next.catch(() => undefined);
    return next;
  }

  private async facilitatorCall(url: string, init: RequestInit): Promise<Buffer> {
    let res: Response;
    let body: Buffer;
    try {
      res = await this.doFetch(url, { ...init, signal: AbortSignal.timeout(this.opts.facilitatorTimeoutMs ?? 15000) });
      body = await readLimited(res);
    } catch (e) {
      throw new VlexivoFacilitatorError('facilitator_unavailable', `facilitator unavailable: ${message(e)}`, {
        status: 503,
        details: { reason: message(e) },
        cause: e,
      });
    }
    if (res.status < 200 || res.status >= 300) throw fromData(native.errorFromBody(res.status, body));
    return body;
  }

  private facilitatorBase(facilitator?: string): string {
    const f = facilitator ?? this.opts.facilitatorUrl ?? call(() => native.envVar('VLX_FACILITATOR_URL', process.env as Record<string, string>)) ?? undefined;
    if (f === undefined || f === '') {
      throw new VlexivoConfigError('config_invalid', 'no facilitator known yet: set facilitatorUrl', { status: 500 });
    }
    return f.replace(/\/+$/, '');
  }

  private async balanceAt(facilitator: string): Promise<string> {
    const body = await this.facilitatorCall(`${facilitator}/v1/wallets/${this.address}`, { method: 'GET' });
    const b = JSON.parse(body.toString('utf8')) as { balance?: unknown };
    if (typeof b.balance !== 'string' && typeof b.balance !== 'number') {
      throw new VlexivoFacilitatorError('facilitator_error', 'wallet answer has no balance', { status: 502 });
    }
    return String(b.balance);
  }

  private async topUpAt(facilitator: string, amount: string): Promise<void> {
    await this.facilitatorCall(`${facilitator}/v1/wallets/${this.address}/topup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount }),
    });
  }

  /** The wallet's balance at the facilitator (sandbox ledger). */
  balance(facilitatorUrl?: string): Promise<string> {
    return this.balanceAt(this.facilitatorBase(facilitatorUrl));
  }

  /** Add funds (sandbox faucet). Returns the new balance. */
  async topUp(amount: PriceValue, facilitatorUrl?: string): Promise<string> {
    const canonical = call(() => native.parseMoney(amount, 'usd'));
    const f = this.facilitatorBase(facilitatorUrl);
    await this.topUpAt(f, canonical);
    return this.balanceAt(f);
  }
}
