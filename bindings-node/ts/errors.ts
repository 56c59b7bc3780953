/**
 * Typed errors. Every failure carries the stable snake_case `code` that core defines (the same
 * in every language and on the wire), the HTTP `status` and the `category` core assigns to it,
 * and the error's fields in `details` (core's keys). The class of an error is its category's
 * (`CATEGORY_CLASSES`), or a subclass of it for the few codes with fields of their own
 * (`CODE_CLASSES` lists every code; the test suite checks both against core's table).
 */
import native = require('./native');

/** Every code core can report (`vlexivo_core::Error::ALL_CODES`). */
export const ALL_CODES = [
  'amount_malformed', 'amount_negative', 'amount_not_finite', 'amount_precision',
  'amount_too_large', 'amount_zero', 'currency_unsupported', 'currency_mismatch',
  'challenge_malformed', 'challenge_too_large', 'challenge_invalid', 'challenge_expired',
  'challenge_mismatch', 'wallet_key_invalid', 'address_invalid', 'signature_invalid',
  'payment_required', 'token_malformed', 'token_too_large', 'token_algorithm', 'token_type',
  'token_invalid', 'token_expired', 'token_not_yet_valid', 'token_audience', 'token_mode',
  'token_resource', 'token_underpaid', 'token_currency', 'token_replayed',
  'nonce_store_full', 'nonce_store_unavailable', 'budget_exceeded', 'insufficient_funds',
  'provider_unknown', 'unauthorized', 'payment_conflict', 'top_up_refused',
  'request_too_large', 'request_malformed', 'facilitator_unavailable', 'facilitator_overloaded',
  'facilitator_untrusted',
  'payment_in_doubt', 'facilitator_error',
  'authorization_invalid', 'authorization_used', 'settlement_failed',
  'transaction_not_found', 'transfer_mismatch', 'confirmations_pending', 'chain_unavailable',
  'funding_insufficient',
  'not_payment_required', 'body_not_replayable', 'price_invalid', 'config_invalid',
  'mode_mismatch', 'internal',
] as const;

export type VlexivoErrorCode = (typeof ALL_CODES)[number];

/** Every category core has (`vlexivo_core::ErrorCategory::ALL`). */
export const ALL_CATEGORIES = [
  'amount', 'challenge', 'wallet', 'proof', 'payment', 'facilitator', 'nonce_store', 'request',
  'config', 'internal',
] as const;

export type VlexivoErrorCategory = (typeof ALL_CATEGORIES)[number];

/** Core's table: the status and category of every code (`docs/protocol.md` §9). */
const TABLE: ReadonlyMap<string, { status: number; category: string }> = new Map(
  native.errorTable().map((r) => [r.code, { status: r.status, category: r.category }]),
);

export interface VlexivoErrorInit {
  /** Defaults to core's status for the code. */
  status?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Base class of every Vlexivo error. */
export class VlexivoError extends Error {
  /** Stable snake_case code from core. */
  readonly code: VlexivoErrorCode;
  /** The HTTP status a server answers with for this error. */
  readonly status: number;
  /** Core's category of the code: also this error's class (`CATEGORY_CLASSES`). */
  readonly category: VlexivoErrorCategory;
  /** The error's fields (amounts, limits, reasons), with core's (camelCase) keys. */
  readonly details: Record<string, unknown>;

  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    const row = TABLE.get(code);
    this.name = new.target.name;
    this.code = code;
    this.status = init.status ?? row?.status ?? 500;
    this.category = (row?.category ?? 'internal') as VlexivoErrorCategory;
    this.details = init.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, status: this.status, ...this.details };
  }
}

/** `amount`: a malformed, negative, over-precise, too large or zero amount; an unknown currency. */
export class VlexivoAmountError extends VlexivoError {}

/** `challenge`: a 402 challenge that is malformed, forged, expired, for another request, or names
 * a facilitator this payer does not trust. */
export class VlexivoChallengeError extends VlexivoError {}

/** `wallet`: a bad wallet key, address or signature. */
export class VlexivoWalletError extends VlexivoError {}

/** `proof`: no proof of payment, or one that does not buy this request. */
export class VlexivoProofError extends VlexivoError {}

/** The proof token was already used (409). */
export class VlexivoReplayError extends VlexivoProofError {}

/** The proof paid less than this request's price, or in another currency. */
export class VlexivoUnderpaidError extends VlexivoProofError {
  readonly paid: string;
  readonly price: string;
  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(code, message, init);
    this.paid = String(this.details.paid ?? '');
    this.price = String(this.details.price ?? '');
  }
}

/** `payment`: the payment was refused (budget, funds, conflict, top-up) or its fate is unknown
 * (`payment_in_doubt`). */
export class VlexivoPaymentError extends VlexivoError {}

/** The wallet cannot cover the price: `requiredAmount` is what the call needs. */
export class VlexivoInsufficientFundsError extends VlexivoPaymentError {
  readonly requiredAmount: string;
  readonly balance: string;
  readonly currency: string;
  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(code, message, init);
    this.requiredAmount = String(this.details.required ?? '');
    this.balance = String(this.details.balance ?? '');
    this.currency = String(this.details.currency ?? 'usd');
  }
}

