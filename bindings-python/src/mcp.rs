//! Core's paid-MCP rules (`vlexivo_core::mcp`) for `vlexivo.mcp`: where the proof, payer hint
//! and receipt ride in `_meta`, and the JSON-RPC error of a refusal both ways. `_meta` and
//! error data cross as JSON text (`json.dumps` of what the MCP SDK parsed from the wire).

use crate::json_to_py;
use pyo3::prelude::*;
use serde_json::Value;
use vlexivo_core::mcp;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The `_meta` key that carries a header's value: `Vlexivo-<X>` is `vlexivo/<x>`.
#[pyfunction]
fn mcp_meta_key(header: &str) -> String {
    mcp::meta_key(header)
}

/// `(proof, payer)` of a call's `_meta` (JSON text): each a string or `None`.
#[pyfunction]
fn mcp_call_meta(meta: &str) -> (Option<String>, Option<String>) {
    let m = mcp::call_meta(&json(meta));
    (m.proof, m.payer)
}

/// The receipt of a paid result's `_meta` (JSON text).
#[pyfunction]
fn mcp_result_receipt(meta: &str) -> Option<String> {
    mcp::result_receipt(&json(meta))
}

/// The `_meta` dict of a call carrying these request headers.
#[pyfunction]
fn mcp_request_meta<'py>(py: Python<'py>, headers: Vec<(String, String)>) -> PyResult<Bound<'py, PyAny>> {
    let m = mcp::request_meta(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    json_to_py(py, &Value::Object(m))
}

/// `(code, message, data)` of the JSON-RPC error for a paywall's refusal (status, JSON body).
#[pyfunction]
fn mcp_rejection_error<'py>(
    py: Python<'py>,
    status: u16,
    body: &str,
) -> PyResult<(i64, String, Bound<'py, PyAny>)> {
    let e = mcp::rejection_error(status, body);
    Ok((e.code, e.message, json_to_py(py, &e.data)?))
}

/// An HTTP answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// `(status, headers, body)` of the HTTP answer a payment-required JSON-RPC error (its code and
/// data as JSON text) stands for; `None` for any other error.
#[pyfunction]
fn mcp_payment_required_answer(code: i64, data: &str) -> Option<Answer> {
    let a = mcp::payment_required_answer(code, &json(data))?;
    Some((a.status, a.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), a.body))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mcp_meta_key, m)?)?;
    m.add_function(wrap_pyfunction!(mcp_call_meta, m)?)?;
    m.add_function(wrap_pyfunction!(mcp_result_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(mcp_request_meta, m)?)?;
    m.add_function(wrap_pyfunction!(mcp_rejection_error, m)?)?;
    m.add_function(wrap_pyfunction!(mcp_payment_required_answer, m)?)?;
    m.add("MCP_PAYMENT_REQUIRED", mcp::PAYMENT_REQUIRED)?;
    m.add("MCP_INTERNAL_ERROR", mcp::INTERNAL_ERROR)?;
    m.add("MCP_PROOF_META", mcp::PROOF_META)?;
    m.add("MCP_PAYER_META", mcp::PAYER_META)?;
    m.add("MCP_RECEIPT_META", mcp::RECEIPT_META)?;
    Ok(())
}
