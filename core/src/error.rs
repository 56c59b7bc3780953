//! The one public error type. Every binding maps it exhaustively by `code()`, which is stable
//! wire format: codes are never renamed, only added (`docs/protocol.md`, "Error codes").

use std::fmt;

/// Which spending limit refused a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetLimit {
    PerCall,
    PerHost,
    Total,
    Window,
}

impl BudgetLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetLimit::PerCall => "per_call",
            BudgetLimit::PerHost => "per_host",
            BudgetLimit::Total => "total",
            BudgetLimit::Window => "window",
        }
    }
}

/// What an error is about: the one grouping every language's error classes follow (a class, an
/// exception base or a Kotlin/Swift variant per category). Stable snake_case names, like codes:
/// categories are added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// An amount or currency that is not acceptable (`amount_*`, `currency_*`).
    Amount,
    /// A 402 challenge that cannot be paid: malformed, forged, expired, for another request,
    /// or naming a facilitator the payer does not trust.
    Challenge,
    /// A wallet key, address or signature.
    Wallet,
    /// A proof of payment that does not buy this request, or none (`payment_required`,
    /// `token_*`).
    Proof,
    /// A payment that was refused or whose fate is unknown: budget, funds, conflict, top-up.
    Payment,
    /// The facilitator refused the caller, failed, or could not be reached (or, for a payment
    /// checked on chain, the chain's node).
    Facilitator,
    /// The provider's nonce store is full or unreachable.
    NonceStore,
    /// A request or response that cannot be handled as sent (too large, malformed, a body that
    /// cannot be replayed, a response that is not a Vlexivo 402).
    Request,
    /// Misconfiguration: options, mode, or a provider price.
    Config,
    /// A bug.
    Internal,
}

impl ErrorCategory {
    /// Every category, in a stable order.
    pub const ALL: &'static [ErrorCategory] = &[
        ErrorCategory::Amount,
        ErrorCategory::Challenge,
        ErrorCategory::Wallet,
        ErrorCategory::Proof,
        ErrorCategory::Payment,
        ErrorCategory::Facilitator,
        ErrorCategory::NonceStore,
        ErrorCategory::Request,
        ErrorCategory::Config,
        ErrorCategory::Internal,
    ];

    /// Stable snake_case name, the same in every language.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Amount => "amount",
            ErrorCategory::Challenge => "challenge",
            ErrorCategory::Wallet => "wallet",
            ErrorCategory::Proof => "proof",
            ErrorCategory::Payment => "payment",
            ErrorCategory::Facilitator => "facilitator",
            ErrorCategory::NonceStore => "nonce_store",
            ErrorCategory::Request => "request",
            ErrorCategory::Config => "config",
            ErrorCategory::Internal => "internal",
        }
    }
}

