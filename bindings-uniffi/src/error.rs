//! The one error type the bindings throw: `VlexivoException` in Kotlin (a sealed class, one
//! subclass per variant), `VlexivoError` in Swift (an enum). Every variant carries the core's
//! stable snake_case `code` and a human `reason`; the two an app acts on carry their numbers.
//!
//! Variants group codes by what the caller can do about them, so apps match a handful of cases
//! rather than 48 codes. The grouping is a table over `vlexivo_core::Error::ALL_CODES`, checked
//! exhaustive by a test (core's enum is `#[non_exhaustive]`, so a `match` cannot be).

use vlexivo_core::Error as CoreError;

/// A failure, as Kotlin/Swift see it. (`reason` rather than `message`: Kotlin's `Throwable`
/// already has a `message`, which the generated code fills from these fields.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum VlexivoError {
    /// The wallet cannot pay: `required` is what this call needs, `balance` what the wallet has
    /// (decimal strings in `currency`). An agent can ask its user for exactly that.
    #[error("{reason}")]
    InsufficientFunds { code: String, reason: String, required: String, balance: String, currency: String },
    /// The spending policy refused the payment before anything was signed. `limit` is
    /// `per_call`, `per_host`, `total` or `window`.
    #[error("{reason}")]
    BudgetExceeded { code: String, reason: String, limit: String, requested: String, remaining: String },
    /// The response is not a Vlexivo 402 (another status, or a 402 of another scheme): hand it
    /// to the app unchanged.
    #[error("{reason}")]
    NotPaymentRequired { code: String, reason: String },
    /// The app passed something invalid (an amount, a key, a URL, a policy).
    #[error("{reason}")]
    InvalidInput { code: String, reason: String },
    /// The 402's challenge cannot be paid: malformed, expired, forged, or for another request.
    #[error("{reason}")]
    Challenge { code: String, reason: String },
    /// A service could not be reached or is overloaded: retrying later may work.
    #[error("{reason}")]
    Unavailable { code: String, reason: String },
    /// A service answered with a refusal (`status` is its HTTP status).
    #[error("{reason}")]
    Refused { code: String, reason: String, status: u16 },
    /// A proof token problem reported by a paid API (`token_*`, `payment_required`).
    #[error("{reason}")]
    Token { code: String, reason: String },
    /// A bug or an impossible state.
    #[error("{reason}")]
    Internal { code: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    InsufficientFunds,
    BudgetExceeded,
    NotPaymentRequired,
    InvalidInput,
    Challenge,
    Unavailable,
    Refused,
    Token,
    Internal,
}

/// Every core code and the variant it becomes. A code missing here fails the exhaustiveness
/// test; at run time an unknown (newer) code falls back to `Refused`.
pub(crate) const KINDS: &[(&str, Kind)] = &[
    ("amount_malformed", Kind::InvalidInput),
    ("amount_negative", Kind::InvalidInput),
    ("amount_not_finite", Kind::InvalidInput),
    ("amount_precision", Kind::InvalidInput),
    ("amount_too_large", Kind::InvalidInput),
    ("amount_zero", Kind::InvalidInput),
    ("currency_unsupported", Kind::InvalidInput),
    ("currency_mismatch", Kind::InvalidInput),
    ("challenge_malformed", Kind::Challenge),
    ("challenge_too_large", Kind::Challenge),
    ("challenge_invalid", Kind::Challenge),
    ("challenge_expired", Kind::Challenge),
    ("challenge_mismatch", Kind::Challenge),
    ("wallet_key_invalid", Kind::InvalidInput),
    ("address_invalid", Kind::InvalidInput),
    ("signature_invalid", Kind::Refused),
    ("payment_required", Kind::Token),
    ("token_malformed", Kind::Token),
    ("token_too_large", Kind::Token),
    ("token_algorithm", Kind::Token),
    ("token_type", Kind::Token),
    ("token_invalid", Kind::Token),
    ("token_expired", Kind::Token),
    ("token_not_yet_valid", Kind::Token),
    ("token_audience", Kind::Token),
    ("token_mode", Kind::Token),
    ("token_resource", Kind::Token),
    ("token_underpaid", Kind::Token),
    ("token_currency", Kind::Token),
    ("token_replayed", Kind::Token),
    ("nonce_store_full", Kind::Unavailable),
    ("nonce_store_unavailable", Kind::Unavailable),
    ("budget_exceeded", Kind::BudgetExceeded),
    ("insufficient_funds", Kind::InsufficientFunds),
    ("provider_unknown", Kind::Refused),
    ("unauthorized", Kind::Refused),
    ("payment_conflict", Kind::Refused),
    ("top_up_refused", Kind::Refused),
    ("request_too_large", Kind::InvalidInput),
    ("request_malformed", Kind::InvalidInput),
    ("facilitator_unavailable", Kind::Unavailable),
    ("facilitator_untrusted", Kind::Challenge),
    ("payment_in_doubt", Kind::Unavailable),
    ("facilitator_error", Kind::Refused),
    ("authorization_invalid", Kind::Refused),
    ("authorization_used", Kind::Refused),
    ("settlement_failed", Kind::Refused),
    ("not_payment_required", Kind::NotPaymentRequired),
    ("body_not_replayable", Kind::InvalidInput),
    ("price_invalid", Kind::Refused),
    ("config_invalid", Kind::InvalidInput),
    ("mode_mismatch", Kind::Refused),
    ("internal", Kind::Internal),
];

pub(crate) fn kind_of(code: &str) -> Kind {
    KINDS.iter().find(|(c, _)| *c == code).map_or(Kind::Refused, |(_, k)| *k)
}

