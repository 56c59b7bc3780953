//! A live payment checked on chain (`vlexivo.verify_payment`): core builds the JSON-RPC batch
//! and decides on the node's answer (`vlexivo_core::onchain`); Python POSTs it.

use super::{IntoPy, amount_from_py, json_to_py, native_error};
use pyo3::prelude::*;
use vlexivo_core::onchain::{Expected, PaymentCheck};

#[allow(clippy::too_many_arguments)]
fn check_of(
    py: Python<'_>,
    tx_hash: &str,
    token: &str,
    payer: &str,
    payee: &str,
    amount: &Bound<'_, PyAny>,
    confirmations: u64,
    authorization_nonce: Option<&str>,
) -> PyResult<PaymentCheck> {
    let amount = amount_from_py(py, amount, "usd", true)?;
    let expected =
        Expected::parse(token, payer, payee, &amount.to_string(), confirmations, authorization_nonce)
            .py_err(py)?;
    PaymentCheck::new(tx_hash, expected).py_err(py)
}

/// The JSON-RPC batch to POST to the node (checks every input first).
#[pyfunction]
#[pyo3(signature = (tx_hash, token, payer, payee, amount, confirmations = 1, authorization_nonce = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn payment_check_request(
    py: Python<'_>,
    tx_hash: &str,
    token: &str,
    payer: &str,
    payee: &str,
    amount: &Bound<'_, PyAny>,
    confirmations: u64,
    authorization_nonce: Option<&str>,
) -> PyResult<String> {
    Ok(check_of(py, tx_hash, token, payer, payee, amount, confirmations, authorization_nonce)?.request())
}

/// Decide on the node's answer (`status`, `body`), or raise `chain_unavailable` with `failure`
/// when none came (a reason that must not name the node's URL). A dict of the verified facts.
#[pyfunction]
#[pyo3(signature = (tx_hash, token, payer, payee, amount, confirmations, authorization_nonce, status, body, failure = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn payment_check_answer<'py>(
    py: Python<'py>,
    tx_hash: &str,
    token: &str,
    payer: &str,
    payee: &str,
    amount: &Bound<'py, PyAny>,
    confirmations: u64,
    authorization_nonce: Option<&str>,
    status: u16,
    body: &[u8],
    failure: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let check = check_of(py, tx_hash, token, payer, payee, amount, confirmations, authorization_nonce)?;
    if let Some(why) = failure {
        return Err(native_error(py, check.unreachable(why)));
    }
    let verified = check.answer(status, body).py_err(py)?;
    json_to_py(py, &serde_json::to_value(&verified).unwrap_or_default())
}
