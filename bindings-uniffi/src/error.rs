//! The one error type the bindings throw: `VlexivoException` in Kotlin (a sealed class, one
//! subclass per variant), `VlexivoError` in Swift (an enum). Every variant carries the core's
//! stable snake_case `code` and a human `reason`.
//!
//! The variants are core's error categories (`vlexivo_core::ErrorCategory`, the same grouping as
//! the classes of every other language), plus three with data or meaning of their own:
//! `InsufficientFunds` and `BudgetExceeded` (payment) carry their numbers, `NotPaymentRequired`
//! (request) tells the app to handle the response itself. The tests check every core code lands
//! in the variant of its category.

use vlexivo_core::{Error as CoreError, ErrorCategory};

/// A failure, as Kotlin/Swift see it. (`reason` rather than `message`: Kotlin's `Throwable`
/// already has a `message`, which the generated code fills from these fields.) `status` is the
/// HTTP status core assigns to the code (for `facilitator_error`, the facilitator's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum VlexivoError {
    /// `payment`: the wallet cannot pay: `required` is what this call needs, `balance` what the
    /// wallet has (decimal strings in `currency`). An agent can ask its user for exactly that.
    /// Code `funding_insufficient`: live auto top-up's funding wallet holds less than the top-up
    /// needs, of the token (`usd`) or of gas (`wei`); nothing was sent.
    #[error("{reason}")]
    InsufficientFunds { code: String, reason: String, required: String, balance: String, currency: String },
    /// `payment`: the spending policy refused the payment before anything was signed. `limit` is
    /// `per_call`, `per_host`, `total` or `window`.
    #[error("{reason}")]
    BudgetExceeded { code: String, reason: String, limit: String, requested: String, remaining: String },
    /// `request`: the response is not a Vlexivo 402 (another status, or a 402 of another
    /// scheme): hand it to the app unchanged.
    #[error("{reason}")]
    NotPaymentRequired { code: String, reason: String },
    /// `amount`: an amount or currency that is not acceptable.
    #[error("{reason}")]
    Amount { code: String, reason: String, status: u16 },
    /// `challenge`: the 402's challenge cannot be paid: malformed, expired, forged, for another
    /// request, or naming a facilitator this payer does not trust.
    #[error("{reason}")]
    Challenge { code: String, reason: String, status: u16 },
    /// `wallet`: a wallet key, address or signature.
    #[error("{reason}")]
    Wallet { code: String, reason: String, status: u16 },
    /// `proof`: a proof token problem reported by a paid API (`token_*`, `payment_required`).
    #[error("{reason}")]
    Proof { code: String, reason: String, status: u16 },
    /// `payment`: the payment was refused (conflict, top-up) or its fate is unknown
    /// (`payment_in_doubt`).
    #[error("{reason}")]
    Payment { code: String, reason: String, status: u16 },
    /// `facilitator`: the facilitator refused this caller, failed, or could not be reached.
    #[error("{reason}")]
    Facilitator { code: String, reason: String, status: u16 },
    /// `nonce_store`: a paid API's nonce store is full or unreachable: retry later.
    #[error("{reason}")]
    NonceStore { code: String, reason: String, status: u16 },
    /// `request`: a request that cannot be made or sent again.
    #[error("{reason}")]
    Request { code: String, reason: String, status: u16 },
    /// `config`: bad options, a mode mismatch, or an invalid provider price.
    #[error("{reason}")]
    Config { code: String, reason: String, status: u16 },
    /// `internal`: a bug or an impossible state.
    #[error("{reason}")]
    Internal { code: String, reason: String, status: u16 },
}

impl From<CoreError> for VlexivoError {
    fn from(e: CoreError) -> Self {
        let code = e.code().to_string();
        let reason = e.to_string();
        let status = e.http_status();
        match e {
            CoreError::InsufficientFunds { required, balance, currency }
            | CoreError::FundingInsufficient { required, balance, currency, .. } => {
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
            CoreError::NotPaymentRequired => return VlexivoError::NotPaymentRequired { code, reason },
            _ => {}
        }
        match e.category() {
            ErrorCategory::Amount => VlexivoError::Amount { code, reason, status },
            ErrorCategory::Challenge => VlexivoError::Challenge { code, reason, status },
            ErrorCategory::Wallet => VlexivoError::Wallet { code, reason, status },
            ErrorCategory::Proof => VlexivoError::Proof { code, reason, status },
            ErrorCategory::Payment => VlexivoError::Payment { code, reason, status },
            ErrorCategory::Facilitator => VlexivoError::Facilitator { code, reason, status },
            ErrorCategory::NonceStore => VlexivoError::NonceStore { code, reason, status },
            ErrorCategory::Request => VlexivoError::Request { code, reason, status },
            ErrorCategory::Config => VlexivoError::Config { code, reason, status },
            // Internal, and a category a newer core adds before this binding knows it (the
            // tests fail first: every core category has its variant).
            _ => VlexivoError::Internal { code, reason, status },
        }
    }
}

impl VlexivoError {
    /// The core's stable code (the same in every language and on the wire).
    pub fn code(&self) -> &str {
        use VlexivoError::*;
        match self {
            InsufficientFunds { code, .. }
            | BudgetExceeded { code, .. }
            | NotPaymentRequired { code, .. } => code,
            Amount { code, .. }
            | Challenge { code, .. }
            | Wallet { code, .. }
            | Proof { code, .. }
            | Payment { code, .. }
            | Facilitator { code, .. }
            | NonceStore { code, .. }
            | Request { code, .. }
            | Config { code, .. }
            | Internal { code, .. } => code,
        }
    }

