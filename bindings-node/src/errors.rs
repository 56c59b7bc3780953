//! `vlexivo_core::Error` ⇄ JS. A thrown error is a plain JS `Error` with `code` (the stable core
//! code), `status` (the HTTP status core assigns), `details` (the variant's fields, camelCase)
//! and `vlexivo: true`; the TypeScript layer turns it into its typed class.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::{Map, Value, json};
use vlexivo_core::{BudgetLimit, Error as VxError};

/// The variant's fields, for typed errors (`requiredAmount`, `limit`, …).
pub(crate) fn details_of(e: &VxError) -> Value {
    use VxError::*;
    match e {
        AmountMalformed(s) => json!({ "reason": s }),
        AmountPrecision { max_decimals } => json!({ "maxDecimals": max_decimals }),
        AmountTooLarge { max } => json!({ "max": max }),
        CurrencyUnsupported(c) => json!({ "currency": c }),
        CurrencyMismatch { expected, got } | ModeMismatch { expected, got } => {
            json!({ "expected": expected, "got": got })
        }
        ChallengeMalformed(why) | ChallengeMismatch(why) | TokenMalformed(why) => {
            json!({ "reason": why })
        }
        ChallengeTooLarge { limit } | TokenTooLarge { limit } | RequestTooLarge { limit } => {
            json!({ "limit": limit })
        }
        TokenAlgorithm(alg) => json!({ "algorithm": alg }),
        TokenUnderpaid { paid, price } | TokenCurrency { paid, price } => {
            json!({ "paid": paid, "price": price })
        }
        NonceStoreUnavailable(why) | TopUpRefused(why) | RequestMalformed(why)
        | FacilitatorUnavailable(why) | PriceInvalid(why) | Config(why) | Internal(why) => {
            json!({ "reason": why })
        }
        BudgetExceeded { limit, requested, remaining } => {
            json!({ "limit": limit.as_str(), "requested": requested, "remaining": remaining })
        }
        InsufficientFunds { required, balance, currency } => {
            json!({ "required": required, "balance": balance, "currency": currency })
        }
        FacilitatorError { status, code, message } => {
            json!({ "facilitatorStatus": status, "facilitatorCode": code, "facilitatorMessage": message })
        }
        _ => Value::Object(Map::new()),
    }
}

/// Build the JS error for `e`, throw it, and return the marker that tells napi an exception is
/// already pending.
pub(crate) fn throw(env: &Env, e: VxError) -> napi::Error {
    let build = || -> Result<Object<'_>> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set("code", e.code())?;
        obj.set("status", u32::from(e.http_status()))?;
        obj.set("details", details_of(&e))?;
        obj.set("vlexivo", true)?;
        Ok(obj)
    };
    match build().and_then(|obj| env.throw(obj)) {
        Ok(()) => napi::Error::new(Status::PendingException, String::new()),
        Err(_) => napi::Error::new(Status::GenericFailure, format!("{}: {e}", e.code())),
    }
}