/** A spending limit refused the payment (nothing was paid). */
export class VlexivoBudgetError extends VlexivoPaymentError {
  /** Which limit: "per_call" | "per_host" | "total" | "window". */
  readonly limit: string;
  readonly requested: string;
  readonly remaining: string;
  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(code, message, init);
    this.limit = String(this.details.limit ?? '');
    this.requested = String(this.details.requested ?? '');
    this.remaining = String(this.details.remaining ?? '');
  }
}

/** `facilitator`: the facilitator refused the caller, failed or could not be reached. */
export class VlexivoFacilitatorError extends VlexivoError {
  /** For `facilitator_error`: the facilitator's HTTP status and code. */
  readonly facilitatorStatus?: number;
  readonly facilitatorCode?: string;
  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(code, message, init);
    if (this.details.facilitatorStatus !== undefined) {
      this.facilitatorStatus = Number(this.details.facilitatorStatus);
      this.facilitatorCode = String(this.details.facilitatorCode ?? '');
    }
  }
}

/** `nonce_store`: the provider's nonce store is full or unreachable (503). */
export class VlexivoNonceStoreError extends VlexivoError {}

/** `request`: a request the client cannot make or send again (bad URL, one-shot body, too
 * large), or a response that is not a Vlexivo 402. */
export class VlexivoRequestError extends VlexivoError {}

/** `config`: bad options, a mode mismatch, or a provider price that is invalid. */
export class VlexivoConfigError extends VlexivoError {}

/** `internal`: a bug or an unexpected failure inside Vlexivo. */
export class VlexivoInternalError extends VlexivoError {}

type ErrorClass = new (code: VlexivoErrorCode, message: string, init?: VlexivoErrorInit) => VlexivoError;

/** The class of every category: exhaustive by type. */
export const CATEGORY_CLASSES: { readonly [C in VlexivoErrorCategory]: ErrorClass } = {
  amount: VlexivoAmountError,
  challenge: VlexivoChallengeError,
  wallet: VlexivoWalletError,
  proof: VlexivoProofError,
  payment: VlexivoPaymentError,
  facilitator: VlexivoFacilitatorError,
  nonce_store: VlexivoNonceStoreError,
  request: VlexivoRequestError,
  config: VlexivoConfigError,
  internal: VlexivoInternalError,
};

/** Codes with a class of their own, a subclass of their category's. */
const OWN_CLASSES: { readonly [C in VlexivoErrorCode]?: ErrorClass } = {
  token_replayed: VlexivoReplayError,
  token_underpaid: VlexivoUnderpaidError,
  token_currency: VlexivoUnderpaidError,
  insufficient_funds: VlexivoInsufficientFundsError,
  budget_exceeded: VlexivoBudgetError,
};

/** The class of every code: its own, else its category's (from core's table). */
export const CODE_CLASSES: { readonly [C in VlexivoErrorCode]: ErrorClass } = Object.fromEntries(
  ALL_CODES.map((code) => {
    const category = TABLE.get(code)?.category as VlexivoErrorCategory | undefined;
    return [code, OWN_CLASSES[code] ?? (category ? CATEGORY_CLASSES[category] : VlexivoInternalError)];
  }),
) as { readonly [C in VlexivoErrorCode]: ErrorClass };

function isCode(code: unknown): code is VlexivoErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(CODE_CLASSES, code);
}

/** The typed error for a code (unknown codes become `internal`, keeping the original). */
export function createError(
  code: string,
  message: string,
  init: VlexivoErrorInit = {},
): VlexivoError {
  if (!isCode(code)) {
    return new VlexivoInternalError('internal', message, {
      ...init,
      details: { ...init.details, unknownCode: code },
    });
  }
  return new CODE_CLASSES[code](code, message, init);
}

/** An error as data (from the native module's `errorFromBody`). */
export interface ErrorData {
  code: string;
  message: string;
  status: number;
  details?: unknown;
}

export function fromData(d: ErrorData, cause?: unknown): VlexivoError {
  const details = (d.details && typeof d.details === 'object' ? d.details : {}) as Record<string, unknown>;
  return createError(d.code, d.message, { status: d.status, details, cause });
}

/** Convert whatever the native module threw into a typed error (non-Vlexivo errors pass). */
export function fromNative(e: unknown): unknown {
  if (e instanceof VlexivoError) return e;
  const n = e as { vlexivo?: boolean; code?: string; message?: string; status?: number; details?: unknown };
  if (n && n.vlexivo === true && typeof n.code === 'string') {
    return fromData({ code: n.code, message: n.message ?? n.code, status: n.status ?? 500, details: n.details });
  }
  // A panic inside the native module: every export catches it (napi `catch_unwind`) and throws
  // a plain error with napi's GenericFailure status, which nothing else of ours throws.
  if (e instanceof Error && n.code === 'GenericFailure') {
    return new VlexivoInternalError('internal', `internal error in the native module: ${e.message}`, {
      status: 500,
      cause: e,
    });
  }
  return e;
}

/** Run a native call, rethrowing its failure as a typed error. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}
