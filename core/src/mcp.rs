//! Paid MCP tools: where Vlexivo's values ride in MCP messages and the JSON-RPC shape of a
//! refusal (`docs/protocol.md` §7.2), for every binding's MCP adapter. Each header of the HTTP
//! flow is a `_meta` entry (`Vlexivo-Proof` is `_meta["vlexivo/proof"]`); a paywall's refusal is
//! the JSON-RPC error [`PAYMENT_REQUIRED`] whose `data` is the HTTP body plus its `status`, or
//! [`INTERNAL_ERROR`] for a provider-side fault. The payer turns such an error back into the
//! HTTP answer core's payer flow reads.

use serde_json::{Map, Value};

/// JSON-RPC error code of a payment-required answer (the draft MCP payment proposal's).
pub const PAYMENT_REQUIRED: i64 = -32402;
/// JSON-RPC internal error: a provider-side fault (a bad price, the nonce store down).
pub const INTERNAL_ERROR: i64 = -32603;
/// `_meta` key of the proof on a call.
pub const PROOF_META: &str = "vlexivo/proof";
/// `_meta` key of the payer hint on a call.
pub const PAYER_META: &str = "vlexivo/payer";
/// `_meta` key of the receipt on a paid result.
pub const RECEIPT_META: &str = "vlexivo/receipt";

/// The `_meta` key that carries a header's value: `Vlexivo-<X>` is `vlexivo/<x>`.
pub fn meta_key(header: &str) -> String {
    let h = header.to_ascii_lowercase();
    match h.strip_prefix("vlexivo-") {
        Some(rest) => format!("vlexivo/{rest}"),
        None => format!("vlexivo/{h}"),
    }
}

/// The `_meta` object of a call carrying these request headers.
pub fn request_meta<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    headers.into_iter().map(|(k, v)| (meta_key(k), Value::String(v.to_string()))).collect()
}

/// What a paid tool call carries in its `_meta`: anything but a string is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// The proof token (checked by the paywall like a `Vlexivo-Proof` header).
    pub proof: Option<String>,
    /// The payer hint (read by the paywall like a `Vlexivo-Payer` header).
    pub payer: Option<String>,
}

fn string_at(meta: &Value, key: &str) -> Option<String> {
    meta.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The proof and payer hint of a call's `_meta` (any JSON: a non-object has neither).
pub fn call_meta(meta: &Value) -> CallMeta {
    CallMeta { proof: string_at(meta, PROOF_META), payer: string_at(meta, PAYER_META) }
}

/// The receipt of a paid result's `_meta`.
pub fn result_receipt(meta: &Value) -> Option<String> {
    string_at(meta, RECEIPT_META)
}

/// A JSON-RPC error: what a paid tool call answers instead of running the tool.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Value,
}

/// The JSON-RPC error for a paywall's refusal (its HTTP status and JSON body): a 4xx is
/// [`PAYMENT_REQUIRED`] with the body and `status` as `data` (the challenge inside, so the payer
/// can pay); a 5xx is [`INTERNAL_ERROR`] with only `error` and `status` (no provider detail).
pub fn rejection_error(status: u16, body: &str) -> RpcError {
    let body = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let code = body.get("error").and_then(Value::as_str).unwrap_or("internal").to_string();
    let message = body.get("message").and_then(Value::as_str).map(str::to_string);
    if status >= 500 {
        let data = serde_json::json!({ "error": code, "status": status });
        return RpcError { code: INTERNAL_ERROR, message: message.unwrap_or(code), data };
    }
    let mut data = body;
    data.insert("status".into(), Value::from(status));
    RpcError {
        code: PAYMENT_REQUIRED,
        message: message.unwrap_or_else(|| "payment required".into()),
        data: Value::Object(data),
    }
}

/// The HTTP answer a [`PAYMENT_REQUIRED`] error stands for, as core's payer flow reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequiredAnswer {
    /// `data.status` when it is an HTTP error status (4xx), else 402.
    pub status: u16,
    /// `content-type`, and the challenge header when `data.challenge` is a string.
    pub headers: Vec<(&'static str, String)>,
    /// `data` without `status`, as JSON.
    pub body: String,
}