fn field(details: Option<&Value>, key: &str) -> String {
    match details.and_then(|d| d.get(key)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn num(details: Option<&Value>, key: &str, default: u64) -> u64 {
    details.and_then(|d| d.get(key)).and_then(Value::as_u64).unwrap_or(default)
}

/// The core error for a code (and the fields a thrown error carried), so `reject(code)` can
/// answer exactly as core would. `None` for a code core does not have. Reasons that core keeps
/// as static strings come back as a generic reason.
pub(crate) fn error_from_code(code: &str, d: Option<&Value>, message: Option<&str>) -> Option<VxError> {
    use VxError::*;
    let reason = || {
        let r = field(d, "reason");
        if r.is_empty() { message.unwrap_or_default().to_string() } else { r }
    };
    let limit = |default| num(d, "limit", default) as usize;
    Some(match code {
        "amount_malformed" => AmountMalformed(reason()),
        "amount_negative" => AmountNegative,
        "amount_not_finite" => AmountNotFinite,
        "amount_precision" => AmountPrecision { max_decimals: num(d, "maxDecimals", 6) as u32 },
        "amount_too_large" => AmountTooLarge { max: field(d, "max") },
        "amount_zero" => AmountZero,
        "currency_unsupported" => CurrencyUnsupported(field(d, "currency")),
        "currency_mismatch" => CurrencyMismatch { expected: field(d, "expected"), got: field(d, "got") },
        "challenge_malformed" => ChallengeMalformed("rejected"),
        "challenge_too_large" => ChallengeTooLarge { limit: limit(4096) },
        "challenge_invalid" => ChallengeInvalid,
        "challenge_expired" => ChallengeExpired,
        "challenge_mismatch" => ChallengeMismatch("request"),
        "wallet_key_invalid" => WalletKeyInvalid,
        "address_invalid" => AddressInvalid,
        "signature_invalid" => SignatureInvalid,
        "payment_required" => TokenMissing,
        "token_malformed" => TokenMalformed("rejected"),
        "token_too_large" => TokenTooLarge { limit: limit(4096) },
        "token_algorithm" => TokenAlgorithm(field(d, "algorithm")),
        "token_type" => TokenType,
        "token_invalid" => TokenInvalid,
        "token_expired" => TokenExpired,
        "token_not_yet_valid" => TokenNotYetValid,
        "token_audience" => TokenAudience,
        "token_mode" => TokenMode,
        "token_resource" => TokenResource,
        "token_underpaid" => TokenUnderpaid { paid: field(d, "paid"), price: field(d, "price") },
        "token_currency" => TokenCurrency { paid: field(d, "paid"), price: field(d, "price") },
        "token_replayed" => TokenReplayed,
        "nonce_store_full" => NonceStoreFull,
        "nonce_store_unavailable" => NonceStoreUnavailable(reason()),
        "budget_exceeded" => BudgetExceeded {
            limit: match field(d, "limit").as_str() {
                "per_host" => BudgetLimit::PerHost,
                "total" => BudgetLimit::Total,
                "window" => BudgetLimit::Window,
                _ => BudgetLimit::PerCall,
            },
            requested: field(d, "requested"),
            remaining: field(d, "remaining"),
        },
        "insufficient_funds" => InsufficientFunds {
            required: field(d, "required"),
            balance: field(d, "balance"),
            currency: {
                let c = field(d, "currency");
                if c.is_empty() { "usd".into() } else { c }
            },
        },
        "provider_unknown" => ProviderUnknown,
        "unauthorized" => Unauthorized,
        "payment_conflict" => PaymentConflict,
        "top_up_refused" => TopUpRefused(reason()),
        "request_too_large" => RequestTooLarge { limit: limit(65536) },
        "request_malformed" => RequestMalformed(reason()),
        "facilitator_unavailable" => FacilitatorUnavailable(reason()),
        "facilitator_error" => FacilitatorError {
            status: u16::try_from(num(d, "facilitatorStatus", 502)).unwrap_or(502),
            code: field(d, "facilitatorCode"),
            message: field(d, "facilitatorMessage"),
        },
        "not_payment_required" => NotPaymentRequired,
        "body_not_replayable" => BodyNotReplayable,
        "price_invalid" => PriceInvalid(reason()),
        "config_invalid" => Config(reason()),
        "mode_mismatch" => ModeMismatch { expected: field(d, "expected"), got: field(d, "got") },
        "internal" => Internal(reason()),
        _ => return None,
    })
}

/// An error as data (not thrown): what `errorFromBody` and `describeCode` return.
#[napi(object)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub status: u32,
    pub details: Value,
}

impl From<&VxError> for ErrorInfo {
    fn from(e: &VxError) -> Self {
        Self {
            code: e.code().to_string(),
            message: e.to_string(),
            status: e.http_status().into(),
            details: details_of(e),
        }
    }
}

/// Map a Vlexivo JSON error body (`{"error": code, "message": …}`) from a facilitator or a
/// paywall to the core error, as data.
#[napi]
pub fn error_from_body(status: u32, body: Buffer) -> ErrorInfo {
    let status = u16::try_from(status).unwrap_or(500);
    (&vlexivo_core::client::error_from_body(status, &body)).into()
}

/// Every error code core has (`Error::ALL_CODES`).
#[napi]
pub fn all_codes() -> Vec<String> {
    VxError::ALL_CODES.iter().map(|c| c.to_string()).collect()
}

/// The core error for `code` with these details (status, message), or `null` for an unknown
/// code. `message` is used as the reason of reason-carrying errors when details have none.
#[napi]
pub fn describe_code(code: String, details: Option<Value>, message: Option<String>) -> Option<ErrorInfo> {
    error_from_code(&code, details.as_ref(), message.as_deref()).map(|e| (&e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in VxError::ALL_CODES {
            let e = error_from_code(code, None, None).unwrap_or_else(|| panic!("no mapping for {code}"));
            assert_eq!(e.code(), *code);
            let again = error_from_code(code, Some(&details_of(&e)), None).unwrap();
            assert_eq!(again.code(), *code);
            assert_eq!(again.http_status(), e.http_status());
        }
        assert!(error_from_code("nope", None, None).is_none());
    }

    #[test]
    fn details_survive() {
        let e = VxError::InsufficientFunds { required: "0.01".into(), balance: "0".into(), currency: "usd".into() };
        assert_eq!(error_from_code("insufficient_funds", Some(&details_of(&e)), None), Some(e));
        let e = VxError::BudgetExceeded {
            limit: BudgetLimit::Window,
            requested: "1".into(),
            remaining: "0.5".into(),
        };
        assert_eq!(error_from_code("budget_exceeded", Some(&details_of(&e)), None), Some(e));
    }
}
