//! The ASGI paywall middleware's `send`, native: what it does to the response of every request
//! one of its paywalls may take, without a Python frame (and a coroutine) per message. Core's
//! response policy decides; this only reads the messages and the request's `Paid`.

use crate::paid::Paid;
use crate::{NativeError, Paywall, Price};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::iterator::PySendResult;
use pyo3::types::{PyBytes, PyDict, PyIterator, PyList, PyString, PyTuple, PyType};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use vlexivo_core::response_policy::{self, Outcome, Settlement};

/// `(b"vlexivo-receipt", …)`'s name and the CORS expose header, as ASGI spells them.
static RECEIPT_NAME: PyOnceLock<Py<PyBytes>> = PyOnceLock::new();
static EXPOSE: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
/// The package's already-done awaitable (`vlexivo._asgi._DONE`): a blocked response sends nothing.
static DONE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The middleware's hold on the request's payment, whoever takes it (`vlexivo._asgi._Box`): an
/// object in the scope (`scope["vlexivo.middleware"]`), so that a middleware in between that
/// copies the scope still shares it. `paid`: the request's `Paid` once a paywall took it;
/// `cross_origin`: whether the request carries `Origin` (`None`: not looked at yet).
#[pyclass(module = "vlexivo._native", name = "PaymentBox")]
pub struct PaymentBox {
    #[pyo3(get, set)]
    paid: Option<Py<Paid>>,
    #[pyo3(get, set)]
    cross_origin: Option<bool>,
}

