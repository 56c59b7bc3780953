//! A paid request's record, native: every adapter makes one per paid request, and the ASGI
//! middleware's native entry and response watch read it without a Python attribute look-up.

use crate::{NativeError, Payment, Paywall, Price};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyTuple};
use std::sync::atomic::{AtomicBool, Ordering};
use vlexivo_core::response_policy::{Outcome, Settlement};

/// `vlexivo._gate._release_failed`: logs a release the store refused (the rare path).
static RELEASE_FAILED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A paid request: its payment, the gates whose price it covers, and its nonce's fate.
///
/// Held in the ASGI scope / WSGI environ so that every later paywall on the same request (a
/// FastAPI dependency under the middleware, a Flask decorator under the WSGI middleware, a
/// second stacked decorator) only checks that the payment covers its price instead of asking
/// again (`vlexivo._gate.require`).
#[pyclass(frozen, module = "vlexivo._native", name = "Paid")]
pub struct Paid {
    payment: Py<Payment>,
    native: Py<Paywall>,
    price: Py<Price>,
    gates: Py<PyTuple>,
    released: AtomicBool,
}

impl Paid {
    /// A record of a payment `native` took at `price` for `gates`.
    pub(crate) fn new_native(
        payment: Py<Payment>,
        native: Py<Paywall>,
        price: Py<Price>,
        gates: Py<PyTuple>,
    ) -> Self {
        Self { payment, native, price, gates, released: AtomicBool::new(false) }
    }

    pub(crate) fn payment_ref(&self) -> &Py<Payment> {
        &self.payment
    }
}

#[pymethods]
impl Paid {
    /// `gates`: any sequence (kept as a tuple).
    #[new]
    fn new(
        payment: Py<Payment>,
        native: Py<Paywall>,
        price: Py<Price>,
        gates: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let gates = match gates.cast::<PyTuple>() {
            Ok(t) => t.clone(),
            Err(_) => PyTuple::new(gates.py(), gates.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
        };
        Ok(Self::new_native(payment, native, price, gates.unbind()))
    }

    #[getter]
    fn payment(&self, py: Python<'_>) -> Py<Payment> {
        self.payment.clone_ref(py)
    }

    /// The paywall that took it.
    #[getter]
    fn native(&self, py: Python<'_>) -> Py<Paywall> {
        self.native.clone_ref(py)
    }

    /// The price it was taken at.
    #[getter]
    fn price(&self, py: Python<'_>) -> Py<Price> {
        self.price.clone_ref(py)
    }

    /// The gates (`vlexivo._gate.Gate`) whose price it covers.
    #[getter]
    fn gates(&self, py: Python<'_>) -> Py<PyTuple> {
        self.gates.clone_ref(py)
    }

    /// Whether its nonce was given back.
    #[getter]
    fn released(&self) -> bool {
        self.released.load(Ordering::Relaxed)
    }

    fn covers(&self, py: Python<'_>, gate: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.gates.bind(py).contains(gate)
    }

    /// The handler failed: the same proof may be presented again (at most once per request). A
    /// store that cannot give it back is logged, not raised: the response stands.
    pub(crate) fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.released.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let key = self.payment.get().store_key();
        // Through the method, as Python calls it: a panic in the store arrives as a
        // PanicException, which is logged like a store's error.
        match self.native.bind(py).call_method1(pyo3::intern!(py, "release"), (key,)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_instance_of::<NativeError>(py) || e.is_instance_of::<PanicException>(py) => {
                let log = RELEASE_FAILED.import(py, "vlexivo._gate", "_release_failed")?;
                log.call1((&self.payment, e.into_value(py))).map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// The handler ended: core decides from its outcome (`status` 0: no response started)
    /// whether the nonce is released.
    pub(crate) fn settle(&self, py: Python<'_>, status: u16, raised: bool, complete: bool) -> PyResult<()> {
        let outcome = Outcome { status: (status != 0).then_some(status), raised, complete };
        if outcome.settlement() == Settlement::Release {
            return self.release(py);
        }
        Ok(())
    }
}
