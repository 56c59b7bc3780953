//! The ASGI paywall middleware's `send`, native: what it does to the response of every request
//! one of its paywalls may take, without a Python frame (and a coroutine) per message. Core's
//! response policy decides; this only reads the messages and the request's `Paid`.

use crate::Payment;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use vlexivo_core::response_policy::{self, Outcome, Settlement};

/// `(b"vlexivo-receipt", …)`'s name and the CORS expose header, as ASGI spells them.
static RECEIPT_NAME: PyOnceLock<Py<PyBytes>> = PyOnceLock::new();
static EXPOSE: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
/// The package's already-done awaitable (`vlexivo._asgi._DONE`): a blocked response sends nothing.
static DONE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `send` the middleware hands the app. On `http.response.start`: when `check` is given and
/// the router ran a route other than the priced one (`route`, the middleware's `(leaf, plan)`),
/// `check(scope, leaf, plan, holder, send)` decides (`None`: carry on; an awaitable: the answer
/// sent instead, and nothing of the app's after it). Then, when a paywall took the request
/// (`holder.paid`, a `Paid`), core's policy for the status: the receipt header (and
/// `Access-Control-Expose-Headers` for a request with `Origin`) on a response that keeps the
/// payment, else the nonce released (`Paid.settle`) before the response goes out. It remembers
/// the status and whether the body was complete for [`Self::ended`].
#[pyclass(frozen, module = "vlexivo._native", name = "ResponseWatch")]
pub struct ResponseWatch {
    send: Py<PyAny>,
    holder: Py<PyAny>,
    scope: Py<PyAny>,
    check: Option<Py<PyAny>>,
    route: Py<PyAny>,
    status: AtomicU16,
    complete: AtomicBool,
    blocked: AtomicBool,
}

/// `mapping.get(key)`, with a dict's own lookup when it is one.
fn get<'py>(mapping: &Bound<'py, PyAny>, key: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(d) = mapping.cast::<PyDict>() {
        return d.get_item(key);
    }
    let v = mapping.call_method1(pyo3::intern!(mapping.py(), "get"), (key,))?;
    Ok((!v.is_none()).then_some(v))
}

/// Whether the scope's raw headers carry `Origin`.
fn has_origin(scope: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(headers) = get(scope, pyo3::intern!(scope.py(), "headers"))? else { return Ok(false) };
    Ok(crate::scan_headers(&headers)?.origin)
}

impl ResponseWatch {
    /// The response starts: `Some(answer)` when it is blocked (the answer is what to await).
    fn start<'py>(&self, msg: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = msg.py();
        let scope = self.scope.bind(py);
        if let Some(check) = &self.check {
            let actual = get(scope, pyo3::intern!(py, "route"))?.filter(|r| !r.is_none());
            if let Some(actual) = actual {
                let (leaf, plan): (Bound<'py, PyAny>, Bound<'py, PyAny>) = self.route.bind(py).extract()?;
                if leaf.is_none() || !actual.is(&leaf.getattr(pyo3::intern!(py, "route"))?) {
                    let answer = check.bind(py).call1((scope, leaf, plan, &self.holder, &self.send))?;
                    if !answer.is_none() {
                        self.blocked.store(true, Ordering::Relaxed);
                        return Ok(Some(answer));
                    }
                }
            }
        }
        let status: u16 = msg.get_item(pyo3::intern!(py, "status"))?.extract()?;
        self.status.store(status, Ordering::Relaxed);
        let holder = self.holder.bind(py);
        let paid = holder.getattr(pyo3::intern!(py, "paid"))?;
        if paid.is_none() {
            return Ok(None);
        }
        if !response_policy::sends_receipt(status) {
            // A failure (5xx): released before it goes out, so that a client retrying at once
            // finds its proof good again.
            paid.call_method1(pyo3::intern!(py, "settle"), (status, false, false))?;
            return Ok(None);
        }
        let payment = paid.getattr(pyo3::intern!(py, "payment"))?;
        let receipt = PyBytes::new(py, payment.cast::<Payment>()?.get().receipt.as_bytes());
        // A new list: the app may reuse its own (Starlette passes response.raw_headers).
        let headers = match get(msg, pyo3::intern!(py, "headers"))? {
            Some(theirs) => match theirs.cast::<PyList>() {
                Ok(list) => list.get_slice(0, list.len()),
                Err(_) => PyList::new(py, theirs.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
            },
            None => PyList::empty(py),
        };
        let name = RECEIPT_NAME.get_or_init(py, || {
            PyBytes::new(py, vlexivo_core::headers::RECEIPT.to_ascii_lowercase().as_bytes()).unbind()
        });
        headers.append((name, receipt))?;
        let cross = holder.getattr(pyo3::intern!(py, "cross_origin"))?;
        let cross = if cross.is_none() { has_origin(scope)? } else { cross.is_truthy()? };
        if vlexivo_core::response_policy::exposes_headers(cross) {
            let expose = EXPOSE.get_or_try_init(py, || {
                let pair = (
                    PyBytes::new(py, b"access-control-expose-headers"),
                    PyBytes::new(py, vlexivo_core::headers::EXPOSE.as_bytes()),
                );
                PyResult::Ok(pair.into_pyobject(py)?.unbind())
            })?;
            headers.append(expose)?;
        }
        msg.set_item(pyo3::intern!(py, "headers"), headers)?;
        Ok(None)
    }
}

