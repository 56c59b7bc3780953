/**
 * A paid request on a Node `ServerResponse` (Express, Fastify, node:http): executes core's
 * response policy without a rule of its own. The receipt goes out with the headers when core
 * says the status keeps the payment; the nonce is settled once, from the handler's outcome: the
 * handler's `end()` of its response (with that response's status), or a throw the framework
 * reports before the response was complete. A client that goes away decides nothing: the
 * handler's later `end()` does (or, if it never ends its response, the nonce stays consumed).
 *
 * Two ways to follow a response, chosen by its prototype, for the same decisions:
 *
 * - An Express response: Express moves every request and response onto its app's prototypes
 *   (`Object.setPrototypeOf`), after which V8 gives each object a map of its own, so every
 *   property added to one copies its whole descriptor array (a few µs each: the largest part of
 *   the paywall's cost). Its `writeHead` and `end` are therefore hooked once on the app's
 *   `app.response` (Express's extension point; the outermost app's, which mounted apps inherit)
 *   and a paid response's state lives in a WeakMap: nothing is added to the response.
 * - Any other response (Fastify's `reply.raw`, node:http; an Express one that already has a
 *   `writeHead` or `end` of its own): the state, a `writeHead` and an `end` go on the response
 *   in front of what it had (cheap on a shared map), chained, so other hooks keep working.
 */
import type { ServerResponse } from 'node:http';
import { releases, sendsReceipt } from './policy';
import { RECEIPT_HEADER, RECEIPT_HEADER_LC, receiptOf, storeKeyOf, type PaidFacts, type PaidRoute } from './route';

export interface PaidState {
  /** The native paid facts (see `PaidFacts`). */
  readonly facts: PaidFacts;
  /** The paywall that consumed the proof (releases the nonce); later paywalls of the same
   * server on this request check their price against the payment instead of asking again. */
  readonly route: PaidRoute;
  /** The paywalls whose price the proof was checked against (nothing left to check for them). */
  readonly covered: readonly PaidRoute[];
  /** The nonce's fate is decided (kept or released). */
  settled: boolean;
  released: boolean;
  /** The status the response's headers went out with (0: not yet). */
  status: number;
  /** The response's own `writeHead` and `end` before ours (a response that is not Express's). */
  writeHead: WriteHead | undefined;
  end: End | undefined;
  /** The framework's reply whose header object it hands to `writeHead` (Fastify's), if any. */
  reply: ReplyHeaders | undefined;
  /** That header object itself, when the adapter could name it: the receipt is put in it
   * directly (`reply.header` lower-cases the name first, on every request). */
  headers: Record<string, unknown> | undefined;
}

/**
 * A framework reply that keeps its own header object and passes it to the response's
 * `writeHead` (Fastify's `reply.header`, names lower-cased). The receipt goes into that object:
 * Node then writes it as it is, where one `setHeader` before `writeHead` makes Node merge every
 * header of the object through `setHeader` into a dictionary of its own (a sixth of what the
 * plugin added per request under callgrind).
 */
export interface ReplyHeaders {
  header(name: string, value: string): unknown;
}

type WriteHead = (this: ServerResponse, status: number, reason?: unknown, headers?: unknown) => ServerResponse;
type End = (this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown) => ServerResponse;

// --- responses on an Express app's prototype ------------------------------------------------

/** Paid state of Express responses (their prototype carries the hooks). */
const STATES = new WeakMap<ServerResponse, PaidState>();
/** Prototypes (`app.response` of an outermost Express app) that carry the hooks. */
const HOOKED = new WeakSet<object>();
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/**
 * The outermost Express app prototype (`app.request` / `app.response`) on an object's chain:
 * each app's has an own `app`, and a mounted app's inherits from its parent's, so what is put
 * there is seen by the requests and responses of every app under it. Undefined when the object
 * is not Express's.
 */
export function expressPrototype(o: object): object | undefined {
  let outer: object | undefined;
  for (let p = Object.getPrototypeOf(o) as object | null; p !== null && hasOwn(p, 'app'); p = Object.getPrototypeOf(p) as object | null) outer = p;
  return outer;
}

/** `writeHead` and `end` on an Express app's response prototype, in front of what was there. */
function hook(proto: object): void {
  HOOKED.add(proto);
  const below = Object.getPrototypeOf(proto) as { writeHead: WriteHead; end: End };
  const own = proto as { writeHead?: WriteHead; end?: End };
  const prevWriteHead = hasOwn(proto, 'writeHead') ? own.writeHead : undefined;
  const prevEnd = hasOwn(proto, 'end') ? own.end : undefined;
  own.writeHead = function writeHead(this: ServerResponse, status: number, reason?: unknown, headers?: unknown): ServerResponse {
    const state = STATES.get(this);
    if (state !== undefined) headersGoing(this, state, status);
    // Node reads (status, reason, headers) with undefined for the missing ones.
    return (prevWriteHead ?? below.writeHead).call(this, status, reason, headers);
  };
  own.end = function end(this: ServerResponse, chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
    const r = (prevEnd ?? below.end).call(this, chunk, encoding, callback);
    const state = STATES.get(this);
    if (state !== undefined) ended(this, state);
    return r;
  };
}

/**
 * The header object of a `writeHead(status, reason?, headers?)` call, as Node reads it: the third
 * argument, or the second when that is not a reason phrase. (Passing it back as the third
 * argument, with `undefined` for a second that was not a reason, is read the same way.)
 */