impl From<CoreError> for VlexivoError {
    fn from(e: CoreError) -> Self {
        let code = e.code().to_string();
        let reason = e.to_string();
        match e {
            CoreError::InsufficientFunds { required, balance, currency } => {
                return VlexivoError::InsufficientFunds { code, reason, required, balance, currency };
            }
            CoreError::BudgetExceeded { limit, requested, remaining } => {
                return VlexivoError::BudgetExceeded {
                    code,
                    reason,
                    limit: limit.as_str().to_string(),
                    requested,
                    remaining,
                };
            }
            _ => {}
        }
        let status = e.http_status();
        match kind_of(&code) {
            Kind::NotPaymentRequired => VlexivoError::NotPaymentRequired { code, reason },
            Kind::InvalidInput => VlexivoError::InvalidInput { code, reason },
            Kind::Challenge => VlexivoError::Challenge { code, reason },
            Kind::Unavailable => VlexivoError::Unavailable { code, reason },
            Kind::Token => VlexivoError::Token { code, reason },
            Kind::Internal => VlexivoError::Internal { code, reason },
            // The two data-carrying kinds were handled above; reaching them here would mean a
            // core error whose code and variant disagree.
            Kind::Refused | Kind::InsufficientFunds | Kind::BudgetExceeded => {
                VlexivoError::Refused { code, reason, status }
            }
        }
    }
}

impl VlexivoError {
    /// The core's stable code (the same in every language and on the wire).
    pub fn code(&self) -> &str {
        match self {
            VlexivoError::InsufficientFunds { code, .. }
            | VlexivoError::BudgetExceeded { code, .. }
            | VlexivoError::NotPaymentRequired { code, .. }
            | VlexivoError::InvalidInput { code, .. }
            | VlexivoError::Challenge { code, .. }
            | VlexivoError::Unavailable { code, .. }
            | VlexivoError::Refused { code, .. }
            | VlexivoError::Token { code, .. }
            | VlexivoError::Internal { code, .. } => code,
        }
    }

    #[cfg(test)]
    pub(crate) fn kind(&self) -> Kind {
        match self {
            VlexivoError::InsufficientFunds { .. } => Kind::InsufficientFunds,
            VlexivoError::BudgetExceeded { .. } => Kind::BudgetExceeded,
            VlexivoError::NotPaymentRequired { .. } => Kind::NotPaymentRequired,
            VlexivoError::InvalidInput { .. } => Kind::InvalidInput,
            VlexivoError::Challenge { .. } => Kind::Challenge,
            VlexivoError::Unavailable { .. } => Kind::Unavailable,
            VlexivoError::Refused { .. } => Kind::Refused,
            VlexivoError::Token { .. } => Kind::Token,
            VlexivoError::Internal { .. } => Kind::Internal,
        }
    }
}

/// Every code the core can report, for apps' and tests' exhaustive handling.
#[uniffi::export]
pub fn error_codes() -> Vec<String> {
    CoreError::ALL_CODES.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// One core error per code, from core's own code table. A code core adds without a
    /// constructor fails here; `table_is_exactly_the_core_codes` catches one KINDS lacks.
    fn sample(code: &str) -> CoreError {
        let details = serde_json::json!({
            "reason": "x", "max": "x", "currency": "usd", "expected": "x", "got": "x",
            "algorithm": "x", "paid": "x", "price": "x",
            "limit": "per_host", "requested": "0.01", "remaining": "0.005",
            "required": "0.01", "balance": "0.004",
            "facilitatorStatus": 502, "facilitatorCode": "x", "facilitatorMessage": "x",
        });
        CoreError::from_code(code, &details)
            .unwrap_or_else(|| panic!("core code {code:?} has no constructor in Error::from_code"))
    }

    #[test]
    fn table_is_exactly_the_core_codes() {
        let core: HashSet<&str> = CoreError::ALL_CODES.iter().copied().collect();
        let ours: HashSet<&str> = KINDS.iter().map(|(c, _)| *c).collect();
        assert_eq!(ours.len(), KINDS.len(), "duplicate code in KINDS");
        assert_eq!(core, ours, "KINDS must list every core code, and only those");
    }

    #[test]
    fn every_code_maps_to_its_variant_and_keeps_its_code() {
        for code in CoreError::ALL_CODES {
            let core = sample(code);
            assert_eq!(core.code(), *code, "sample for {code}");
            let reason = core.to_string();
            let e = VlexivoError::from(core);
            assert_eq!(e.code(), *code);
            assert_eq!(e.kind(), kind_of(code), "{code}");
            assert_eq!(e.to_string(), reason);
        }
    }

    #[test]
    fn insufficient_funds_and_budget_carry_their_numbers() {
        match VlexivoError::from(sample("insufficient_funds")) {
            VlexivoError::InsufficientFunds { required, balance, currency, .. } => {
                assert_eq!(
                    (required.as_str(), balance.as_str(), currency.as_str()),
                    ("0.01", "0.004", "usd")
                );
            }
            other => panic!("{other:?}"),
        }
        match VlexivoError::from(sample("budget_exceeded")) {
            VlexivoError::BudgetExceeded { limit, requested, remaining, .. } => {
                assert_eq!(
                    (limit.as_str(), requested.as_str(), remaining.as_str()),
                    ("per_host", "0.01", "0.005")
                );
            }
            other => panic!("{other:?}"),
        }
        match VlexivoError::from(sample("facilitator_error")) {
            VlexivoError::Refused { status, .. } => assert_eq!(status, 502),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_codes_fall_back_to_refused() {
        assert_eq!(kind_of("some_future_code"), Kind::Refused);
        assert_eq!(error_codes().len(), CoreError::ALL_CODES.len());
    }
}
