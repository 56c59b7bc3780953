/**
 * A paid request on a Node `ServerResponse` (Express, Fastify): executes core's response policy
 * without a rule of its own. The receipt goes out with the headers when core says the status
 * keeps the payment; the nonce is settled once, from the handler's outcome: the response's end
 * (its status), or a throw the framework reports before the response was complete. A client
 * that goes away decides nothing: the handler's later end does (or, if it never ends its
 * response, the nonce stays consumed).
 *
 * Per paid request: one state object, one `close` listener and one `writeHead` in front of the
 * response's own (chained, so other header hooks keep working); the listener and the hook are
 * shared functions that find the state on the response.
 */
import type { ServerResponse } from 'node:http';
import { releases, sendsReceipt } from './policy';
import { RECEIPT_HEADER, receiptOf, storeKeyOf, type PaidFacts, type PaidRoute } from './route';

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
  /** The response's `writeHead` before ours. */
  writeHead: ServerResponse['writeHead'];
}

const STATE = Symbol('vlexivo.paid');
type Watched = ServerResponse & { [STATE]?: PaidState };

/** The paid state of a response, if a paywall consumed a proof for it. */
export function paidStateOf(res: ServerResponse): PaidState | undefined {
  return (res as Watched)[STATE];
}

/** Follow a paid response to its end. */
export function watch(res: ServerResponse, facts: PaidFacts, route: PaidRoute, covered: readonly PaidRoute[]): PaidState {
  const state: PaidState = { facts, route, covered, settled: false, released: false, writeHead: res.writeHead };
  (res as Watched)[STATE] = state;
  res.writeHead = paidWriteHead;
  res.on('close', onClose);
  return state;
}

function paidWriteHead(this: Watched, status: number, reason?: unknown, headers?: unknown): ServerResponse {
  const state = this[STATE] as PaidState;
  if (!state.released && !this.headersSent && sendsReceipt(typeof status === 'number' ? status : this.statusCode)) {
    this.setHeader(RECEIPT_HEADER, receiptOf(state.facts));
  }
  // Node reads (status, reason, headers) with undefined for the missing ones.
  return (state.writeHead as (s: number, r?: unknown, h?: unknown) => ServerResponse).call(this, status, reason, headers);
}

function onClose(this: Watched): void {
  const state = this[STATE] as PaidState;
  if (state.settled) return;
  if (this.writableEnded) {
    settle(state, this.statusCode, false, true);
    return;
  }
  // Closed before the handler ended its response (the client left, or the socket was cut): the
  // handler's own end decides, whenever it comes.
  // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wrapper below has its own `this`
  const res = this;
  const end = res.end;
  res.end = function endAfterClose(this: Watched, ...args: unknown[]) {
    const r = (end as (...a: unknown[]) => ServerResponse).apply(this, args);
    if (!state.settled) settle(state, this.statusCode, false, true);
    return r;
  } as ServerResponse['end'];
}

/** The handler threw (the framework's error path): settled now unless its response was complete. */
export function handlerFailed(res: ServerResponse): void {
  const state = (res as Watched)[STATE];
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