#[pymethods]
impl PaymentBox {
    #[new]
    fn new() -> Self {
        Self { paid: None, cross_origin: None }
    }
}

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
    holder: Py<PaymentBox>,
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
        let (paid, cross) = {
            let holder = self.holder.borrow(py);
            let Some(paid) = &holder.paid else { return Ok(None) };
            (paid.clone_ref(py), holder.cross_origin)
        };
        let paid = paid.get();
        if !response_policy::sends_receipt(status) {
            // A failure (5xx): released before it goes out, so that a client retrying at once
            // finds its proof good again.
            paid.settle(py, status, false, false)?;
            return Ok(None);
        }
        let receipt = PyBytes::new(py, paid.payment_ref().get().receipt().as_bytes());
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
        let cross = match cross {
            Some(cross) => cross,
            None => has_origin(scope)?,
        };
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
        holder: Py<PaymentBox>,
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
        let Some(paid) = self.holder.borrow(py).paid.as_ref().map(|p| p.clone_ref(py)) else {
            return Ok(());
        };
        let status = self.status.load(Ordering::Relaxed);
        let outcome = Outcome {
            status: (status != 0).then_some(status),
            raised,
            complete: self.complete.load(Ordering::Relaxed),
        };
        if outcome.settlement() == Settlement::Release {
            paid.get().release(py)?;
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

/// What the middleware's native entry holds once the app's router is known (set once by the
/// Python side, `_fast_path`).
struct Fast {
    app: Py<PyAny>,
    /// The router's `RouterMap` (`vlexivo._starlette`): whether the route cache may be read
    /// ([`AsgiMiddleware::cache_current`]).
    map: Py<PyAny>,
    /// The middleware's route cache, `(method, root_path, path) -> (leaf, plan)`, which its
    /// `_plan` fills and clears.
    recent: Py<PyDict>,
    check: Py<PyAny>,
    /// The provider's hook for an accepted payment, called when `usage` (what it caches) is
    /// not empty.
    paid_by: Option<Py<PyAny>>,
    usage: Py<PyAny>,
    /// The provider's clock (`None`: the system clock, read by core).
    now: Option<Py<PyAny>>,
}

/// The base of the Python `PaywallMiddleware`: its `__call__`, natively for the common request
/// (an HTTP request the outermost paywall takes, on a route its cache knows, at a fixed price
/// verified in one call, or unpriced), so that the request gets no Python frame of the
/// middleware's; anything else (and everything until `_fast_path` is called) goes to the
/// Python `_call`, which fills the cache. Either way the app is run with a [`ResponseWatch`]:
/// here through [`Watched`], which tells it when the app ended.
#[pyclass(subclass, frozen, module = "vlexivo._native", name = "AsgiMiddleware")]
pub struct AsgiMiddleware {
    fast: OnceLock<Fast>,
}

impl AsgiMiddleware {
    /// Whether the route cache (`(method, root_path, path) -> (leaf, plan)`) may be read for the
    /// router `map` (a `RouterMap`) as it stands: every route of the router matches on the path
    /// alone, and the router has not changed since the middleware's `_generation` of the cache
    /// was filled. The one rule of both entries: the native one reads the cache only then, and
    /// the Python `_plan` (`_cache_current`) reads it only then or after renewing it.
    fn cache_current(slf: &Bound<'_, Self>, map: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let routes = map.getattr(pyo3::intern!(py, "router"))?.getattr(pyo3::intern!(py, "routes"))?.len()?;
        Ok(map.getattr(pyo3::intern!(py, "size"))?.eq(routes)?
            && map.getattr(pyo3::intern!(py, "path_only"))?.is_truthy()?
            && map
                .getattr(pyo3::intern!(py, "generation"))?
                .eq(slf.getattr(pyo3::intern!(py, "_generation"))?)?)
    }

    /// The native path for `scope`: `None` when it is not one it takes (nothing changed).
    fn fast<'py>(
        &self,
        slf: &Bound<'py, Self>,
        scope: &Bound<'py, PyAny>,
        receive: &Bound<'py, PyAny>,
        send: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let Some(fast) = self.fast.get() else { return Ok(None) };
        let Ok(dict) = scope.cast::<PyDict>() else { return Ok(None) };
        let is = |v: Option<Bound<'py, PyAny>>, text: &str| -> bool {
            v.is_some_and(|v| v.cast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == text)))
        };
        if !is(dict.get_item(pyo3::intern!(py, "type"))?, "http")
            || dict.contains(pyo3::intern!(py, "vlexivo.middleware"))?
        {
            return Ok(None);
        }
        let Some(method) = dict.get_item(pyo3::intern!(py, "method"))? else { return Ok(None) };
        if is(Some(method.clone()), "OPTIONS") {
            return Ok(None);
        }
        if !Self::cache_current(slf, fast.map.bind(py))? {
            return Ok(None);
        }
        let root = match dict.get_item(pyo3::intern!(py, "root_path"))? {
            Some(root) => root,
            None => pyo3::intern!(py, "").clone().into_any(),
        };
        let Some(path) = dict.get_item(pyo3::intern!(py, "path"))? else { return Ok(None) };
        let key = PyTuple::new(py, [&method, &root, &path])?;
        let Some(route) = fast.recent.bind(py).get_item(key)? else { return Ok(None) };
        let plan = route.cast::<PyTuple>()?.get_item(1)?;
        let gates = plan.getattr(pyo3::intern!(py, "gates"))?;
        let gates = gates.cast::<PyTuple>()?;
        let mut holder = PaymentBox::new();
        if !gates.is_empty() {
            if !plan.getattr(pyo3::intern!(py, "inline"))?.is_truthy()? {
                return Ok(None);
            }
            let price = plan.getattr(pyo3::intern!(py, "price"))?;
            let gate = gates.get_item(0)?;
            let native = gate.getattr(pyo3::intern!(py, "native"))?;
            let now = match &fast.now {
                Some(clock) => clock.bind(py).call0()?.extract::<Option<u64>>()?,
                None => None,
            };
            let verified = native.cast::<Paywall>()?.get().verify_scope_dict(
                py,
                dict,
                price.cast::<Price>()?.get(),
                now,
            );
            let (payment, cross) = match verified {
                Ok(Some(found)) => found,
                // A scope without raw_path or Host: the Python path reads it (nothing consumed).
                Ok(None) => return Ok(None),
                Err(e) if e.is_instance_of::<NativeError>(py) || e.is_instance_of::<PanicException>(py) => {
                    // Refused: the Python path shapes and sends the answer.
                    let refusal = pyo3::intern!(py, "_refusal");
                    return slf.call_method1(refusal, (plan, scope, send, e.into_value(py), now)).map(Some);
                }
                Err(e) => return Err(e),
            };
            let payment = Bound::new(py, payment)?;
            if let Some(paid_by) = &fast.paid_by
                && fast.usage.bind(py).is_truthy()?
            {
                paid_by.bind(py).call1((&payment,))?;
            }
            let paid = Paid::new_native(
                payment.clone().unbind(),
                native.cast_into::<Paywall>()?.unbind(),
                price.cast_into::<Price>()?.unbind(),
                gates.clone().unbind(),
            );
            let paid = Bound::new(py, paid)?;
            holder.cross_origin = Some(cross);
            holder.paid = Some(paid.clone().unbind());
            dict.set_item(pyo3::intern!(py, "vlexivo.paid"), &paid)?;
            dict.set_item(pyo3::intern!(py, "vlexivo.payment"), &payment)?;
            match dict.get_item(pyo3::intern!(py, "state"))? {
                Some(state) => state.set_item(pyo3::intern!(py, "vlx_payment"), &payment)?,
                None => {
                    let state = PyDict::new(py);
                    state.set_item(pyo3::intern!(py, "vlx_payment"), &payment)?;
                    dict.set_item(pyo3::intern!(py, "state"), state)?;
                }
            }
        }
        let holder = Bound::new(py, holder)?;
        dict.set_item(pyo3::intern!(py, "vlexivo.middleware"), &holder)?;
        let watch = Bound::new(
            py,
            ResponseWatch::new(
                send.clone().unbind(),
                holder.unbind(),
                scope.clone().unbind(),
                Some(fast.check.clone_ref(py)),
                route.unbind(),
            ),
        )?;
        let started = fast.app.bind(py).call1((scope, receive, &watch)).and_then(|app| steps_of(app));
        let steps = match started {
            Ok(steps) => steps,
            Err(e) => {
                // The app failed before it could be awaited: it raised (as `_call` counts it).
                watch.get().ended(py, true)?;
                return Err(e);
            }
        };
        let watched = Watched { steps: steps.unbind(), watch: watch.unbind(), ended: AtomicBool::new(false) };
        Ok(Some(Bound::new(py, watched)?.into_any()))
    }
}