export function headerObjectArg(reason: unknown, headers: unknown): unknown {
  return typeof reason === 'string' ? headers : (headers ?? reason);
}

// --- any other response (own hooks) ---------------------------------------------------------------------

const STATE = Symbol('vlexivo.paid');
type Watched = ServerResponse & { [STATE]?: PaidState };

function ownWriteHead(this: Watched, status: number, reason?: unknown, headers?: unknown): ServerResponse {
  const state = this[STATE] as PaidState;
  const receipt = receiptGoing(this, state, status);
  if (receipt !== undefined) {
    const target = headerObjectArg(reason, headers);
    const own = state.headers;
    if (own !== undefined && target === own) {
      own[RECEIPT_HEADER_LC] = receipt;
    } else {
      state.reply?.header(RECEIPT_HEADER_LC, receipt);
      // Not the reply's own object (a hijacked reply writing its own headers): set it on the response.
      if (state.reply === undefined || !hasReceipt(target, receipt)) this.setHeader(RECEIPT_HEADER, receipt);
    }
  }
  return (state.writeHead as WriteHead).call(this, status, reason, headers);
}

function hasReceipt(headers: unknown, receipt: string): boolean {
  return headers !== null && typeof headers === 'object' && (headers as Record<string, unknown>)[RECEIPT_HEADER_LC] === receipt;
}

function ownEnd(this: Watched, chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
  const state = this[STATE] as PaidState;
  const r = (state.end as End).call(this, chunk, encoding, callback);
  ended(this, state);
  return r;
}

// --- both -----------------------------------------------------------------------------------

/** The paid state of a response, if a paywall consumed a proof for it. */
export function paidStateOf(res: ServerResponse): PaidState | undefined {
  // Followed through its own `writeHead` (ours, see `watch`), or through its prototype.
  return STATES.get(res) ?? (hasOwn(res, 'writeHead') ? (res as Watched)[STATE] : undefined);
}

/**
 * `paidStateOf` for a response that shares Node's `ServerResponse` shape (a framework's raw
 * response, Fastify's): reading STATE (set only by `watch`) is one cached shape check there,
 * where the own-property test costs a descriptor search. (On an Express response, which has a
 * shape of its own, the same read would miss the cache every time: `paidStateOf`.)
 */
export function ownPaidStateOf(res: ServerResponse): PaidState | undefined {
  return (res as Watched)[STATE] ?? STATES.get(res);
}

/**
 * Follow a paid response to its end. `reply`: the framework's reply when it hands its own header
 * object to `writeHead` (Fastify), so the receipt can join it; `headers`: that object, if known.
 */
export function watch(
  res: ServerResponse,
  facts: PaidFacts,
  route: PaidRoute,
  covered: readonly PaidRoute[],
  reply?: ReplyHeaders,
  headers?: Record<string, unknown>,
): PaidState {
  const state: PaidState = { facts, route, covered, settled: false, released: false, status: 0, writeHead: undefined, end: undefined, reply, headers };
  // An Express response through its prototype, unless something already put a `writeHead` or
  // an `end` on the response itself (compression, on-headers): it may have taken the
  // prototype's before the hooks were there, so ours go in front of it. A framework reply's
  // response (Fastify's) is not looked at: own hooks follow any response.
  const proto = reply === undefined ? expressPrototype(res) : undefined;
  if (proto !== undefined && !hasOwn(res, 'writeHead') && !hasOwn(res, 'end')) {
    if (!HOOKED.has(proto)) hook(proto);
    STATES.set(res, state);
    return state;
  }
  state.writeHead = res.writeHead as WriteHead;
  state.end = res.end as End;
  (res as Watched)[STATE] = state;
  res.writeHead = ownWriteHead;
  res.end = ownEnd as ServerResponse['end'];
  return state;
}

/** The headers go out with `status`: the receipt, when core says this status keeps the payment. */
function headersGoing(res: ServerResponse, state: PaidState, status: number): void {
  const receipt = receiptGoing(res, state, status);
  if (receipt !== undefined) res.setHeader(RECEIPT_HEADER, receipt);
}

/** The receipt to send with the headers going out with `status`, if core says this status keeps the payment. */
function receiptGoing(res: ServerResponse, state: PaidState, status: number): string | undefined {
  if (state.status !== 0) return undefined;
  state.status = typeof status === 'number' ? status : res.statusCode;
  return !state.released && sendsReceipt(state.status) ? receiptOf(state.facts) : undefined;
}

/** The handler ended its response (`end()` returned): its last byte is handed to the server. */
function ended(res: ServerResponse, state: PaidState): void {
  if (!state.settled) settle(state, state.status || res.statusCode, false, true);
}

/** The handler threw (the framework's error path): settled now unless its response was complete. */
export function handlerFailed(res: ServerResponse): void {
  const state = paidStateOf(res);
  if (state === undefined || state.settled || res.writableEnded) return;
  settle(state, res.headersSent ? res.statusCode : 0, true, false);
}

/** Give the nonce back at once (a later paywall refused the payment); no receipt goes out. */
export function releaseNow(state: PaidState): void {
  if (state.settled) return;
  state.settled = true;
  state.released = true;
  state.route.release(storeKeyOf(state.facts));
}

function settle(state: PaidState, status: number, raised: boolean, complete: boolean): void {
  state.settled = true;
  if (releases(status, raised, complete)) {
    state.released = true;
    state.route.release(storeKeyOf(state.facts));
  }
}