    /// The core category this variant stands for.
    pub fn category(&self) -> ErrorCategory {
        use VlexivoError::*;
        match self {
            InsufficientFunds { .. } | BudgetExceeded { .. } | Payment { .. } => ErrorCategory::Payment,
            NotPaymentRequired { .. } | Request { .. } => ErrorCategory::Request,
            Amount { .. } => ErrorCategory::Amount,
            Challenge { .. } => ErrorCategory::Challenge,
            Wallet { .. } => ErrorCategory::Wallet,
            Proof { .. } => ErrorCategory::Proof,
            Facilitator { .. } => ErrorCategory::Facilitator,
            NonceStore { .. } => ErrorCategory::NonceStore,
            Config { .. } => ErrorCategory::Config,
            Internal { .. } => ErrorCategory::Internal,
        }
    }
}

/// Core's category of an error code (`amount`, `challenge`, …, the variant a code becomes), or
/// `null` for a code this core does not have.
#[uniffi::export]
pub fn error_category(code: String) -> Option<String> {
    CoreError::category_of(&code).map(|c| c.as_str().to_string())
}

/// Every error category core has.
#[uniffi::export]
pub fn error_categories() -> Vec<String> {
    ErrorCategory::ALL.iter().map(|c| c.as_str().to_string()).collect()
}

/// Header names as core spells them (case-insensitive on the wire), for apps that use their own
/// HTTP stack.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HeaderNames {
    pub challenge: String,
    pub proof: String,
    pub receipt: String,
}

#[uniffi::export]
pub fn header_names() -> HeaderNames {
    use vlexivo_core::headers;
    HeaderNames {
        challenge: headers::CHALLENGE.into(),
        proof: headers::PROOF.into(),
        receipt: headers::RECEIPT.into(),
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

    /// One core error per code, from core's own code table.
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
    fn every_code_becomes_the_variant_of_its_category() {
        let mut categories = HashSet::new();
        for code in CoreError::ALL_CODES {
            let core = sample(code);
            let (category, reason) = (core.category(), core.to_string());
            let e = VlexivoError::from(core);
            assert_eq!(e.code(), *code);
            assert_eq!(e.category(), category, "{code} is a {} error", category.as_str());
            assert_eq!(e.to_string(), reason);
            assert_eq!(error_category(code.to_string()).as_deref(), Some(category.as_str()));
            categories.insert(e.category());
        }
        // Every category is reached, so none falls into `Internal` for want of a variant.
        assert_eq!(categories.len(), ErrorCategory::ALL.len());
        assert_eq!(error_categories().len(), ErrorCategory::ALL.len());
        assert_eq!(error_category("some_future_code".into()), None);
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
        let funding = CoreError::FundingInsufficient {
            address: "0xabc".into(),
            required: "0.01".into(),
            balance: "0".into(),
            currency: "usd".into(),
        };
        match VlexivoError::from(funding) {
            VlexivoError::InsufficientFunds { code, required, balance, currency, .. } => {
                assert_eq!(
                    (code.as_str(), required.as_str(), balance.as_str(), currency.as_str()),
                    ("funding_insufficient", "0.01", "0", "usd")
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
            VlexivoError::Facilitator { status, .. } => assert_eq!(status, 502),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            VlexivoError::from(sample("not_payment_required")),
            VlexivoError::NotPaymentRequired { .. }
        ));
    }

    #[test]
    fn header_names_are_core_s() {
        let h = header_names();
        assert_eq!(
            (h.challenge.as_str(), h.proof.as_str(), h.receipt.as_str()),
            (vlexivo_core::headers::CHALLENGE, vlexivo_core::headers::PROOF, vlexivo_core::headers::RECEIPT)
        );
    }
}