/// Every failure Vlexivo reports. Messages never contain secrets, keys or signatures, and
/// signature failures are deliberately opaque (`SignatureInvalid`, `TokenInvalid`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // --- money ---
    /// Not a decimal number at all ("abc", "", "1.2.3").
    AmountMalformed(String),
    /// Below zero.
    AmountNegative,
    /// NaN or Infinity (from a float or the strings).
    AmountNotFinite,
    /// More decimals than the currency carries, or an exponent form that would lose precision.
    AmountPrecision {
        max_decimals: u32,
    },
    /// Above the per-call maximum.
    AmountTooLarge {
        max: String,
    },
    /// The price is zero where a positive price is required.
    AmountZero,
    CurrencyUnsupported(String),
    CurrencyMismatch {
        expected: String,
        got: String,
    },

    // --- challenge ---
    ChallengeMalformed(&'static str),
    ChallengeTooLarge {
        limit: usize,
    },
    /// The MAC does not match (opaque on purpose).
    ChallengeInvalid,
    ChallengeExpired,
    /// The challenge is for another request than the one the client made.
    ChallengeMismatch(&'static str),

    // --- wallet / signatures ---
    WalletKeyInvalid,
    AddressInvalid,
    /// A wallet signature does not verify or recovers another address (opaque on purpose).
    SignatureInvalid,

    // --- proof token ---
    TokenMissing,
    TokenMalformed(&'static str),
    TokenTooLarge {
        limit: usize,
    },
    TokenAlgorithm(String),
    TokenType,
    /// Bad token signature (opaque on purpose).
    TokenInvalid,
    TokenExpired,
    TokenNotYetValid,
    /// `aud` is another provider account.
    TokenAudience,
    /// Issued for another mode (sandbox vs live).
    TokenMode,
    /// Issued for another method + path.
    TokenResource,
    /// Paid less than this request's price.
    TokenUnderpaid {
        paid: String,
        price: String,
    },
    TokenCurrency {
        paid: String,
        price: String,
    },
    /// The token's nonce was already consumed.
    TokenReplayed,

    // --- nonce store ---
    NonceStoreFull,
    NonceStoreUnavailable(String),

    // --- spending policy (payer side) ---
    BudgetExceeded {
        limit: BudgetLimit,
        requested: String,
        remaining: String,
    },

    // --- facilitator / client flow ---
    InsufficientFunds {
        required: String,
        balance: String,
        currency: String,
    },
    ProviderUnknown,
    Unauthorized,
    PaymentConflict,
    TopUpRefused(String),
    RequestTooLarge {
        limit: usize,
    },
    RequestMalformed(String),
    FacilitatorUnavailable(String),
    /// The facilitator sheds load: it had as many requests in flight as it is configured to
    /// serve at once and refused this one before reading it (503 with `Retry-After`). Nothing
    /// was charged for it: the same signed payment may be sent again.
    FacilitatorOverloaded,
    /// The challenge names a facilitator the payer does not trust (payer side): nothing was
    /// signed, queried or paid.
    FacilitatorUntrusted {
        facilitator: String,
    },
    /// The facilitator's answer did not say whether it charged (a timeout or a lost connection
    /// after the payment was sent, a 5xx, a garbled body): the payment stays counted by the
    /// budget until re-sending the same signed payment tells its fate.
    PaymentInDoubt {
        facilitator: String,
        nonce: String,
        amount: String,
        reason: String,
    },
    FacilitatorError {
        status: u16,
        code: String,
        message: String,
    },

    // --- live settlement (EIP-3009) ---
    /// A live payment's authorization does not fit its challenge or this facilitator: not yet
    /// valid, valid beyond the challenge, expiring, another token, network or payout address.
    AuthorizationInvalid(&'static str),
    /// The chain already has this authorization's nonce used (or cancelled): the transfer was
    /// settled by someone else, or the payer cancelled it. Nothing was charged now.
    AuthorizationUsed,
    /// The chain refused the transfer (the simulation or the mined transaction reverted, or it
    /// was dropped): nothing moved.
    SettlementFailed(String),
    /// Provider-side check of a live payment ([`crate::onchain`]): the chain has no mined
    /// transaction with this hash (unknown, dropped, or not mined yet).
    TransactionNotFound,
    /// The transaction does not carry the expected `Transfer` of the token: `field` is the
    /// first that differs (`token`, `payer`, `payee`, `amount`, or `authorization`).
    TransferMismatch {
        field: String,
        expected: String,
        got: String,
    },
    /// The payment is mined but not yet as deep as asked (try again later).
    ConfirmationsPending {
        confirmations: u64,
        required: u64,
    },
    /// The chain's JSON-RPC node cannot be reached or answered something that is not JSON-RPC
    /// (the reason never names the node's URL, which often carries an API key).
    ChainUnavailable(String),
    /// Live auto top-up: the funding wallet holds less than the top-up needs, of the token
    /// (`currency` `usd`) or of gas (`wei`). Nothing was sent.
    FundingInsufficient {
        address: String,
        required: String,
        balance: String,
        currency: String,
    },
    /// A 402 that is not a Vlexivo challenge, or no 402 at all where one was expected.
    NotPaymentRequired,
    /// The request body cannot be sent twice (a one-shot stream).
    BodyNotReplayable,
    /// The provider's price or configuration is wrong (a provider bug, not the caller's).
    PriceInvalid(String),
    Config(String),
    ModeMismatch {
        expected: String,
        got: String,
    },
    Internal(String),
}

impl Error {
    /// Stable snake_case code, the same in every language and on the wire.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            AmountMalformed(_) => "amount_malformed",
            AmountNegative => "amount_negative",
            AmountNotFinite => "amount_not_finite",
            AmountPrecision { .. } => "amount_precision",
            AmountTooLarge { .. } => "amount_too_large",
            AmountZero => "amount_zero",
            CurrencyUnsupported(_) => "currency_unsupported",
            CurrencyMismatch { .. } => "currency_mismatch",
            ChallengeMalformed(_) => "challenge_malformed",
            ChallengeTooLarge { .. } => "challenge_too_large",
            ChallengeInvalid => "challenge_invalid",
            ChallengeExpired => "challenge_expired",
            ChallengeMismatch(_) => "challenge_mismatch",
            WalletKeyInvalid => "wallet_key_invalid",
            AddressInvalid => "address_invalid",
            SignatureInvalid => "signature_invalid",
            TokenMissing => "payment_required",
            TokenMalformed(_) => "token_malformed",
            TokenTooLarge { .. } => "token_too_large",
            TokenAlgorithm(_) => "token_algorithm",
            TokenType => "token_type",
            TokenInvalid => "token_invalid",
            TokenExpired => "token_expired",
            TokenNotYetValid => "token_not_yet_valid",
            TokenAudience => "token_audience",
            TokenMode => "token_mode",
            TokenResource => "token_resource",
            TokenUnderpaid { .. } => "token_underpaid",
            TokenCurrency { .. } => "token_currency",
            TokenReplayed => "token_replayed",
            NonceStoreFull => "nonce_store_full",
            NonceStoreUnavailable(_) => "nonce_store_unavailable",
            BudgetExceeded { .. } => "budget_exceeded",
            InsufficientFunds { .. } => "insufficient_funds",
            ProviderUnknown => "provider_unknown",
            Unauthorized => "unauthorized",
            PaymentConflict => "payment_conflict",
            TopUpRefused(_) => "top_up_refused",
            RequestTooLarge { .. } => "request_too_large",
            RequestMalformed(_) => "request_malformed",
            FacilitatorUnavailable(_) => "facilitator_unavailable",
            FacilitatorOverloaded => "facilitator_overloaded",
            FacilitatorUntrusted { .. } => "facilitator_untrusted",
            PaymentInDoubt { .. } => "payment_in_doubt",
            FacilitatorError { .. } => "facilitator_error",
            AuthorizationInvalid(_) => "authorization_invalid",
            AuthorizationUsed => "authorization_used",
            SettlementFailed(_) => "settlement_failed",
            TransactionNotFound => "transaction_not_found",
            TransferMismatch { .. } => "transfer_mismatch",
            ConfirmationsPending { .. } => "confirmations_pending",
            ChainUnavailable(_) => "chain_unavailable",
            FundingInsufficient { .. } => "funding_insufficient",
            NotPaymentRequired => "not_payment_required",
            BodyNotReplayable => "body_not_replayable",
            PriceInvalid(_) => "price_invalid",
            Config(_) => "config_invalid",
            ModeMismatch { .. } => "mode_mismatch",
            Internal(_) => "internal",
        }
    }

    /// The HTTP status a server answers with for this error.
    pub fn http_status(&self) -> u16 {
        use Error::*;
        match self {
            AmountMalformed(_)
            | AmountNegative
            | AmountNotFinite
            | AmountPrecision { .. }
            | AmountTooLarge { .. }
            | AmountZero
            | CurrencyUnsupported(_)
            | CurrencyMismatch { .. } => 400,
            ChallengeMalformed(_) | ChallengeMismatch(_) => 400,
            ChallengeTooLarge { .. } | TokenTooLarge { .. } => 431,
            ChallengeInvalid | SignatureInvalid => 401,
            ChallengeExpired => 402,
            WalletKeyInvalid | AddressInvalid => 400,
            // A proof that does not buy this request: answer with a fresh challenge.
            TokenMissing
            | TokenMalformed(_)
            | TokenAlgorithm(_)
            | TokenType
            | TokenInvalid
            | TokenExpired
            | TokenNotYetValid
            | TokenAudience
            | TokenMode
            | TokenResource
            | TokenUnderpaid { .. }
            | TokenCurrency { .. } => 402,
            TokenReplayed => 409,
            NonceStoreFull | NonceStoreUnavailable(_) => 503,
            BudgetExceeded { .. } => 402,
            InsufficientFunds { .. } => 402,
            ProviderUnknown => 404,
            Unauthorized => 401,
            PaymentConflict => 409,
            TopUpRefused(_) => 403,
            RequestTooLarge { .. } => 413,
            RequestMalformed(_) => 400,
            FacilitatorUnavailable(_) | FacilitatorOverloaded => 503,
            FacilitatorUntrusted { .. } => 403,
            PaymentInDoubt { .. } => 502,
            FacilitatorError { status, .. } => *status,
            AuthorizationInvalid(_) => 400,
            AuthorizationUsed => 409,
            SettlementFailed(_) => 502,
            TransactionNotFound | TransferMismatch { .. } | ConfirmationsPending { .. } => 402,
            ChainUnavailable(_) => 503,
            FundingInsufficient { .. } => 402,
            NotPaymentRequired => 502,
            BodyNotReplayable => 400,
            PriceInvalid(_) | Config(_) | Internal(_) => 500,
            ModeMismatch { .. } => 400,
        }
    }

    /// The category whose class this error is in every language (`docs/protocol.md` §9).
    pub fn category(&self) -> ErrorCategory {
        use Error::*;
        use ErrorCategory as C;
        match self {
            AmountMalformed(_)
            | AmountNegative
            | AmountNotFinite
            | AmountPrecision { .. }
            | AmountTooLarge { .. }
            | AmountZero
            | CurrencyUnsupported(_)
            | CurrencyMismatch { .. } => C::Amount,
            ChallengeMalformed(_)
            | ChallengeTooLarge { .. }
            | ChallengeInvalid
            | ChallengeExpired
            | ChallengeMismatch(_)
            | FacilitatorUntrusted { .. } => C::Challenge,
            WalletKeyInvalid | AddressInvalid | SignatureInvalid => C::Wallet,
            TokenMissing
            | TokenMalformed(_)
            | TokenTooLarge { .. }
            | TokenAlgorithm(_)
            | TokenType
            | TokenInvalid
            | TokenExpired
            | TokenNotYetValid
            | TokenAudience
            | TokenMode
            | TokenResource
            | TokenUnderpaid { .. }
            | TokenCurrency { .. }
            | TokenReplayed => C::Proof,
            BudgetExceeded { .. }
            | InsufficientFunds { .. }
            | PaymentConflict
            | PaymentInDoubt { .. }
            | TopUpRefused(_)
            | AuthorizationInvalid(_)
            | AuthorizationUsed
            | TransactionNotFound
            | TransferMismatch { .. }
            | ConfirmationsPending { .. }
            | FundingInsufficient { .. } => C::Payment,
            ProviderUnknown
            | Unauthorized
            | FacilitatorUnavailable(_)
            | FacilitatorOverloaded
            | FacilitatorError { .. }
            | SettlementFailed(_)
            | ChainUnavailable(_) => C::Facilitator,
            NonceStoreFull | NonceStoreUnavailable(_) => C::NonceStore,
            RequestTooLarge { .. } | RequestMalformed(_) | BodyNotReplayable | NotPaymentRequired => {
                C::Request
            }
            PriceInvalid(_) | Config(_) | ModeMismatch { .. } => C::Config,
            Internal(_) => C::Internal,
        }
    }

    /// The category of `code`, or `None` for a code core does not have.
    pub fn category_of(code: &str) -> Option<ErrorCategory> {
        Error::from_code(code, &serde_json::Value::Null).map(|e| e.category())
    }

    /// True for errors that the caller caused with bad input (bindings map these to
    /// `ValueError` in Python and `TypeError`-free `VlexivoError`s in JS).
    pub fn is_bad_input(&self) -> bool {
        use Error::*;
        matches!(
            self,
            AmountMalformed(_)
                | AmountNegative
                | AmountNotFinite
                | AmountPrecision { .. }
                | AmountTooLarge { .. }
                | AmountZero
                | CurrencyUnsupported(_)
                | CurrencyMismatch { .. }
                | ChallengeMalformed(_)
                | ChallengeTooLarge { .. }
                | WalletKeyInvalid
                | AddressInvalid
                | TokenMalformed(_)
                | TokenTooLarge { .. }
                | RequestTooLarge { .. }
                | RequestMalformed(_)
                | BodyNotReplayable
                | Config(_)
        )
    }

    /// Every code, for bindings' exhaustiveness tests and the spec's table.
    pub const ALL_CODES: &'static [&'static str] = &[
        "amount_malformed",
        "amount_negative",
        "amount_not_finite",
        "amount_precision",
        "amount_too_large",
        "amount_zero",
        "currency_unsupported",
        "currency_mismatch",
        "challenge_malformed",
        "challenge_too_large",
        "challenge_invalid",
        "challenge_expired",
        "challenge_mismatch",
        "wallet_key_invalid",
        "address_invalid",
        "signature_invalid",
        "payment_required",
        "token_malformed",
        "token_too_large",
        "token_algorithm",
        "token_type",
        "token_invalid",
        "token_expired",
        "token_not_yet_valid",
        "token_audience",
        "token_mode",
        "token_resource",
        "token_underpaid",
        "token_currency",
        "token_replayed",
        "nonce_store_full",
        "nonce_store_unavailable",
        "budget_exceeded",
        "insufficient_funds",
        "provider_unknown",
        "unauthorized",
        "payment_conflict",
        "top_up_refused",
        "request_too_large",
        "request_malformed",
        "facilitator_unavailable",
        "facilitator_overloaded",
        "facilitator_untrusted",
        "payment_in_doubt",
        "facilitator_error",
        "authorization_invalid",
        "authorization_used",
        "settlement_failed",
        "transaction_not_found",
        "transfer_mismatch",
        "confirmations_pending",
        "chain_unavailable",
        "funding_insufficient",
        "not_payment_required",
        "body_not_replayable",
        "price_invalid",
        "config_invalid",
        "mode_mismatch",
        "internal",
    ];
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            AmountMalformed(s) => write!(f, "amount is not a decimal number: {s:?}"),
            AmountNegative => f.write_str("amount is negative"),
            AmountNotFinite => f.write_str("amount is NaN or infinite"),
            AmountPrecision { max_decimals } => {
                write!(f, "amount has more than {max_decimals} decimals")
            }
            AmountTooLarge { max } => write!(f, "amount is above the maximum of {max}"),
            AmountZero => f.write_str("amount must be greater than zero"),
            CurrencyUnsupported(c) => write!(f, "currency {c:?} is not supported"),
            CurrencyMismatch { expected, got } => {
                write!(f, "currency mismatch: expected {expected}, got {got}")
            }
            ChallengeMalformed(why) => write!(f, "challenge is malformed: {why}"),
            ChallengeTooLarge { limit } => write!(f, "challenge is larger than {limit} bytes"),
            ChallengeInvalid => f.write_str("challenge failed authentication"),
            ChallengeExpired => f.write_str("challenge has expired"),
            ChallengeMismatch(why) => write!(f, "challenge does not match the request: {why}"),
            WalletKeyInvalid => f.write_str("wallet key is not a valid secp256k1 private key"),
            AddressInvalid => f.write_str("address is not a valid 20-byte hex address"),
            SignatureInvalid => f.write_str("signature is invalid"),
            TokenMissing => f.write_str("payment required: no proof token"),
            TokenMalformed(why) => write!(f, "proof token is malformed: {why}"),
            TokenTooLarge { limit } => write!(f, "proof token is larger than {limit} bytes"),
            TokenAlgorithm(alg) => write!(f, "proof token algorithm {alg:?} is not allowed"),
            TokenType => f.write_str("proof token has the wrong typ"),
            TokenInvalid => f.write_str("proof token is invalid"),
            TokenExpired => f.write_str("proof token has expired"),
            TokenNotYetValid => f.write_str("proof token is not valid yet"),
            TokenAudience => f.write_str("proof token is for another provider"),
            TokenMode => f.write_str("proof token is for another mode"),
            TokenResource => f.write_str("proof token is for another route"),
            TokenUnderpaid { paid, price } => {
                write!(f, "proof token paid {paid}, this request costs {price}")
            }
            TokenCurrency { paid, price } => {
                write!(f, "proof token paid in {paid}, this request is priced in {price}")
            }
            TokenReplayed => f.write_str("proof token was already used"),
            NonceStoreFull => f.write_str("nonce store is full"),
            NonceStoreUnavailable(why) => write!(f, "nonce store unavailable: {why}"),
            BudgetExceeded { limit, requested, remaining } => {
                write!(f, "spending limit {} refuses {requested} (remaining {remaining})", limit.as_str())
            }
            InsufficientFunds { required, balance, currency } => {
                write!(f, "insufficient funds: {required} {currency} required, balance {balance}")
            }
            ProviderUnknown => f.write_str("unknown provider account"),
            Unauthorized => f.write_str("unauthorized"),
            PaymentConflict => f.write_str("payment conflicts with an earlier one"),
            TopUpRefused(why) => write!(f, "top-up refused: {why}"),
            RequestTooLarge { limit } => write!(f, "request is larger than {limit} bytes"),
            RequestMalformed(why) => write!(f, "request is malformed: {why}"),
            FacilitatorUnavailable(why) => write!(f, "facilitator unavailable: {why}"),
            FacilitatorOverloaded => f.write_str(
                "the facilitator is overloaded and refused the request before reading it (nothing was \
                 charged): retry after the time in its Retry-After header",
            ),
            FacilitatorUntrusted { facilitator } => write!(
                f,
                "the challenge names facilitator {facilitator:?}, which this payer does not trust \
                 (configure it as the facilitator, in VLX_FACILITATOR_URL or in the trusted list)"
            ),
            PaymentInDoubt { facilitator, nonce: _, amount, reason } => write!(
                f,
                "payment of {amount} through {facilitator} is in doubt ({reason}): it stays counted \
                 against the budget until the facilitator tells its fate"
            ),
            FacilitatorError { status, code, message } => {
                write!(f, "facilitator answered {status} {code}: {message}")
            }
            AuthorizationInvalid(why) => write!(f, "transfer authorization refused: {why}"),
            AuthorizationUsed => f.write_str(
                "the transfer authorization's nonce is already used on chain (settled or cancelled)",
            ),
            SettlementFailed(why) => write!(f, "settlement failed on chain, nothing moved: {why}"),
            TransactionNotFound => f.write_str(
                "no mined transaction with this hash on the chain (unknown, dropped, or not mined yet)",
            ),
            TransferMismatch { field, expected, got } => {
                write!(f, "the transaction does not pay as expected: {field} is {got}, not {expected}")
            }
            ConfirmationsPending { confirmations, required } => write!(
                f,
                "the payment is {confirmations} confirmation(s) deep, fewer than the {required} asked for"
            ),
            ChainUnavailable(why) => write!(f, "the chain's JSON-RPC node is unavailable: {why}"),
            FundingInsufficient { address, required, balance, currency } => write!(
                f,
                "the funding wallet {address} cannot fund the top-up: {required} {currency} needed, it holds {balance}"
            ),
            NotPaymentRequired => f.write_str("response is not a Vlexivo payment challenge"),
            BodyNotReplayable => {
                f.write_str("request body is a one-shot stream and cannot be replayed after payment")
            }
            PriceInvalid(why) => write!(f, "provider price is invalid: {why}"),
            Config(why) => write!(f, "configuration error: {why}"),
            ModeMismatch { expected, got } => {
                write!(f, "mode mismatch: expected {expected}, got {got}")
            }
            Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error as data: its fields as bindings attach them (`details`), and back. One table for
/// every binding, so a code crosses a language boundary and returns as the same error.
impl Error {
    /// The variant's fields, camelCase (`{"required": "0.01", "balance": "0", …}`); `{}` for a
    /// variant without fields. Static reasons are included; nothing here is secret.
    pub fn details(&self) -> serde_json::Value {
        use Error::*;
        use serde_json::json;
        match self {
            AmountMalformed(s) => json!({ "reason": s }),
            AmountPrecision { max_decimals } => json!({ "maxDecimals": max_decimals }),
            AmountTooLarge { max } => json!({ "max": max }),
            CurrencyUnsupported(c) => json!({ "currency": c }),
            CurrencyMismatch { expected, got } | ModeMismatch { expected, got } => {
                json!({ "expected": expected, "got": got })
            }
            ChallengeMalformed(why)
            | ChallengeMismatch(why)
            | TokenMalformed(why)
            | AuthorizationInvalid(why) => {
                json!({ "reason": why })
            }
            ChallengeTooLarge { limit } | TokenTooLarge { limit } | RequestTooLarge { limit } => {
                json!({ "limit": limit })
            }
            TokenAlgorithm(alg) => json!({ "algorithm": alg }),
            TokenUnderpaid { paid, price } | TokenCurrency { paid, price } => {
                json!({ "paid": paid, "price": price })
            }
            NonceStoreUnavailable(why)
            | TopUpRefused(why)
            | RequestMalformed(why)
            | FacilitatorUnavailable(why)
            | SettlementFailed(why)
            | ChainUnavailable(why)
            | PriceInvalid(why)
            | Config(why)
            | Internal(why) => json!({ "reason": why }),
            BudgetExceeded { limit, requested, remaining } => {
                json!({ "limit": limit.as_str(), "requested": requested, "remaining": remaining })
            }
            InsufficientFunds { required, balance, currency } => {
                json!({ "required": required, "balance": balance, "currency": currency })
            }
            FacilitatorUntrusted { facilitator } => json!({ "facilitator": facilitator }),
            TransferMismatch { field, expected, got } => {
                json!({ "field": field, "expected": expected, "got": got })
            }
            ConfirmationsPending { confirmations, required } => {
                json!({ "confirmations": confirmations, "required": required })
            }
            FundingInsufficient { address, required, balance, currency } => {
                json!({ "address": address, "required": required, "balance": balance, "currency": currency })
            }
            PaymentInDoubt { facilitator, nonce, amount, reason } => {
                json!({ "facilitator": facilitator, "nonce": nonce, "amount": amount, "reason": reason })
            }
            FacilitatorError { status, code, message } => json!({
                "facilitatorStatus": status,
                "facilitatorCode": code,
                "facilitatorMessage": message
            }),
            _ => serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// The error of `code` with the fields `details` carries (as [`Error::details`] writes
    /// them; a missing one takes a neutral default). `None` for a code core does not have.
    /// Reasons core keeps as static strings come back generic.
    pub fn from_code(code: &str, details: &serde_json::Value) -> Option<Error> {
        use Error::*;
        use serde_json::Value;
        let field = |key: &str| match details.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let num = |key: &str, default: u64| details.get(key).and_then(Value::as_u64).unwrap_or(default);
        let reason = || field("reason");
        let limit = |default: usize| num("limit", default as u64) as usize;
        Some(match code {
            "amount_malformed" => AmountMalformed(reason()),
            "amount_negative" => AmountNegative,
            "amount_not_finite" => AmountNotFinite,
            "amount_precision" => {
                AmountPrecision { max_decimals: u32::try_from(num("maxDecimals", 6)).unwrap_or(6) }
            }
            "amount_too_large" => AmountTooLarge {
                max: Some(field("max"))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| crate::money::MAX_AMOUNT.to_string()),
            },
            "amount_zero" => AmountZero,
            "currency_unsupported" => CurrencyUnsupported(field("currency")),
            "currency_mismatch" => CurrencyMismatch { expected: field("expected"), got: field("got") },
            "challenge_malformed" => ChallengeMalformed("rejected"),
            "challenge_too_large" => {
                ChallengeTooLarge { limit: limit(crate::challenge::MAX_CHALLENGE_BYTES) }
            }
            "challenge_invalid" => ChallengeInvalid,
            "challenge_expired" => ChallengeExpired,
            "challenge_mismatch" => ChallengeMismatch("request"),
            "wallet_key_invalid" => WalletKeyInvalid,
            "address_invalid" => AddressInvalid,
            "signature_invalid" => SignatureInvalid,
            "payment_required" => TokenMissing,
            "token_malformed" => TokenMalformed("rejected"),
            "token_too_large" => TokenTooLarge { limit: limit(crate::token::MAX_TOKEN_BYTES) },
            "token_algorithm" => TokenAlgorithm(field("algorithm")),
            "token_type" => TokenType,
            "token_invalid" => TokenInvalid,
            "token_expired" => TokenExpired,
            "token_not_yet_valid" => TokenNotYetValid,
            "token_audience" => TokenAudience,
            "token_mode" => TokenMode,
            "token_resource" => TokenResource,
            "token_underpaid" => TokenUnderpaid { paid: field("paid"), price: field("price") },
            "token_currency" => TokenCurrency { paid: field("paid"), price: field("price") },
            "token_replayed" => TokenReplayed,
            "nonce_store_full" => NonceStoreFull,
            "nonce_store_unavailable" => NonceStoreUnavailable(reason()),
            "budget_exceeded" => BudgetExceeded {
                limit: match field("limit").as_str() {
                    "per_host" => BudgetLimit::PerHost,
                    "total" => BudgetLimit::Total,
                    "window" => BudgetLimit::Window,
                    _ => BudgetLimit::PerCall,
                },
                requested: field("requested"),
                remaining: field("remaining"),
            },
            "insufficient_funds" => InsufficientFunds {
                required: field("required"),
                balance: field("balance"),
                currency: Some(field("currency")).filter(|c| !c.is_empty()).unwrap_or_else(|| "usd".into()),
            },
            "provider_unknown" => ProviderUnknown,
            "unauthorized" => Unauthorized,
            "payment_conflict" => PaymentConflict,
            "top_up_refused" => TopUpRefused(reason()),
            "request_too_large" => RequestTooLarge { limit: limit(65536) },
            "request_malformed" => RequestMalformed(reason()),
            "facilitator_unavailable" => FacilitatorUnavailable(reason()),
            "facilitator_overloaded" => FacilitatorOverloaded,
            "facilitator_untrusted" => FacilitatorUntrusted { facilitator: field("facilitator") },
            "payment_in_doubt" => PaymentInDoubt {
                facilitator: field("facilitator"),
                nonce: field("nonce"),
                amount: field("amount"),
                reason: reason(),
            },
            "facilitator_error" => FacilitatorError {
                status: u16::try_from(num("facilitatorStatus", 502)).unwrap_or(502),
                code: field("facilitatorCode"),
                message: field("facilitatorMessage"),
            },
            "authorization_invalid" => AuthorizationInvalid("rejected"),
            "authorization_used" => AuthorizationUsed,
            "settlement_failed" => SettlementFailed(reason()),
            "transaction_not_found" => TransactionNotFound,
            "transfer_mismatch" => {
                TransferMismatch { field: field("field"), expected: field("expected"), got: field("got") }
            }
            "confirmations_pending" => {
                ConfirmationsPending { confirmations: num("confirmations", 0), required: num("required", 1) }
            }
            "chain_unavailable" => ChainUnavailable(reason()),
            "funding_insufficient" => FundingInsufficient {
                address: field("address"),
                required: field("required"),
                balance: field("balance"),
                currency: Some(field("currency")).filter(|c| !c.is_empty()).unwrap_or_else(|| "usd".into()),
            },
            "not_payment_required" => NotPaymentRequired,
            "body_not_replayable" => BodyNotReplayable,
            "price_invalid" => PriceInvalid(reason()),
            "config_invalid" => Config(reason()),
            "mode_mismatch" => ModeMismatch { expected: field("expected"), got: field("got") },
            "internal" => Internal(reason()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Error::ALL_CODES {
            assert!(c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'), "{c}");
            assert!(seen.insert(*c), "duplicate {c}");
        }
    }

    #[test]
    fn every_code_round_trips_through_its_details() {
        for code in Error::ALL_CODES {
            let e = Error::from_code(code, &serde_json::json!({})).unwrap_or_else(|| panic!("{code}"));
            assert_eq!(e.code(), *code);
            assert_eq!(Error::from_code(code, &e.details()), Some(e.clone()), "{code}");
        }
        assert!(Error::from_code("no_such_code", &serde_json::json!({})).is_none());
        let e = Error::InsufficientFunds {
            required: "0.01".into(),
            balance: "0.004".into(),
            currency: "usd".into(),
        };
        assert_eq!(Error::from_code("insufficient_funds", &e.details()), Some(e));
        let e = Error::BudgetExceeded {
            limit: BudgetLimit::Window,
            requested: "1".into(),
            remaining: "0.5".into(),
        };
        assert_eq!(Error::from_code("budget_exceeded", &e.details()), Some(e));
    }
}
