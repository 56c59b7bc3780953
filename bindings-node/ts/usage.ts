/**
 * `vlx.usage(payer, { since })`: what one payer paid this provider since a time, asked of the
 * facilitator (`GET /v1/providers/me/payers/{address}/usage?since=`) and kept for a short
 * while, so a price resolver may ask on every request without a round trip each time.
 *
 * Staleness: an answer is reused for at most `ttlMs`; a payment this server accepts drops its
 * payer's answers at once (the next question goes to the facilitator), so only payments made
 * through other instances of the API can be missing, for at most `ttlMs`. Concurrent questions
 * about the same payer share one request; failures are not kept.
 */
import native = require('./native');
import { VlexivoConfigError, call, createError } from './errors';
import { errorFromBody } from './wallet';
import type { PaidListener } from './route';

/** The facilitator's answer. */
export interface Usage {
  /** EIP-55 address. */
  payer: string;
  /** Unix seconds (inclusive). */
  since: number;
  /** Payments counted. */
  count: number;
  /** Their sum, a canonical decimal ("0.0035"). */
  total: string;
  currency: string;
}

export interface UsageOptions {
  /** Count payments from this time on (a `Date` or unix seconds); default: ever. */
  since?: Date | number;
}

/** Default reuse time of an answer (ms). */
const DEFAULT_TTL_MS = 2000;
/** Answers kept at most (the oldest go first). */
const MAX_ENTRIES = 10_000;
const TIMEOUT_MS = 5000;

interface Entry {
  at: number;
  value: Promise<Usage>;
}

export class UsageCache implements PaidListener {
  readonly #url: string;
  readonly #secret: string;
  readonly #ttl: number;
  readonly #entries = new Map<string, Entry>();
  /** Cache keys by payer, to drop a payer's answers when it pays. */
  readonly #byPayer = new Map<string, Set<string>>();

  constructor(facilitatorUrl: string, apiSecret: string, ttlMs: number = DEFAULT_TTL_MS) {
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs < 0) {
      throw new VlexivoConfigError('config_invalid', 'usageCacheMs must be a number of milliseconds >= 0', { status: 500 });
    }
    this.#url = facilitatorUrl.replace(/\/+$/, '');
    this.#secret = apiSecret;
    this.#ttl = ttlMs;
  }

  /** Someone may be listening: there are answers to drop. */
  get active(): boolean {
    return this.#entries.size > 0;
  }

  /** A payment of `payer` was accepted: its counts changed. */
  paid(payer: string): void {
    const who = payer.toLowerCase();
    const keys = this.#byPayer.get(who);
    if (keys === undefined) return;
    for (const k of keys) this.#entries.delete(k);
    this.#byPayer.delete(who);
  }

  get(payer: string, options: UsageOptions): Promise<Usage> {
    // Keyed by the address in lower case (the same 20 bytes however spelt): a hit costs a map
    // lookup; a miss checks the address (EIP-55 when mixed case) before asking.
    const since = sinceOf(options?.since);
    const who = typeof payer === 'string' ? payer.toLowerCase() : '';
    const key = `${who} ${since}`;
    const now = Date.now();
    const hit = this.#entries.get(key);
    if (hit !== undefined && now - hit.at < this.#ttl) return hit.value;
    let address: string;
    try {
      address = call(() => native.checksumAddress(payer));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    const value = this.#ask(address, since);
    if (this.#ttl > 0) {
      if (this.#entries.size >= MAX_ENTRIES) this.#evictOldest();
      this.#entries.delete(key);
      this.#entries.set(key, { at: now, value });
      let keys = this.#byPayer.get(who);
      if (keys === undefined) this.#byPayer.set(who, (keys = new Set()));
      keys.add(key);
      // A failure is not kept: the next question asks again.
      value.catch(() => {
        if (this.#entries.get(key)?.value === value) this.#forget(who, key);
      });
    }
    return value;
  }

  #forget(who: string, key: string): void {
    this.#entries.delete(key);
    const keys = this.#byPayer.get(who);
    keys?.delete(key);
    if (keys?.size === 0) this.#byPayer.delete(who);
  }

  #evictOldest(): void {
    const first = this.#entries.keys().next();
    if (first.done === true) return;
    this.#forget(first.value.slice(0, first.value.indexOf(' ')), first.value);
  }

  async #ask(address: string, since: string): Promise<Usage> {
    const url = `${this.#url}/v1/providers/me/payers/${address}/usage${since === '' ? '' : `?since=${encodeURIComponent(since)}`}`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { authorization: `Bearer ${this.#secret}` },
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw createError('facilitator_unavailable', `the facilitator could not be reached for usage counts: ${why}`, { status: 503 });
    }
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw errorFromBody(res.status, body);
    const u = JSON.parse(body.toString('utf8')) as Usage;
    return { payer: u.payer, since: u.since, count: u.count, total: u.total, currency: u.currency };
  }
}

/** `since` as the query parameter: unix seconds as given (the facilitator checks them). */
function sinceOf(since: Date | number | undefined): string {
  if (since === undefined) return '';
  if (since instanceof Date) return String(Math.floor(since.getTime() / 1000));
  return String(since);
}
