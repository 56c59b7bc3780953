/**
 * The payer side: `client.fetch()` is `fetch` that meets a 402, pays for exactly that call
 * (within the spending limits, topping the wallet up when told to) and retries once with the
 * same method, headers and body plus the proof of payment.
 *
 * Every decision is the native core's payer flow (`native.PayerCall`): this file only performs
 * the HTTP each step asks for and feeds back what came of it.
 */
import native = require('./native');
import type { FacilitatorRequest, PayerCall, PayerStep, PaymentEvent } from '../native/index.js';
import { VlexivoConfigError, VlexivoError, VlexivoFacilitatorError, VlexivoRequestError, call, fromNative } from './errors';
import type { PriceValue } from './route';

export interface AutoTopUpOptions {
  /** Default true when the object is given. */
  enabled?: boolean;
  /** Top up when the balance after a payment would fall below this. */
  triggerBalance: PriceValue;
  /** How much to add each time (more if a single price needs it; never more than the spending limits could still spend). */
  topUpAmount: PriceValue;
  /** Most auto top-up may add over the client's lifetime; a top-up past it is refused
   * (`top_up_refused`) unless the balance still covers the price. */
  maxTotal?: PriceValue;
  /**
   * Live mode: the funding wallet's key (64 hex digits; default `process.env.VLX_FUNDING_KEY`).
   * A live top-up is an on-chain transfer of the token from this wallet to the payer's, which it
   * signs and pays gas for; the payment waits until it is mined. Without it, top-ups ask the
   * facilitator's (sandbox) faucet.
   */
  fundingWalletKey?: string;
  /** Live mode: the chain's JSON-RPC URL the funding transfer goes through (default
   * `process.env.VLX_RPC_URL`). */
  rpcUrl?: string;
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
  /** A payment an earlier call left in doubt, found paid when sent again. */
  reconciled: boolean;
  /** Amount topped up before this payment, if any. */
  toppedUp?: string;
}