#[pymethods]
impl ResponseWatch {
    #[new]
    #[pyo3(signature = (send, holder, scope, check, route))]
    fn new(
        send: Py<PyAny>,
        holder: Py<PyAny>,
        scope: Py<PyAny>,
        check: Option<Py<PyAny>>,
        route: Py<PyAny>,
    ) -> Self {
        let status = AtomicU16::new(0);
        let (complete, blocked) = (AtomicBool::new(false), AtomicBool::new(false));
        Self { send, holder, scope, check, route, status, complete, blocked }
    }

    /// Send `msg` (as seen above): returns what to await, the server's send's awaitable mostly.
    fn __call__<'py>(&self, msg: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = msg.py();
        if self.blocked.load(Ordering::Relaxed) {
            return DONE.import(py, "vlexivo._asgi", "_DONE").cloned();
        }
        let kind = msg.get_item(pyo3::intern!(py, "type"))?;
        match kind.cast::<PyString>().ok().and_then(|k| k.to_str().ok()) {
            Some("http.response.start") => {
                if let Some(answer) = self.start(&msg)? {
                    return Ok(answer);
                }
            }
            Some("http.response.body") => {
                let more = get(&msg, pyo3::intern!(py, "more_body"))?;
                if !more.map(|m| m.is_truthy()).transpose()?.unwrap_or(false) {
                    self.complete.store(true, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        self.send.bind(py).call1((msg,))
    }

    /// The app has ended (`raised`: with an exception): when a paywall took the request, core
    /// decides from the outcome whether its nonce is released (`Paid.release`).
    fn ended(&self, py: Python<'_>, raised: bool) -> PyResult<()> {
        let paid = self.holder.bind(py).getattr(pyo3::intern!(py, "paid"))?;
        if paid.is_none() {
            return Ok(());
        }
        let status = self.status.load(Ordering::Relaxed);
        let outcome = Outcome {
            status: (status != 0).then_some(status),
            raised,
            complete: self.complete.load(Ordering::Relaxed),
        };
        if outcome.settlement() == Settlement::Release {
            paid.call_method0(pyo3::intern!(py, "release"))?;
        }
        Ok(())
    }

    /// The status of the response the app started (0: none yet).
    #[getter]
    fn status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }

    /// Whether the app sent the response's last body message.
    #[getter]
    fn complete(&self) -> bool {
        self.complete.load(Ordering::Relaxed)
    }
}