#[pymethods]
impl AsgiMiddleware {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self { fast: OnceLock::new() }
    }

    /// Switch the native path on, once the app's router is known (see [`Fast`]'s fields).
    #[pyo3(signature = (app, map, recent, check, paid_by, usage, now))]
    #[allow(clippy::too_many_arguments)]
    fn _fast_path(
        &self,
        app: Py<PyAny>,
        map: Py<PyAny>,
        recent: Py<PyDict>,
        check: Py<PyAny>,
        paid_by: Option<Py<PyAny>>,
        usage: Py<PyAny>,
        now: Option<Py<PyAny>>,
    ) {
        let _ = self.fast.set(Fast { app, map, recent, check, paid_by, usage, now });
    }

    /// Whether the route cache may be read for the router `map` ([`Self::cache_current`]).
    fn _cache_current(slf: &Bound<'_, Self>, map: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::cache_current(slf, map)
    }

    /// The ASGI entry: the app's awaitable (natively watched), or the Python `_call`'s.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        scope: Bound<'py, PyAny>,
        receive: Bound<'py, PyAny>,
        send: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(awaitable) = slf.get().fast(slf, &scope, &receive, &send)? {
            return Ok(awaitable);
        }
        slf.call_method1(pyo3::intern!(slf.py(), "_call"), (scope, receive, send))
    }
}

/// `types.CoroutineType`.
static COROUTINE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// What steps the app's awaitable: a coroutine itself (every `async def` app), else its
/// `__await__()` iterator.
fn steps_of(app: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyIterator>> {
    let py = app.py();
    if app.get_type().is(COROUTINE.import(py, "types", "CoroutineType")?) {
        // SAFETY: only `PyIter_Send` and the methods `throw` and `close` are used on it, and a
        // coroutine has all three (`PyIter_Send` takes its `am_send` slot). Stepping it directly
        // spares the `__await__()` wrapper object and its extra call per step.
        #[allow(unsafe_code)]
        return Ok(unsafe { app.cast_into_unchecked::<PyIterator>() });
    }
    Ok(app.call_method0(pyo3::intern!(py, "__await__"))?.cast_into::<PyIterator>()?)
}

/// The app's coroutine as the middleware awaits it: each step passed through, and when the app
/// has ended (returned, raised, or was closed) the watch's `ended` called once, as the Python
/// `_call` does around its `await`.
#[pyclass(frozen, module = "vlexivo._native", name = "_Watched")]
pub struct Watched {
    /// The app's coroutine, or its awaitable's `__await__()` iterator ([`steps_of`]).
    steps: Py<PyIterator>,
    watch: Py<ResponseWatch>,
    ended: AtomicBool,
}

impl Watched {
    /// The app ended (`raised`: with an exception): the watch told, once.
    fn end(&self, py: Python<'_>, raised: bool) -> PyResult<()> {
        if self.ended.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        self.watch.get().ended(py, raised)
    }

    /// What a step's outcome makes of this awaitable's: the value yielded, or the end (`None`:
    /// the app returned `None`, which ends the iteration without an exception object).
    fn step<'py>(
        &self,
        py: Python<'py>,
        outcome: PyResult<PySendResult<'py>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match outcome {
            Ok(PySendResult::Next(value)) => Ok(Some(value)),
            Ok(PySendResult::Return(value)) => {
                self.end(py, false)?;
                if value.is_none() {
                    return Ok(None);
                }
                Err(pyo3::exceptions::PyStopIteration::new_err((value.unbind(),)))
            }
            Err(e) => {
                self.end(py, true)?;
                Err(e)
            }
        }
    }

    /// A method of the app's coroutine called with `args` (throw, close): its outcome.
    fn call<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<PySendResult<'py>> {
        match self.steps.bind(py).call_method1(name, args) {
            Ok(value) => Ok(PySendResult::Next(value)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                let value = e.value(py).getattr(pyo3::intern!(py, "value"))?;
                Ok(PySendResult::Return(value))
            }
            Err(e) => Err(e),
        }
    }
}

#[pymethods]
impl Watched {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.step(py, self.steps.bind(py).send(&py.None().into_bound(py)))
    }

    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.step(py, self.steps.bind(py).send(&value))
    }

    #[pyo3(signature = (*args))]
    fn throw<'py>(&self, py: Python<'py>, args: Bound<'py, PyTuple>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let outcome = self.call(py, pyo3::intern!(py, "throw"), &args);
        self.step(py, outcome)
    }

    /// The awaiting coroutine was closed: so is the app's, which then counts as having raised.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let closed = self.steps.bind(py).call_method0(pyo3::intern!(py, "close"));
        self.end(py, true)?;
        closed.map(drop)
    }
}
