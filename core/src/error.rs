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
    AmountPrecision { max_decimals: u32 },
    /// Above the per-call maximum.
    AmountTooLarge { max: String },
    /// The price is zero where a positive price is required.
    AmountZero,
    CurrencyUnsupported(String),
    CurrencyMismatch { expected: String, got: String },

    // --- challenge ---
    ChallengeMalformed(&'static str),
    ChallengeTooLarge { limit: usize },
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
    TokenTooLarge { limit: usize },
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
    TokenUnderpaid { paid: String, price: String },
    TokenCurrency { paid: String, price: String },
    /// The token's nonce was already consumed.
    TokenReplayed,

    // --- nonce store ---
    NonceStoreFull,
    NonceStoreUnavailable(String),

    // --- spending policy (payer side) ---
    BudgetExceeded { limit: BudgetLimit, requested: String, remaining: String },

    // --- facilitator / client flow ---
    InsufficientFunds { required: String, balance: String, currency: String },
    ProviderUnknown,
    Unauthorized,
    PaymentConflict,
    TopUpRefused(String),
    RequestTooLarge { limit: usize },
    RequestMalformed(String),
    FacilitatorUnavailable(String),
    FacilitatorError { status: u16, code: String, message: String },
    /// A 402 that is not a Vlexivo challenge, or no 402 at all where one was expected.
    NotPaymentRequired,
    /// The request body cannot be sent twice (a one-shot stream).
    BodyNotReplayable,
    /// The provider's price or configuration is wrong (a provider bug, not the caller's).
    PriceInvalid(String),
    Config(String),
    ModeMismatch { expected: String, got: String },
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
            FacilitatorError { .. } => "facilitator_error",
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
            AmountMalformed(_) | AmountNegative | AmountNotFinite | AmountPrecision { .. }
            | AmountTooLarge { .. } | AmountZero | CurrencyUnsupported(_)
            | CurrencyMismatch { .. } => 400,
            ChallengeMalformed(_) | ChallengeMismatch(_) => 400,
            ChallengeTooLarge { .. } | TokenTooLarge { .. } => 431,
            ChallengeInvalid | SignatureInvalid => 401,
            ChallengeExpired => 402,
            WalletKeyInvalid | AddressInvalid => 400,
            // A proof that does not buy this request: answer with a fresh challenge.
            TokenMissing | TokenMalformed(_) | TokenAlgorithm(_) | TokenType | TokenInvalid
            | TokenExpired | TokenNotYetValid | TokenAudience | TokenMode | TokenResource
            | TokenUnderpaid { .. } | TokenCurrency { .. } => 402,
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
            FacilitatorUnavailable(_) => 503,
            FacilitatorError { status, .. } => *status,
            NotPaymentRequired => 502,
            BodyNotReplayable => 400,
            PriceInvalid(_) | Config(_) | Internal(_) => 500,
            ModeMismatch { .. } => 400,
        }
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
        "amount_malformed", "amount_negative", "amount_not_finite", "amount_precision",
        "amount_too_large", "amount_zero", "currency_unsupported", "currency_mismatch",
        "challenge_malformed", "challenge_too_large", "challenge_invalid", "challenge_expired",
        "challenge_mismatch", "wallet_key_invalid", "address_invalid", "signature_invalid",
        "payment_required", "token_malformed", "token_too_large", "token_algorithm", "token_type",
        "token_invalid", "token_expired", "token_not_yet_valid", "token_audience", "token_mode",
        "token_resource", "token_underpaid", "token_currency", "token_replayed",
        "nonce_store_full", "nonce_store_unavailable", "budget_exceeded", "insufficient_funds",
        "provider_unknown", "unauthorized", "payment_conflict", "top_up_refused",
        "request_too_large", "request_malformed", "facilitator_unavailable", "facilitator_error",
        "not_payment_required", "body_not_replayable", "price_invalid", "config_invalid",
        "mode_mismatch", "internal",
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
            BudgetExceeded { limit, requested, remaining } => write!(
                f,
                "spending limit {} refuses {requested} (remaining {remaining})",
                limit.as_str()
            ),
            InsufficientFunds { required, balance, currency } => write!(
                f,
                "insufficient funds: {required} {currency} required, balance {balance}"
            ),
            ProviderUnknown => f.write_str("unknown provider account"),
            Unauthorized => f.write_str("unauthorized"),
            PaymentConflict => f.write_str("payment conflicts with an earlier one"),
            TopUpRefused(why) => write!(f, "top-up refused: {why}"),
            RequestTooLarge { limit } => write!(f, "request is larger than {limit} bytes"),
            RequestMalformed(why) => write!(f, "request is malformed: {why}"),
            FacilitatorUnavailable(why) => write!(f, "facilitator unavailable: {why}"),
            FacilitatorError { status, code, message } => {
                write!(f, "facilitator answered {status} {code}: {message}")
            }
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
}
