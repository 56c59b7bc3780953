//! A live payment checked on chain (`vlexivo.verify_payment`): core builds the JSON-RPC batch
//! and decides on the node's answer (`vlexivo_core::onchain`); Python POSTs it.

use super::{IntoPy, amount_from_py, json_to_py, native_error};
use pyo3::prelude::*;
use vlexivo_core::onchain::{Expected, PaymentCheck};

/// One payment to check: `request()` is the JSON-RPC batch to POST, `answer()` reads the reply.
#[pyclass(frozen, module = "vlexivo._native", name = "PaymentCheck")]
pub(crate) struct PyPaymentCheck {
    inner: PaymentCheck,
}

#[pymethods]
impl PyPaymentCheck {
    /// Checks every input before anything is sent.
    #[new]
    #[pyo3(signature = (tx_hash, token, payer, payee, amount, confirmations = 1, authorization_nonce = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tx_hash: &str,
        token: &str,
        payer: &str,
        payee: &str,
        amount: &Bound<'_, PyAny>,
        confirmations: u64,
        authorization_nonce: Option<&str>,
    ) -> PyResult<Self> {
        let amount = amount_from_py(py, amount, "usd", true)?;
        let expected =
            Expected::parse(token, payer, payee, &amount.to_string(), confirmations, authorization_nonce)
                .py_err(py)?;
        Ok(Self { inner: PaymentCheck::new(tx_hash, expected).py_err(py)? })
    }

    /// The JSON-RPC batch to POST to the node.
    fn request(&self) -> String {
        self.inner.request()
    }

    /// Decide on the node's answer (`status`, `body`), or raise `chain_unavailable` with
    /// `failure` when none came (a reason that must not name the node's URL). A dict of the
    /// verified facts.
    #[pyo3(signature = (status, body, failure = None))]
    fn answer<'py>(
        &self,
        py: Python<'py>,
        status: u16,
        body: &[u8],
        failure: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(why) = failure {
            return Err(native_error(py, self.inner.unreachable(why)));
        }
        let verified = self.inner.answer(status, body).py_err(py)?;
        json_to_py(py, &serde_json::to_value(&verified).unwrap_or_default())
    }
}