export interface VlexivoClientOptions {
  /** Wallet private key (64 hex digits); default `process.env.VLX_WALLET_KEY`. */
  walletKey?: string;
  /**
   * The facilitator to pay through. Challenges naming a facilitator the client does not trust
   * are refused (`facilitator_untrusted`) before anything is signed. Trusted: this one and
   * `facilitators`; with neither, `VLX_FACILITATOR_URL` (or its older name
   * `VLEXIVO_FACILITATOR_URL`), else the default
   * local facilitator (http://127.0.0.1:4020).
   */
  facilitatorUrl?: string;
  /** More trusted facilitators. */
  facilitators?: string[];
  /** Resolve relative URLs (`client.fetch('/api/v1/analyze')`) against this. */
  baseUrl?: string;
  autoTopUp?: AutoTopUpOptions;
  /** Most one call may cost. */
  maxPerCall?: PriceValue;
  /** Most spent on any one host over the client's lifetime. */
  maxPerHost?: PriceValue;
  /** Most spent over the client's lifetime (payments in doubt count until settled). */
  maxTotal?: PriceValue;
  /** Most spent within any rolling window. */
  window?: SpendingWindow;
  /** Called after each payment (awaited; its errors are logged, never thrown). */
  onPayment?: (info: PaymentInfo) => void | Promise<void>;
  /** Timeout of facilitator requests in ms (default 15000). */
  facilitatorTimeoutMs?: number;
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /**
   * Send the wallet's address on the unpaid request (`Vlexivo-Payer`), so an API that prices
   * by payer (usage-based discounts) quotes this wallet's price. Default true; false for
   * privacy (the API then learns the payer only from a paid request's proof).
   */
  payerHint?: boolean;
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

/** Read a body, stopping at `limit` bytes: more is an error (the stream is cancelled). */
export async function readLimited(res: Response, limit: number): Promise<Buffer> {
  const out = await readUpTo(res.body, limit);
  if (out.length > limit) throw new Error(`answer larger than ${limit} bytes`);
  return out;
}

/** At most `limit + 1` bytes of a stream; the stream is cancelled once that is reached. */
async function readUpTo(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  const reader = body.getReader();
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    while (size <= limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      size += value.byteLength;
    }
  } finally {
    // Not awaited: cancelling one branch of a tee settles only once the other is done too.
    if (size > limit) reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
  const all = Buffer.concat(chunks, size);
  return all.length > limit + 1 ? all.subarray(0, limit + 1) : all;
}

/**
 * The start of a response's body for the flow (at most `limit + 1` bytes), and a response to
 * hand the caller instead, whose body is still the whole of it.
 */
async function readPrefix(res: Response, limit: number): Promise<{ bytes: Buffer; response: Response }> {
  if (res.body === null) return { bytes: Buffer.alloc(0), response: res };
  const [mine, theirs] = res.body.tee();
  const bytes = await readUpTo(mine, limit);
  const response = new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  return { bytes, response };
}

function headersOf(res: Response): Record<string, string> {
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

function message(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

/** Failures that happen before a request leaves (nothing can have been charged). */
const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function neverSent(e: unknown): boolean {
  const code = (e as { cause?: { code?: unknown } })?.cause?.code;
  return typeof code === 'string' && CONNECT_CODES.has(code);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The API side of a paid call on one HTTP stack: send the request (with the flow's extra
 * headers), read a response's status, headers and final URL, the first bytes of its body.
 * @internal
 */
export interface PayTransport<R> {
  send(url: string, headers: Record<string, string>): Promise<R>;
  status(r: R): number;
  headers(r: R): Record<string, string>;
  url(r: R): string | null;
  /** At most `limit + 1` bytes of the body, and the response to hand the caller instead. */
  prefix(r: R, limit: number): Promise<{ bytes: Buffer; response: R }>;
  /** A response the flow answered and nobody will read. */
  discard?(r: R): void;
}

export class VlexivoClient {
  private readonly payer: native.Payer;
  private readonly opts: VlexivoClientOptions;
  private readonly doFetch: typeof fetch;

  constructor(options: VlexivoClientOptions = {}) {
    const env = process.env as Record<string, string>;
    const walletKey = options.walletKey ?? call(() => native.envVar('VLX_WALLET_KEY', env)) ?? undefined;
    if (typeof walletKey !== 'string' || walletKey === '') {
      throw new VlexivoConfigError('config_invalid', 'walletKey is required (or set VLX_WALLET_KEY)', { status: 500 });
    }
    if (options.window !== undefined && (typeof options.window !== 'object' || options.window === null)) {
      throw new VlexivoConfigError('config_invalid', 'window must be { seconds, max }', { status: 500 });
    }
    const atu = options.autoTopUp;
    const autoTopUp =
      atu !== undefined && atu !== null && atu.enabled !== false
        ? {
            triggerBalance: atu.triggerBalance,
            topUpAmount: atu.topUpAmount,
            maxTotal: atu.maxTotal,
            fundingKey: atu.fundingWalletKey ?? call(() => native.envVar('VLX_FUNDING_KEY', env)) ?? undefined,
            rpcUrl: atu.rpcUrl ?? call(() => native.envVar('VLX_RPC_URL', env)) ?? undefined,
          }
        : undefined;
    this.payer = call(
      () =>
        new native.Payer({
          walletKey,
          facilitatorUrl: options.facilitatorUrl,
          facilitators: options.facilitators,
          facilitatorEnv: call(() => native.envVar('VLX_FACILITATOR_URL', env)) ?? undefined,
          maxPerCall: options.maxPerCall,
          maxPerHost: options.maxPerHost,
          maxTotal: options.maxTotal,
          windowSeconds: options.window?.seconds,
          windowMax: options.window?.max,
          autoTopUp,
          payerHint: options.payerHint,
        }),
    );
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

  /** The trusted facilitators (wallet operations go to the first). */
  get facilitators(): string[] {
    return this.payer.facilitators;
  }

  /** Committed spend so far (canonical decimal). */
  get spent(): string {
    return this.payer.spentTotal;
  }

  /** Spend reserved by payments in flight or in doubt. */
  get reserved(): string {
    return this.payer.reservedTotal;
  }

  /** Payments whose fate the facilitator has not told yet (counted as spent meanwhile). */
  get inDoubt(): string {
    return this.payer.inDoubtTotal;
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
    const send = (to: string, extra: Record<string, string>): Promise<Response> => {
      const h = new Headers(headers);
      for (const [k, v] of Object.entries(extra)) h.set(k, v);
      const req: RequestInit & { duplex?: 'half' } = { ...init, method, headers: h, body: prepared.body };
      if (prepared.stream) req.duplex = 'half';
      return this.doFetch(to, req);
    };

    return this.pay(method, url, prepared.replayable, {
      send,
      status: (r) => r.status,
      headers: headersOf,
      url: (r) => r.url || null,
      prefix: readPrefix,
      discard: (r) => {
        if (r.body && !r.bodyUsed) r.body.cancel().catch(() => undefined);
      },
    });
  }

  /**
   * One paid call over any HTTP stack (`fetch` above, the axios adapter): core's payer flow
   * asks for each send, body read, facilitator request and wait; `transport` performs the
   * API-side ones. Resolves with the last response; rejects with a typed `VlexivoError` when
   * the payment cannot be made.
   * @internal
   */
  async pay<R>(method: string, url: string, replayable: boolean, transport: PayTransport<R>): Promise<R> {
    const flow = call(() => this.payer.call(method, url, replayable));
    let step: PayerStep = flow.start();
    let last: R | undefined;
    for (;;) {
      switch (step.kind) {
        case 'send': {
          // A 402 we answered: its unread body is no one's.
          if (last !== undefined) transport.discard?.(last);
          try {
            last = await transport.send(step.url!, step.headers ?? {});
          } catch (e) {
            flow.requestFailed();
            throw e;
          }
          const res = last;
          step = this.feed(flow, () => flow.response(transport.status(res), transport.headers(res), null, transport.url(res)), method, url);
          break;
        }
        case 'read_body': {
          const { bytes, response } = await transport.prefix(last!, step.limit!);
          last = response;
          step = this.feed(flow, () => flow.response(transport.status(response), transport.headers(response), bytes, null), method, url);
          break;
        }
        case 'facilitator':
          step = await this.facilitator(flow, step.request!);
          break;
        case 'paid':
          await this.notify(step.event!);
          step = call(() => flow.resume());
          break;
        case 'wait':
          await sleep(step.millis ?? 25);
          step = call(() => flow.resume());
          break;
        case 'return':
          return last!;
        default:
          throw new VlexivoError('internal', `unknown payer step ${step.kind}`, { status: 500 });
      }
    }
  }

  /** Feed the flow an API response; a one-shot body is refused with the price it would cost. */
  private feed(flow: PayerCall, fn: () => PayerStep, method: string, url: string): PayerStep {
    try {
      return fn();
    } catch (e) {
      const err = fromNative(e);
      if (err instanceof VlexivoError && err.code === 'body_not_replayable' && flow.price !== null) {
        throw new VlexivoRequestError(
          'body_not_replayable',
          `${method} ${url} costs ${flow.price} usd, but its body is a one-shot stream that cannot be sent again after paying; pass a string, Buffer, typed array, Blob, URLSearchParams or FormData`,
          { status: 400, details: { price: flow.price, currency: 'usd' } },
        );
      }
      throw err;
    }
  }

  /** One facilitator request: its answer (bounded), or how it failed, goes back to the flow. */
  private async facilitator(flow: PayerCall, req: FacilitatorRequest): Promise<PayerStep> {
    let res: Response;
    try {
      res = await this.facilitatorFetch(req);
    } catch (e) {
      return call(() => flow.transportError(!neverSent(e), message(e)));
    }
    let body: Buffer;
    try {
      body = await readLimited(res, native.MAX_RESPONSE_BODY);
    } catch (e) {
      return call(() => flow.transportError(true, message(e)));
    }
    return call(() => flow.answer(res.status, body));
  }

  private facilitatorFetch(req: FacilitatorRequest): Promise<Response> {
    return this.doFetch(req.url, {
      method: req.method,
      headers: req.body == null ? undefined : { 'content-type': 'application/json' },
      body: req.body ?? undefined,
      // A signed payment is for this facilitator only.
      redirect: 'manual',
      signal: AbortSignal.timeout(this.opts.facilitatorTimeoutMs ?? 15000),
    });
  }

  private async notify(e: PaymentEvent): Promise<void> {
    const hook = this.opts.onPayment;
    if (hook === undefined) return;
    const r = e.receipt;
    const info: PaymentInfo = {
      url: e.url,
      method: e.method,
      host: e.host,
      price: e.price,
      amount: r.amount,
      currency: r.currency,
      txHash: r.txHash,
      payer: r.payer,
      balance: r.balance,
      nonce: r.nonce,
      paidAt: r.paidAt,
      expiresAt: r.expiresAt,
      replayed: r.replayed,
      reconciled: e.reconciled,
      ...(e.toppedUp != null ? { toppedUp: e.toppedUp } : {}),
    };
    try {
      await hook(info);
    } catch (err) {
      console.warn(`[vlexivo] onPayment hook failed: ${message(err)}`);
    }
  }

  /** A wallet operation's answer: status and bounded body, or `facilitator_unavailable`. */
  private async wallet(req: FacilitatorRequest): Promise<{ status: number; body: Buffer }> {
    try {
      const res = await this.facilitatorFetch(req);
      return { status: res.status, body: await readLimited(res, native.MAX_RESPONSE_BODY) };
    } catch (e) {
      throw new VlexivoFacilitatorError('facilitator_unavailable', `facilitator unavailable: ${message(e)}`, {
        status: 503,
        details: { reason: message(e), facilitator: req.facilitator },
        cause: e,
      });
    }
  }

  /** The wallet's balance at a facilitator (default: the first trusted). */
  async balance(facilitatorUrl?: string): Promise<string> {
    const req = call(() => this.payer.balanceRequest(facilitatorUrl));
    const { status, body } = await this.wallet(req);
    return call(() => this.payer.readBalance(req, status, body));
  }

  /** Add funds (sandbox faucet). Returns the new balance. */
  async topUp(amount: PriceValue, facilitatorUrl?: string): Promise<string> {
    const req = call(() => this.payer.topUpRequest(amount, facilitatorUrl));
    const { status, body } = await this.wallet(req);
    return call(() => this.payer.readTopUp(req, status, body)).balance;
  }
}
