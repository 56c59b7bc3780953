/**
 * Core's response policy (`vlexivo_core::response_policy`) as the adapters ask it: which
 * requests are free, whether a handler's end releases the nonce, whether a paid response carries
 * the receipt. Each answer is a pure function of a few small inputs, so it is asked of the native
 * core once per distinct input and remembered: the decision stays core's, the hot path makes no
 * native call.
 */
import native = require('./native');

/** Distinct methods remembered (Node's parser knows ~35; anything beyond is asked each time). */
const METHODS_MAX = 64;
const freeWith = new Map<string, boolean>();
const freeWithout = new Map<string, boolean>();

/** Does this request pass unpaid? Only a CORS preflight does (`OPTIONS` + `Access-Control-Request-Method`). */
export function isFreeRequest(method: string, preflightHeader: boolean): boolean {
  const memo = preflightHeader ? freeWith : freeWithout;
  let free = memo.get(method);
  if (free === undefined) {
    free = native.isFreeRequest(method, preflightHeader);
    if (memo.size < METHODS_MAX) memo.set(method, free);
  }
  return free;
}

/** Statuses whose answers are remembered (0: none; anything from 1000 on is asked each time). */
const STATUSES = 1000;
// The memos are typed arrays (0: not asked yet, 1: no, 2: yes): a plain array with a few
// indices up to ~4000 set is kept as a dictionary, and each read hashes its index.
const NOT_ASKED = 0;
const answer = (yes: boolean): number => (yes ? 2 : 1);

/** Release answers by (status, raised, complete); status 0 means no response was started. */
const releaseMemo = new Uint8Array(STATUSES * 4);

/**
 * Does a paid request's end release its nonce? `status`: the response the handler started (0 or
 * undefined: none); `raised`: it threw; `complete`: the response was complete when it ended.
 */
export function releases(status: number | undefined, raised: boolean, complete: boolean): boolean {
  const s = status !== undefined && status > 0 && status < STATUSES ? status : 0;
  const key = s * 4 + (raised ? 2 : 0) + (complete ? 1 : 0);
  let r = releaseMemo[key];
  if (r === NOT_ASKED) r = releaseMemo[key] = answer(native.releases(s === 0 ? null : s, raised, complete));
  return r === 2;
}

const receiptMemo = new Uint8Array(STATUSES);

/** Does a paid response with this status carry `Vlexivo-Receipt`? */
export function sendsReceipt(status: number): boolean {
  const s = status > 0 && status < STATUSES ? status : 0;
  let r = receiptMemo[s];
  if (r === NOT_ASKED) r = receiptMemo[s] = answer(native.sendsReceipt(s));
  return r === 2;
}

/** Core's CORS rule by whether the request carries `Origin`: its two answers, asked once. */
const exposesMemo = [native.exposesHeaders(false), native.exposesHeaders(true)];

/** Do the paywall's answers to this request (its refusals, a paid response's receipt) expose our headers to CORS? */
export function exposesHeaders(originHeader: boolean): boolean {
  return exposesMemo[originHeader ? 1 : 0];
}