/// The payer's reading of a JSON-RPC error: `None` unless it is [`PAYMENT_REQUIRED`] with an
/// object as `data` (any other error is the caller's to raise as it came).
pub fn payment_required_answer(code: i64, data: &Value) -> Option<PaymentRequiredAnswer> {
    let Value::Object(data) = data else { return None };
    if code != PAYMENT_REQUIRED {
        return None;
    }
    let mut body = data.clone();
    let status = body
        .remove("status")
        .and_then(|s| s.as_u64())
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..500).contains(s))
        .unwrap_or(402);
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(c) = body.get("challenge").and_then(Value::as_str) {
        headers.push((CHALLENGE_HEADER_LC, c.to_string()));
    }
    Some(PaymentRequiredAnswer { status, headers, body: Value::Object(body).to_string() })
}

const CHALLENGE_HEADER_LC: &str = "vlexivo-challenge";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_keys_follow_the_header_names() {
        use crate::headers::{CHALLENGE, PAYER, PROOF, RECEIPT};
        assert_eq!(meta_key(PROOF), PROOF_META);
        assert_eq!(meta_key(PAYER), PAYER_META);
        assert_eq!(meta_key(RECEIPT), RECEIPT_META);
        assert_eq!(CHALLENGE.to_ascii_lowercase(), CHALLENGE_HEADER_LC);
        assert_eq!(meta_key("X-Other"), "vlexivo/x-other");
        let m = request_meta([("Vlexivo-Proof", "t"), ("Vlexivo-Payer", "0xab")]);
        assert_eq!(Value::Object(m), json!({"vlexivo/proof": "t", "vlexivo/payer": "0xab"}));
    }

    #[test]
    fn only_strings_are_read_from_meta() {
        let m = call_meta(&json!({"vlexivo/proof": "a.b.c", "vlexivo/payer": 7, "other": "x"}));
        assert_eq!(m, CallMeta { proof: Some("a.b.c".into()), payer: None });
        for junk in [json!(null), json!([1]), json!("vlexivo/proof"), json!({"vlexivo/proof": {"x": 1}})] {
            assert_eq!(call_meta(&junk), CallMeta::default(), "{junk}");
        }
        assert_eq!(result_receipt(&json!({"vlexivo/receipt": "r"})).as_deref(), Some("r"));
        assert_eq!(result_receipt(&json!({"vlexivo/receipt": false})), None);
    }

    #[test]
    fn a_refusal_round_trips_to_the_payer_and_a_fault_tells_nothing_more() {
        let body = r#"{"error":"token_missing","message":"Payment required: 0.01 usd per-call","price":"0.01","challenge":"eyJ9"}"#;
        let e = rejection_error(402, body);
        assert_eq!((e.code, e.message.as_str()), (PAYMENT_REQUIRED, "Payment required: 0.01 usd per-call"));
        assert_eq!(e.data["status"], 402);
        let a = payment_required_answer(e.code, &e.data).unwrap();
        assert_eq!(a.status, 402);
        assert_eq!(
            serde_json::from_str::<Value>(&a.body).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
        assert!(a.headers.contains(&(CHALLENGE_HEADER_LC, "eyJ9".into())));
        let replay = rejection_error(409, r#"{"error":"token_replayed","message":"m"}"#);
        assert_eq!(payment_required_answer(replay.code, &replay.data).unwrap().status, 409);

        let fault = rejection_error(
            500,
            r#"{"error":"price_invalid","message":"the resolver said -1","detail":"x"}"#,
        );
        assert_eq!(fault.code, INTERNAL_ERROR);
        assert_eq!(fault.data, json!({"error": "price_invalid", "status": 500}));
        assert_eq!(payment_required_answer(fault.code, &fault.data), None);
        let odd = rejection_error(503, "not json");
        assert_eq!(
            (odd.message.as_str(), &odd.data),
            ("internal", &json!({"error": "internal", "status": 503}))
        );
    }

    #[test]
    fn the_payer_reads_only_payment_required_errors_and_sane_statuses() {
        assert_eq!(payment_required_answer(-32600, &json!({"status": 402})), None);
        assert_eq!(payment_required_answer(PAYMENT_REQUIRED, &json!("x")), None);
        for status in [json!(200), json!(500), json!(402.5), json!("409"), json!(-1), json!(70000)] {
            let a = payment_required_answer(PAYMENT_REQUIRED, &json!({"status": status})).unwrap();
            assert_eq!((a.status, a.body.as_str()), (402, "{}"), "{status}");
        }
        let a = payment_required_answer(PAYMENT_REQUIRED, &json!({"challenge": 5})).unwrap();
        assert_eq!(a.headers.len(), 1);
    }
}
