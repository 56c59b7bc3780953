//! Core's paid-MCP rules (`vlexivo_core::mcp`) for the TypeScript adapter (`vlexivo/mcp`):
//! where the proof, payer hint and receipt ride in `_meta`, and the JSON-RPC error of a refusal
//! both ways.

use napi_derive::napi;
use serde_json::Value;
use std::collections::HashMap;
use vlexivo_core::mcp;

/// The JSON-RPC codes and `_meta` keys of paid MCP tools.
#[napi(object)]
pub struct McpNames {
    pub payment_required: i32,
    pub internal_error: i32,
    pub proof_meta: String,
    pub payer_meta: String,
    pub receipt_meta: String,
}

#[napi(catch_unwind)]
pub fn mcp_names() -> McpNames {
    McpNames {
        payment_required: mcp::PAYMENT_REQUIRED as i32,
        internal_error: mcp::INTERNAL_ERROR as i32,
        proof_meta: mcp::PROOF_META.into(),
        payer_meta: mcp::PAYER_META.into(),
        receipt_meta: mcp::RECEIPT_META.into(),
    }
}

/// The `_meta` key that carries a header's value: `Vlexivo-<X>` is `vlexivo/<x>`.
#[napi(catch_unwind)]
pub fn mcp_meta_key(header: String) -> String {
    mcp::meta_key(&header)
}

/// The proof and payer hint of a call's `_meta`.
#[napi(object)]
pub struct McpCallMeta {
    pub proof: Option<String>,
    pub payer: Option<String>,
}

#[napi(catch_unwind)]
pub fn mcp_call_meta(meta: Option<Value>) -> McpCallMeta {
    let m = mcp::call_meta(meta.as_ref().unwrap_or(&Value::Null));
    McpCallMeta { proof: m.proof, payer: m.payer }
}

/// The receipt of a paid result's `_meta`.
#[napi(catch_unwind)]
pub fn mcp_result_receipt(meta: Option<Value>) -> Option<String> {
    mcp::result_receipt(meta.as_ref().unwrap_or(&Value::Null))
}

/// The `_meta` of a call carrying these request headers.
#[napi(catch_unwind)]
pub fn mcp_request_meta(headers: HashMap<String, String>) -> Value {
    Value::Object(mcp::request_meta(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// A JSON-RPC error.
#[napi(object)]
pub struct McpRpcError {
    pub code: i32,
    pub message: String,
    pub data: Value,
}

/// The JSON-RPC error for a paywall's refusal (its status and JSON body).
#[napi(catch_unwind)]
pub fn mcp_rejection_error(status: u32, body: String) -> McpRpcError {
    let e = mcp::rejection_error(u16::try_from(status).unwrap_or(500), &body);
    McpRpcError { code: e.code as i32, message: e.message, data: e.data }
}

/// The HTTP answer a payment-required JSON-RPC error stands for.
#[napi(object)]
pub struct McpAnswer {
    pub status: u32,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// `null` unless `code` is the payment-required code and `data` an object.
#[napi(catch_unwind)]
pub fn mcp_payment_required_answer(code: f64, data: Option<Value>) -> Option<McpAnswer> {
    if !code.is_finite() || code.fract() != 0.0 {
        return None;
    }
    let a = mcp::payment_required_answer(code as i64, data.as_ref().unwrap_or(&Value::Null))?;
    Some(McpAnswer {
        status: u32::from(a.status),
        headers: a.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        body: a.body,
    })
}
