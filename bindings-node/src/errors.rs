//! `vlexivo_core::Error` ⇄ JS. A thrown error is a plain JS `Error` with `code` (the stable core
//! code), `status` (the HTTP status core assigns), `category` (core's error category),
//! `details` (the variant's fields, camelCase) and `vlexivo: true`; the TypeScript layer turns
//! it into its typed class.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::{Map, Value};
use vlexivo_core::Error as VxError;

/// The variant's fields, for typed errors (`requiredAmount`, `limit`, …): core's table.
pub(crate) fn details_of(e: &VxError) -> Value {
    e.details()
}

/// Build the JS error for `e`, throw it, and return the marker that tells napi an exception is
/// already pending.
pub(crate) fn throw(env: &Env, e: VxError) -> napi::Error {
    let build = || -> Result<Object<'_>> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set("code", e.code())?;
        obj.set("status", u32::from(e.http_status()))?;
        obj.set("category", e.category().as_str())?;
        obj.set("details", details_of(&e))?;
        obj.set("vlexivo", true)?;
        Ok(obj)
    };
    match build().and_then(|obj| env.throw(obj)) {
        Ok(()) => napi::Error::new(Status::PendingException, String::new()),
        Err(_) => napi::Error::new(Status::GenericFailure, format!("{}: {e}", e.code())),
    }
}

/// The core error for a code (and the fields a thrown error carried), so `reject(code)` can
/// answer exactly as core would; `message` is the reason when the details carry none. `None`
/// for a code core does not have.
pub(crate) fn error_from_code(code: &str, d: Option<&Value>, message: Option<&str>) -> Option<VxError> {
    let mut details = d.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    if let (Some(m), Some(obj)) = (message, details.as_object_mut())
        && obj.get("reason").and_then(Value::as_str).is_none_or(str::is_empty)
    {
        obj.insert("reason".into(), Value::String(m.to_string()));
    }
    VxError::from_code(code, &details)
}

/// An error as data (not thrown): what `errorFromBody` and `describeCode` return.
#[napi(object)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub status: u32,
    pub category: String,
    pub details: Value,
}

impl From<&VxError> for ErrorInfo {
    fn from(e: &VxError) -> Self {
        Self {
            code: e.code().to_string(),
            message: e.to_string(),
            status: e.http_status().into(),
            category: e.category().as_str().to_string(),
            details: details_of(e),
        }
    }
}

/// Map a Vlexivo JSON error body (`{"error": code, "message": …}`) from a facilitator or a
/// paywall to the core error, as data.
#[napi(catch_unwind)]
pub fn error_from_body(status: u32, body: Buffer) -> ErrorInfo {
    let status = u16::try_from(status).unwrap_or(500);
    (&vlexivo_core::client::error_from_body(status, &body)).into()
}

/// One row of core's error table.
#[napi(object)]
pub struct ErrorTableRow {
    pub code: String,
    pub status: u32,
    pub category: String,
    /// Core's `is_bad_input()`: the caller passed something invalid.
    pub bad_input: bool,
}

/// Core's error table: every code with its HTTP status and category (`docs/protocol.md` §9).
/// The TypeScript error classes follow it (checked by the test suite).
#[napi]
pub fn error_table() -> Vec<ErrorTableRow> {
    VxError::ALL_CODES
        .iter()
        .filter_map(|c| VxError::from_code(c, &Value::Null))
        .map(|e| ErrorTableRow {
            code: e.code().to_string(),
            status: e.http_status().into(),
            category: e.category().as_str().to_string(),
            bad_input: e.is_bad_input(),
        })
        .collect()
}

/// Every error category core has (`ErrorCategory::ALL`).
#[napi]
pub fn error_categories() -> Vec<String> {
    vlexivo_core::ErrorCategory::ALL.iter().map(|c| c.as_str().to_string()).collect()
}

/// Every error code core has (`Error::ALL_CODES`).
#[napi(catch_unwind)]
pub fn all_codes() -> Vec<String> {
    VxError::ALL_CODES.iter().map(|c| c.to_string()).collect()
}

/// The core error for `code` with these details (status, message), or `null` for an unknown
/// code. `message` is used as the reason of reason-carrying errors when details have none.
#[napi(catch_unwind)]
pub fn describe_code(code: String, details: Option<Value>, message: Option<String>) -> Option<ErrorInfo> {
    error_from_code(&code, details.as_ref(), message.as_deref()).map(|e| (&e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlexivo_core::BudgetLimit;

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
    fn the_table_has_every_code_once() {
        let table = error_table();
        let codes: Vec<&str> = table.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, VxError::ALL_CODES);
        for r in &table {
            assert!(error_categories().contains(&r.category), "{}", r.code);
        }
    }

    #[test]
    fn details_survive() {
        let e = VxError::InsufficientFunds {
            required: "0.01".into(),
            balance: "0".into(),
            currency: "usd".into(),
        };
        assert_eq!(error_from_code("insufficient_funds", Some(&details_of(&e)), None), Some(e));
        let e = VxError::BudgetExceeded {
            limit: BudgetLimit::Window,
            requested: "1".into(),
            remaining: "0.5".into(),
        };
        assert_eq!(error_from_code("budget_exceeded", Some(&details_of(&e)), None), Some(e));
    }
}
