/**
 * Typed errors. Every failure carries the stable snake_case `code` that core defines (the same
 * in every language and on the wire), the HTTP `status` core assigns to it, and the error's
 * fields in `details`. Each code maps to exactly one class (see `CODE_CLASSES`).
 */

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
  'request_too_large', 'request_malformed', 'facilitator_unavailable', 'facilitator_untrusted',
  'payment_in_doubt', 'facilitator_error',
  'authorization_invalid', 'authorization_used', 'settlement_failed',
  'not_payment_required', 'body_not_replayable', 'price_invalid', 'config_invalid',
  'mode_mismatch', 'internal',
] as const;

export type VlexivoErrorCode = (typeof ALL_CODES)[number];

export interface VlexivoErrorInit {
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
  /** The error's fields (amounts, limits, reasons), camelCase. */
  readonly details: Record<string, unknown>;

  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = init.status ?? 500;
    this.details = init.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, status: this.status, ...this.details };
  }
}

/** A malformed, negative, over-precise, too large or zero amount; an unknown currency. */
export class VlexivoAmountError extends VlexivoError {}

/** A 402 challenge that is malformed, forged, expired or for another request. */
export class VlexivoChallengeError extends VlexivoError {}

/** A bad wallet key, address or signature. */
export class VlexivoWalletError extends VlexivoError {}

/** The payment was not made or its proof does not buy the request. */
export class VlexivoPaymentError extends VlexivoError {}

/** The proof token was already used (409). */
export class VlexivoReplayError extends VlexivoPaymentError {}

/** The proof paid less than this request's price. */
export class VlexivoUnderpaidError extends VlexivoPaymentError {
  readonly paid: string;
  readonly price: string;
  constructor(code: VlexivoErrorCode, message: string, init: VlexivoErrorInit = {}) {
    super(code, message, init);
    this.paid = String(this.details.paid ?? '');
    this.price = String(this.details.price ?? '');
  }
}

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

/** The provider's nonce store is full or unreachable (503). */
export class VlexivoNonceStoreError extends VlexivoError {}

/** The facilitator refused, failed or could not be reached. */
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

/** A request the client cannot make or send again (bad URL, one-shot body, too large). */
export class VlexivoRequestError extends VlexivoError {}

/** Misconfiguration: bad options, mode mismatch, or a provider price that is invalid. */
export class VlexivoConfigError extends VlexivoError {}

/** A bug or an unexpected failure inside Vlexivo. */
export class VlexivoInternalError extends VlexivoError {}

type ErrorClass = new (code: VlexivoErrorCode, message: string, init?: VlexivoErrorInit) => VlexivoError;

/** The class of every code: exhaustive by type (a missing code fails to compile). */
export const CODE_CLASSES: { readonly [C in VlexivoErrorCode]: ErrorClass } = {
  amount_malformed: VlexivoAmountError,
  amount_negative: VlexivoAmountError,
  amount_not_finite: VlexivoAmountError,
  amount_precision: VlexivoAmountError,
  amount_too_large: VlexivoAmountError,
  amount_zero: VlexivoAmountError,
  currency_unsupported: VlexivoAmountError,
  currency_mismatch: VlexivoAmountError,
  challenge_malformed: VlexivoChallengeError,
  challenge_too_large: VlexivoChallengeError,
  challenge_invalid: VlexivoChallengeError,
  challenge_expired: VlexivoChallengeError,
  challenge_mismatch: VlexivoChallengeError,
  wallet_key_invalid: VlexivoWalletError,
  address_invalid: VlexivoWalletError,
  signature_invalid: VlexivoWalletError,
  payment_required: VlexivoPaymentError,
  token_malformed: VlexivoPaymentError,
  token_too_large: VlexivoPaymentError,
  token_algorithm: VlexivoPaymentError,
  token_type: VlexivoPaymentError,
  token_invalid: VlexivoPaymentError,
  token_expired: VlexivoPaymentError,
  token_not_yet_valid: VlexivoPaymentError,
  token_audience: VlexivoPaymentError,
  token_mode: VlexivoPaymentError,
  token_resource: VlexivoPaymentError,
  token_underpaid: VlexivoUnderpaidError,
  token_currency: VlexivoUnderpaidError,
  token_replayed: VlexivoReplayError,
  nonce_store_full: VlexivoNonceStoreError,
  nonce_store_unavailable: VlexivoNonceStoreError,
  budget_exceeded: VlexivoBudgetError,
  insufficient_funds: VlexivoInsufficientFundsError,
  provider_unknown: VlexivoFacilitatorError,
  unauthorized: VlexivoFacilitatorError,
  payment_conflict: VlexivoPaymentError,
  top_up_refused: VlexivoFacilitatorError,
  request_too_large: VlexivoRequestError,
  request_malformed: VlexivoRequestError,
  facilitator_unavailable: VlexivoFacilitatorError,
  facilitator_untrusted: VlexivoChallengeError,
  payment_in_doubt: VlexivoFacilitatorError,
  facilitator_error: VlexivoFacilitatorError,
  authorization_invalid: VlexivoPaymentError,
  authorization_used: VlexivoPaymentError,
  settlement_failed: VlexivoFacilitatorError,
  not_payment_required: VlexivoPaymentError,
  body_not_replayable: VlexivoRequestError,
  price_invalid: VlexivoConfigError,
  config_invalid: VlexivoConfigError,
  mode_mismatch: VlexivoConfigError,
  internal: VlexivoInternalError,
};

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
