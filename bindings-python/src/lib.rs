//! `vlexivo._native`: the pyo3 module under the `vlexivo` Python package.
//!
//! Thin on purpose: it converts types and carries `vlexivo_core::Error` out as one native
//! exception (`NativeError`, with `.code`, `.status`, `.bad_input`, `.fields`); the pure-Python
//! layer maps it onto the public exception hierarchy and implements the framework adapters.
//! Every decision (prices, tokens, nonces, budgets, challenges) is core's.

use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple, PyType};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use vlexivo_core::client as vclient;
use vlexivo_core::env::{Clock, Entropy, OsEntropy, SystemClock};
use vlexivo_core::keys::Mode;
use vlexivo_core::paywall::{self as vpaywall, PaywallConfig, RequestInfo};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::response_policy;
use vlexivo_core::store::NonceStore;
use vlexivo_core::{Currency, Error, Money};

mod asgi;
mod mcp;
mod onchain;
mod paid;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

// The one exception the native module raises. The Python layer re-raises it as the matching
// `vlexivo.VlexivoError` subclass; `reject()` accepts it back to shape the HTTP answer. (Under
// the stable ABI a Rust class cannot extend `Exception`, so the core error rides along in a
// hidden `_error` attribute and the public facts are plain attributes.)
pyo3::create_exception!(
    _native,
    NativeError,
    PyException,
    "A vlexivo-core error: .code, .status, .category, .message, .bad_input, .details."
);

/// Holder of the core error inside a `NativeError` (private).
#[pyclass(frozen, module = "vlexivo._native", name = "_ErrorBox")]
struct ErrorBox {
    err: Error,
}

/// A JSON value as the Python value `json.loads` would give.
fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        J::String(s) => pyo3::types::PyString::new(py, s).into_any(),
        J::Array(a) => {
            let l = pyo3::types::PyList::empty(py);
            for x in a {
                l.append(json_to_py(py, x)?)?;
            }
            l.into_any()
        }
        J::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

fn native_error_value(py: Python<'_>, err: Error) -> PyResult<Bound<'_, PyAny>> {
    let exc = py.get_type::<NativeError>().call1((err.to_string(),))?;
    exc.setattr("code", err.code())?;
    exc.setattr("status", err.http_status())?;
    exc.setattr("message", err.to_string())?;
    exc.setattr("bad_input", err.is_bad_input())?;
    exc.setattr("category", err.category().as_str())?;
    // Core's table of the variant's fields, with core's keys (the same as JS `details`).
    exc.setattr("details", json_to_py(py, &err.details())?)?;
    exc.setattr("_error", Bound::new(py, ErrorBox { err })?)?;
    Ok(exc)
}

fn native_error(py: Python<'_>, err: Error) -> PyErr {
    match native_error_value(py, err) {
        Ok(obj) => PyErr::from_value(obj),
        Err(e) => e,
    }
}

/// `core::Result` → `PyResult`, raising `NativeError`.
trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| native_error(py, e))
    }
}

/// An error of the given code, for codes that the Python layer itself decides (a resolver's
/// bad price, a handler crash, a body over the limit) and for the exhaustive mapping test.
/// Every entry of `Error::ALL_CODES` has a constructor here (checked by a test).
fn error_for_code(code: &str, msg: &str) -> Option<Error> {
    // Core's one table; `msg` is the reason of reason-carrying errors.
    Error::from_code(code, &serde_json::json!({ "reason": msg }))
}

/// A `NativeError` instance (not raised) for `code`; `message` fills the error's free-text
/// detail. Unknown codes are a `ValueError`.
#[pyfunction]
#[pyo3(signature = (code, message = ""))]
fn error_for<'py>(py: Python<'py>, code: &str, message: &str) -> PyResult<Bound<'py, PyAny>> {
    let err = error_for_code(code, message)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("unknown error code {code:?}")))?;
    native_error_value(py, err)
}

/// The value of a `VLX_*` variable (core's `envvars` table) in `environ` (a mapping such as
/// `os.environ`): its name first, then its older aliases; `None` when unset. Both set to
/// different values, or a name the table does not have, raises `config_invalid`.
#[pyfunction]
fn env_var(py: Python<'_>, name: &str, environ: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let Some(var) = vlexivo_core::envvars::by_name(name) else {
        return Err(native_error(py, Error::Config(format!("{name} is not a Vlexivo environment variable"))));
    };
    let mut seen = std::collections::HashMap::new();
    for n in std::iter::once(&var.name).chain(var.aliases) {
        let v = environ.call_method1("get", (*n,))?;
        if !v.is_none() {
            seen.insert(*n, v.extract::<String>()?);
        }
    }
    var.read(|n| seen.get(n).cloned()).py_err(py)
}

/// Map a Vlexivo JSON error body (from a facilitator or a paywall) to a `NativeError` instance.
/// The answer as a browser should get it (core's `paywall_page::browser_page`): a 402 challenge
/// to a request without a proof whose `Accept` prefers HTML gets the HTML page, with the page's
/// headers (`Content-Type` among them) after the answer's own; any other answer is unchanged.
#[pyfunction]
#[pyo3(signature = (answer, accept, proof_present))]
fn for_browser(
    answer: (u16, Vec<(String, String)>, String),
    accept: Option<&str>,
    proof_present: bool,
) -> (u16, Vec<(String, String)>, String) {
    let (status, mut headers, body) = answer;
    match vlexivo_core::paywall_page::browser_page(status, &body, accept, proof_present) {
        Some(page) => {
            headers.extend(page.headers.into_iter().map(|(k, v)| (k.to_string(), v)));
            (status, headers, page.body)
        }
        None => (status, headers, body),
    }
}

#[pyfunction]
fn error_from_body<'py>(py: Python<'py>, status: u16, body: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    native_error_value(py, vclient::error_from_body(status, body))
}

fn error_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Error> {
    if let Ok(boxed) = obj.getattr("_error")
        && let Ok(b) = boxed.cast::<ErrorBox>()
    {
        return Ok(b.get().err.clone());
    }
    if let Ok(code) = obj.extract::<String>() {
        return error_for_code(&code, "")
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("unknown error code {code:?}")));
    }
    Err(PyTypeError::new_err("expected a NativeError or an error code"))
}

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

/// An exact amount of one currency.
#[pyclass(frozen, eq, hash, module = "vlexivo._native", name = "Price")]
#[derive(PartialEq, Eq, Hash)]
pub struct Price {
    money: Money,
}

#[pymethods]
impl Price {
    /// Canonical decimal string ("0.001").
    #[getter]
    fn amount(&self) -> String {
        self.money.to_string()
    }
    #[getter]
    fn currency(&self) -> &'static str {
        self.money.currency().code()
    }
    /// Atomic units of the settlement asset (1 = $0.000001 for usd).
    #[getter]
    fn atomic(&self) -> u64 {
        self.money.to_atomic()
    }
    fn __str__(&self) -> String {
        self.money.to_string()
    }
    fn __repr__(&self) -> String {
        format!("Price('{}', '{}')", self.money, self.money.currency())
    }
}

static DECIMAL_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn is_decimal(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = v.py();
    let ty = DECIMAL_TYPE.import(py, "decimal", "Decimal")?;
    v.is_instance(ty)
}

/// Read an amount given as str, int, float or `decimal.Decimal` with core's exact rules
/// (floats through `Money::from_f64`). `None` for an unsupported Python type.
fn money_from_py(v: &Bound<'_, PyAny>, currency: Currency) -> PyResult<Option<Result<Money, Error>>> {
    if let Ok(p) = v.cast::<Price>() {
        let m = p.get().money;
        return Ok(Some(if m.currency() == currency {
            Ok(m)
        } else {
            Err(Error::CurrencyMismatch { expected: currency.code().into(), got: m.currency().code().into() })
        }));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(Money::parse(s.to_str()?, currency)));
    }
    // bool is an int subclass in Python: never a price.
    if v.is_instance_of::<PyBool>() {
        return Ok(None);
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(Some(Money::parse(v.str()?.to_str()?, currency)));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Some(Money::from_f64(f.value(), currency)));
    }
    if is_decimal(v)? {
        // str(Decimal) is exact (it may use exponent form, which core reads exactly).
        return Ok(Some(Money::parse(v.str()?.to_str()?, currency)));
    }
    Ok(None)
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A test-only build (feature `test-panic`, never published) panics on the currency
/// "test-panic", so the tests can check that a panic in a binding call reaches Python as an
/// `internal` error (tests/panic_check.py).
#[cfg_attr(not(feature = "test-panic"), inline(always))]
fn test_panic(_currency: &str) {
    #[cfg(feature = "test-panic")]
    if _currency == "test-panic" {
        panic!("forced by the test-panic feature");
    }
}

/// A provider's price, as core's `Paywall::parse_price` judges it: every problem (bad type,
/// malformed, zero, negative, over-precise, NaN, unknown currency) is `price_invalid`.
fn price_from_py(v: &Bound<'_, PyAny>, currency: &str) -> Result<Money, Error> {
    test_panic(currency);
    if let Ok(p) = v.cast::<Price>() {
        return Money::positive(p.get().money).map_err(|e| Error::PriceInvalid(e.to_string()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_str().map_err(|_| Error::PriceInvalid("price is not valid UTF-8".into()))?;
        return vpaywall::Paywall::parse_price(s, currency);
    }
    vpaywall::Paywall::price_with(currency, |cur| match money_from_py(v, cur) {
        Ok(Some(r)) => r,
        Ok(None) => Err(Error::PriceInvalid(format!(
            "a price must be a str, int, float or Decimal, not {}",
            type_name(v)
        ))),
        Err(_) => Err(Error::PriceInvalid("price could not be read".into())),
    })
}

/// Parse a provider's price: str, int, float (exactly, via its shortest decimal form) or
/// Decimal. Any problem raises `price_invalid`.
#[pyfunction]
#[pyo3(signature = (value, currency = "usd"))]
fn parse_price(py: Python<'_>, value: &Bound<'_, PyAny>, currency: &str) -> PyResult<Price> {
    Ok(Price { money: price_from_py(value, currency).py_err(py)? })
}

/// Parse an amount with the detailed money codes (`amount_malformed`, `amount_precision`, …).
/// With `positive=True` zero is refused (`amount_zero`).
#[pyfunction]
#[pyo3(signature = (value, currency = "usd", positive = false))]
fn parse_amount(py: Python<'_>, value: &Bound<'_, PyAny>, currency: &str, positive: bool) -> PyResult<Price> {
    Ok(Price { money: amount_from_py(py, value, currency, positive)? })
}

fn amount_from_py(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    currency: &str,
    positive: bool,
) -> PyResult<Money> {
    let cur = Currency::parse(currency).py_err(py)?;
    let m = match money_from_py(value, cur)? {
        Some(r) => r.py_err(py)?,
        None => {
            return Err(native_error(
                py,
                Error::AmountMalformed(format!("a {} is not an amount", type_name(value))),
            ));
        }
    };
    if positive { m.positive().py_err(py) } else { Ok(m) }
}

// ---------------------------------------------------------------------------------------------
// Provider side
// ---------------------------------------------------------------------------------------------

/// Verified payment facts, handed to the route handler.
#[pyclass(frozen, module = "vlexivo._native", name = "Payment")]
pub struct Payment {
    /// The facts' text in one allocation per paid request, not one per fact: each text fact in
    /// [`Payment::FACTS`] order, then core's `Vlexivo-Receipt` value for them.
    text: String,
    /// Where each text fact ends in `text`; the receipt runs from the last to the end.
    ends: [usize; Payment::FACTS],
    #[pyo3(get)]
    paid_at: u64,
    #[pyo3(get)]
    expires_at: u64,
}

impl Payment {
    const FACTS: usize = 7;
    const PAYER: usize = 0;
    const AMOUNT: usize = 1;
    const CURRENCY: usize = 2;
    const TX_HASH: usize = 3;
    const NONCE: usize = 4;
    const RESOURCE: usize = 5;
    const STORE_KEY: usize = 6;

    /// The facts of a payment core took, copied once from the token (`Paywall::verify_with`).
    fn from_paid(p: &vpaywall::PaidRef<'_>) -> Self {
        let facts = [p.payer, p.amount, p.currency, p.tx_hash, p.nonce, p.resource, p.store_key];
        // The receipt repeats five of the facts with their names (under 64 bytes): room for it
        // too, so that writing it does not grow the text.
        let len: usize = facts.iter().map(|f| f.len()).sum();
        let mut text = String::with_capacity(2 * len + 64);
        let mut ends = [0; Self::FACTS];
        for (end, fact) in ends.iter_mut().zip(facts) {
            text.push_str(fact);
            *end = text.len();
        }
        p.write_receipt(&mut text);
        Self { text, ends, paid_at: p.paid_at, expires_at: p.expires_at }
    }

    fn fact(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// The nonce-store handle (release it if the handler fails).
    pub(crate) fn store_key(&self) -> &str {
        self.fact(Self::STORE_KEY)
    }

    /// Core's `Vlexivo-Receipt` value for these facts.
    pub(crate) fn receipt(&self) -> &str {
        &self.text[self.ends[Self::FACTS - 1]..]
    }
}

#[pymethods]
impl Payment {
    #[getter]
    fn payer(&self) -> &str {
        self.fact(Self::PAYER)
    }

    #[getter]
    fn amount(&self) -> &str {
        self.fact(Self::AMOUNT)
    }

    #[getter]
    fn currency(&self) -> &str {
        self.fact(Self::CURRENCY)
    }

    #[getter]
    fn tx_hash(&self) -> &str {
        self.fact(Self::TX_HASH)
    }

    #[getter]
    fn nonce(&self) -> &str {
        self.fact(Self::NONCE)
    }

    #[getter]
    fn resource(&self) -> &str {
        self.fact(Self::RESOURCE)
    }

    /// The nonce-store key (release it if the handler fails).
    #[getter(store_key)]
    fn py_store_key(&self) -> &str {
        self.store_key()
    }

    /// The `Vlexivo-Receipt` header value.
    #[getter(receipt)]
    fn py_receipt(&self) -> &str {
        self.receipt()
    }

    /// The facts as a dict; `camel=True` gives the JS/JSON names (`txHash`, `paidAt`, …).
    #[pyo3(signature = (camel = false))]
    fn to_dict<'py>(&self, py: Python<'py>, camel: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("payer", self.payer())?;
        d.set_item("amount", self.amount())?;
        d.set_item("currency", self.currency())?;
        d.set_item(if camel { "txHash" } else { "tx_hash" }, self.tx_hash())?;
        d.set_item("nonce", self.nonce())?;
        d.set_item(if camel { "paidAt" } else { "paid_at" }, self.paid_at)?;
        d.set_item(if camel { "expiresAt" } else { "expires_at" }, self.expires_at)?;
        d.set_item("resource", self.resource())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Payment(payer={:?}, amount={:?}, currency={:?}, tx_hash={:?}, resource={:?})",
            self.payer(),
            self.amount(),
            self.currency(),
            self.tx_hash(),
            self.resource()
        )
    }
}

type Answer = (u16, Vec<(&'static str, String)>, String);

fn answer(r: vpaywall::Rejection) -> Answer {
    (r.status, r.headers, r.body)
}

fn now_or_system(now: Option<u64>) -> u64 {
    now.unwrap_or_else(|| SystemClock.now())
}

/// Header bytes as text, decoded as Latin-1 as the adapters decode them (borrowed when ASCII).
fn latin1(b: &[u8]) -> Cow<'_, str> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (a second pass over the proof, `from_utf8`'s, would only
        // say so again).
        #[allow(unsafe_code)]
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) });
    }
    Cow::Owned(b.iter().map(|&c| char::from(c)).collect())
}

/// The names `verify_scope` looks for, as ASGI spells header names (lower case).
const PROOF_NAME: &[u8] = b"vlexivo-proof";
const HOST_NAME: &[u8] = b"host";
const ORIGIN_NAME: &[u8] = b"origin";

/// What `verify_scope` (and the response watch) reads of a request's headers.
pub(crate) struct ScopeHeaders<'py> {
    /// The first `Vlexivo-Proof` value.
    proof: Option<Bound<'py, PyBytes>>,
    /// The first `Host` value.
    host: Option<Bound<'py, PyBytes>>,
    /// Whether it carries `Origin`.
    pub(crate) origin: bool,
}

/// Item `i` of a header pair: a tuple's without an index object (servers send tuples; ASGI
/// allows any two-item iterable).
fn pair_item<'py>(pair: &Bound<'py, PyAny>, i: usize) -> PyResult<Bound<'py, PyAny>> {
    match pair.cast::<PyTuple>() {
        Ok(t) => t.get_item(i),
        Err(_) => pair.get_item(i),
    }
}

/// Scan ASGI raw header pairs (`[name, value]` of bytes) once. A name that is not bytes names
/// nothing; a proof or `Host` value that is not bytes is a TypeError.
pub(crate) fn scan_headers<'py>(headers: &Bound<'py, PyAny>) -> PyResult<ScopeHeaders<'py>> {
    let mut found = ScopeHeaders { proof: None, host: None, origin: false };
    for pair in headers.try_iter()? {
        let pair = pair?;
        let name = pair_item(&pair, 0)?;
        let Ok(name) = name.cast::<PyBytes>() else { continue };
        let slot = match name.as_bytes() {
            PROOF_NAME => &mut found.proof,
            HOST_NAME => &mut found.host,
            ORIGIN_NAME => {
                found.origin = true;
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(pair_item(&pair, 1)?.cast_into::<PyBytes>()?);
        }
    }
    Ok(found)
}

/// The provider middleware's decisions for one API secret, with its nonce store.
#[pyclass(frozen, module = "vlexivo._native", name = "Paywall")]
pub struct Paywall {
    inner: vpaywall::Paywall,
    store: Arc<dyn NonceStore>,
    /// Release the GIL around verify/release: only for a store that may block (SQLite waits on
    /// other processes' locks; Redis and PostgreSQL on the network). The memory store's few
    /// microseconds of pure CPU are cheaper with the GIL held than with a release and
    /// re-acquire (a convoy in threaded servers).
    detach: bool,
}

impl Paywall {
    /// Verify and consume: the payment handed to the handler (the GIL released around a store
    /// that may block).
    fn consume(
        &self,
        py: Python<'_>,
        proof: Option<&str>,
        req: &RequestInfo<'_>,
        price: &Money,
        now: Option<u64>,
    ) -> PyResult<Payment> {
        let store = &*self.store;
        let run = || self.inner.verify_with(proof, req, price, now_or_system(now), store, Payment::from_paid);
        if self.detach { py.detach(run) } else { run() }.py_err(py)
    }

    /// [`Paywall::verify_scope`] of a dict scope (the ASGI middleware's native entry calls it too).
    pub(crate) fn verify_scope_dict(
        &self,
        py: Python<'_>,
        scope: &Bound<'_, PyDict>,
        price: &Price,
        now: Option<u64>,
    ) -> PyResult<Option<(Payment, bool)>> {
        let raw_path = scope.get_item(pyo3::intern!(py, "raw_path"))?;
        let Some(raw_path) = raw_path.as_ref().and_then(|r| r.cast::<PyBytes>().ok()) else {
            return Ok(None);
        };
        let raw_path = raw_path.as_bytes();
        if raw_path.is_empty() {
            return Ok(None);
        }
        let headers = scope
            .get_item(pyo3::intern!(py, "headers"))?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("headers"))?;
        let found = scan_headers(&headers)?;
        let Some(host) = found.host else { return Ok(None) };
        let method = scope
            .get_item(pyo3::intern!(py, "method"))?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("method"))?;
        let scheme = scope.get_item(pyo3::intern!(py, "scheme"))?;
        let scheme = match &scheme {
            Some(s) => s.cast::<PyString>()?.to_str()?,
            None => "http",
        };
        let path = latin1(raw_path.split(|&b| b == b'?').next().unwrap_or_default());
        let proof = found.proof.as_ref().map(|p| latin1(p.as_bytes()));
        let host = latin1(host.as_bytes());
        let req = Self::req(method.cast::<PyString>()?.to_str()?, &path, scheme, Some(&host), None, None);
        let payment = self.consume(py, proof.as_deref(), &req, &price.money, now)?;
        Ok(Some((payment, found.origin)))
    }

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        scheme: &'a str,
        host: Option<&'a str>,
        body: Option<&'a [u8]>,
        payer: Option<&'a str>,
    ) -> RequestInfo<'a> {
        RequestInfo { method, path, scheme, host, body, payer }
    }
}

#[pymethods]
impl Paywall {
    /// `nonce_store`: a store URL (core's `store::spec`: "memory", "sqlite:///path",
    /// "redis://host", "redis+cluster://h1,h2", "postgres://…"), with `nonce_store_options`
    /// (prefix, pool_size, timeout_ms, connect_timeout_ms, capacity); anything unknown is a
    /// config error. `jwks`: the facilitator's EdDSA keys (JSON text or dict).
    /// `origin`: the origin clients call (`https://api.example.com`), bound into challenges and
    /// proofs; `None` binds each request's own `scheme` and `host` (the methods' keywords).
    #[new]
    #[pyo3(signature = (api_secret, mode = None, facilitator_url = None, network = None,
        challenge_ttl = 300, leeway = 30, bind_body = false, nonce_store = "memory", jwks = None, origin = None,
        nonce_store_options = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        api_secret: &str,
        mode: Option<&str>,
        facilitator_url: Option<&str>,
        network: Option<String>,
        challenge_ttl: u64,
        leeway: u64,
        bind_body: bool,
        nonce_store: &str,
        jwks: Option<&Bound<'_, PyAny>>,
        origin: Option<String>,
        nonce_store_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut cfg = PaywallConfig::new(api_secret);
        cfg.origin = origin;
        cfg.mode = mode.map(str::parse::<Mode>).transpose().py_err(py)?;
        if let Some(url) = facilitator_url {
            cfg.facilitator_url = url.to_string();
        }
        cfg.network = network;
        cfg.challenge_ttl_secs = challenge_ttl;
        cfg.leeway_secs = leeway;
        cfg.bind_body = bind_body;
        if let Some(j) = jwks {
            let text = if let Ok(s) = j.cast::<PyString>() {
                s.to_str()?.to_owned()
            } else {
                let json = py.import("json")?;
                json.call_method1("dumps", (j,))?.extract::<String>()?
            };
            cfg.jwks = Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::Config(format!("jwks is not a JWK set: {e}")))
                    .py_err(py)?,
            );
        }
        let inner = vpaywall::Paywall::new(cfg).py_err(py)?;
        // Option values as text (numbers and booleans allowed); core checks keys and values.
        let mut options: Vec<(String, String)> = Vec::new();
        if let Some(d) = nonce_store_options {
            for (k, v) in d.iter() {
                let k: String = k.extract()?;
                let v = if let Ok(s) = v.cast::<PyString>() {
                    s.to_str()?.to_owned()
                } else if let Ok(b) = v.cast::<PyBool>() {
                    // Core's spelling (`pages_thread=false`), not Python's `False`.
                    b.is_true().to_string()
                } else {
                    v.str()?.to_str()?.to_owned()
                };
                options.push((k, v));
            }
        }
        let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let store = py.detach(|| vlexivo_core::store::open(nonce_store, &opts)).py_err(py)?;
        let detach = store.kind() != "memory";
        Ok(Self { inner, store, detach })
    }

    #[getter]
    fn account(&self) -> &str {
        self.inner.account()
    }
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode().as_str()
    }
    #[getter]
    fn facilitator_url(&self) -> &str {
        self.inner.facilitator_url()
    }
    /// The configured origin, or `None` when each request's own is bound.
    #[getter]
    fn origin(&self) -> Option<&str> {
        self.inner.origin().map(|o| o.as_str())
    }
    #[getter]
    fn bind_body(&self) -> bool {
        self.inner.binds_body()
    }
    #[getter]
    fn nonce_store(&self) -> &'static str {
        self.store.kind()
    }

    /// Verify a proof for this request at `price` and consume its nonce (the GIL is released
    /// around a SQLite store's I/O).
    /// Raises `NativeError` (402 codes, `token_replayed`, store errors, `price_invalid`).
    #[pyo3(signature = (proof, method, path, price, currency = "usd", now = None, body = None, *, scheme = "http", host = None, payer = None))]
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        py: Python<'_>,
        proof: Option<&str>,
        method: &str,
        path: &str,
        price: &Bound<'_, PyAny>,
        currency: &str,
        now: Option<u64>,
        body: Option<&[u8]>,
        scheme: &str,
        host: Option<&str>,
        payer: Option<&str>,
    ) -> PyResult<Payment> {
        let price = price_from_py(price, currency).py_err(py)?;
        self.consume(py, proof, &Self::req(method, path, scheme, host, body, payer), &price, now)
    }

    /// The ASGI middleware's paid path in one call, for a fixed price and no body: the proof and
    /// `Host` come from the scope's raw header pairs (the first of each; ASGI names are lower
    /// case), the binding path from its `raw_path` (without a query), both decoded as Latin-1
    /// as the adapters decode them; then `verify`. Returns the payment and whether the request
    /// carries `Origin` (a cross-origin request, whose response exposes the receipt to CORS), or
    /// `None` (nothing verified, nothing consumed) when the scope is not a dict or has no
    /// `raw_path` or `Host`: the caller takes the general path. Raises `NativeError` as `verify`.
    #[pyo3(signature = (scope, price, now = None))]
    fn verify_scope(
        &self,
        py: Python<'_>,
        scope: &Bound<'_, PyAny>,
        price: PyRef<'_, Price>,
        now: Option<u64>,
    ) -> PyResult<Option<(Payment, bool)>> {
        let Ok(scope) = scope.cast::<PyDict>() else { return Ok(None) };
        self.verify_scope_dict(py, scope, &price, now)
    }

    /// The handler failed (5xx or raised): the same token may be presented again. A networked
    /// store releases in the background (retrying while it is unreachable), so this never
    /// waits on the network.
    fn release(&self, py: Python<'_>, store_key: &str) -> PyResult<()> {
        let store = &*self.store;
        if store.blocks() {
            let (key, lease) = vlexivo_core::store::parse_handle(store_key).py_err(py)?;
            drop(store.release_async(key.to_string(), lease));
            return Ok(());
        }
        let run = || vlexivo_core::paywall::Paywall::release_handle(store_key, store);
        if self.detach { py.detach(run) } else { run() }.py_err(py)
    }

    /// True when the nonce store waits on the network (Redis, PostgreSQL): an event loop must
    /// call `verify` from a worker thread.
    #[getter]
    fn store_blocks(&self) -> bool {
        self.store.blocks()
    }

    /// Store operations that failed on the store's side (unreachable, timed out, full) since
    /// this paywall was built.
    #[getter]
    fn store_failures(&self) -> u64 {
        self.store.failures()
    }

    /// Who a request is priced for (core's `Paywall::priced_payer`): `(address, proven)` for
    /// the payer of a proof whose signature, audience, mode and time verify, else for the one
    /// the `Vlexivo-Payer` hint names (`proven` false), else `None`.
    #[pyo3(signature = (proof, hint, now = None))]
    fn priced_payer(
        &self,
        proof: Option<&str>,
        hint: Option<&str>,
        now: Option<u64>,
    ) -> Option<(String, bool)> {
        self.inner.priced_payer(proof, hint, now_or_system(now)).map(|p| (p.address, p.proven))
    }

    /// A fresh 402 for this request: `(status, headers, body)`.
    #[pyo3(signature = (method, path, price, currency = "usd", scope = "per-call", now = None, body = None, *, scheme = "http", host = None, payer = None))]
    #[allow(clippy::too_many_arguments)]
    fn challenge(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        price: &Bound<'_, PyAny>,
        currency: &str,
        scope: &str,
        now: Option<u64>,
        body: Option<&[u8]>,
        scheme: &str,
        host: Option<&str>,
        payer: Option<&str>,
    ) -> PyResult<Answer> {
        let price = price_from_py(price, currency).py_err(py)?;
        let r = self
            .inner
            .challenge(
                &Self::req(method, path, scheme, host, body, payer),
                &price,
                scope,
                now_or_system(now),
                &OsEntropy,
            )
            .py_err(py)?;
        Ok(answer(r))
    }

    /// Shape a refusal for `error` (a `NativeError` or an error code): proof problems get a 402
    /// with a fresh challenge when `price` is known; provider faults a 5xx that names only the
    /// code. Returns `(status, headers, body)`.
    #[pyo3(signature = (error, method, path, price = None, currency = "usd", scope = "per-call", now = None, body = None, *, scheme = "http", host = None, payer = None))]
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &self,
        error: &Bound<'_, PyAny>,
        method: &str,
        path: &str,
        price: Option<&Bound<'_, PyAny>>,
        currency: &str,
        scope: &str,
        now: Option<u64>,
        body: Option<&[u8]>,
        scheme: &str,
        host: Option<&str>,
        payer: Option<&str>,
    ) -> PyResult<Answer> {
        let err = error_from_py(error)?;
        let price = price.and_then(|p| price_from_py(p, currency).ok());
        let entropy: &dyn Entropy = &OsEntropy;
        Ok(answer(self.inner.reject(
            &err,
            &Self::req(method, path, scheme, host, body, payer),
            price.as_ref(),
            scope,
            now_or_system(now),
            entropy,
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Payer side
// ---------------------------------------------------------------------------------------------

/// A secp256k1 wallet (the key never leaves the payer).
#[pyclass(frozen, module = "vlexivo._native", name = "Wallet")]
pub struct Wallet {
    inner: vlexivo_core::wallet::Wallet,
}

#[pymethods]
impl Wallet {
    /// From a hex private key (with or without `0x`).
    #[new]
    fn new(py: Python<'_>, private_key: &str) -> PyResult<Self> {
        Ok(Self { inner: vlexivo_core::wallet::Wallet::from_hex(private_key).py_err(py)? })
    }
    /// A fresh random wallet.
    #[staticmethod]
    fn generate() -> Self {
        Self { inner: vlexivo_core::wallet::Wallet::generate(&OsEntropy) }
    }
    /// EIP-55 address.
    #[getter]
    fn address(&self) -> String {
        self.inner.address().to_checksum()
    }
    /// The private key as `0x…` hex (handle with care).
    fn private_key_hex(&self) -> String {
        self.inner.secret_hex()
    }
    fn __repr__(&self) -> String {
        format!("Wallet(address={:?})", self.inner.address().to_checksum())
    }
}

/// A decoded Vlexivo 402.
#[pyclass(frozen, module = "vlexivo._native", name = "PaymentRequired")]
pub struct PaymentRequired {
    inner: vclient::PaymentRequired,
}

#[pymethods]
impl PaymentRequired {
    /// The challenge as received (base64url).
    #[getter]
    fn challenge(&self) -> &str {
        &self.inner.encoded
    }
    #[getter]
    fn price(&self) -> String {
        self.inner.price.to_string()
    }
    #[getter]
    fn currency(&self) -> &'static str {
        self.inner.price.currency().code()
    }
    #[getter]
    fn nonce(&self) -> &str {
        &self.inner.challenge.nonce
    }
    #[getter]
    fn scope(&self) -> &str {
        &self.inner.challenge.scope
    }
    #[getter]
    fn method(&self) -> &str {
        &self.inner.challenge.method
    }
    #[getter]
    fn path(&self) -> &str {
        &self.inner.challenge.path
    }
    #[getter]
    fn resource(&self) -> String {
        self.inner.challenge.resource()
    }
    #[getter]
    fn account(&self) -> &str {
        &self.inner.challenge.account
    }
    #[getter]
    fn facilitator(&self) -> &str {
        &self.inner.challenge.facilitator
    }
    #[getter]
    fn mode(&self) -> &str {
        &self.inner.challenge.mode
    }
    #[getter]
    fn network(&self) -> &str {
        &self.inner.challenge.network
    }
    #[getter]
    fn issued_at(&self) -> u64 {
        self.inner.challenge.iat
    }
    #[getter]
    fn expires_at(&self) -> u64 {
        self.inner.challenge.exp
    }
    fn __repr__(&self) -> String {
        format!("PaymentRequired(price={:?}, resource={:?})", self.price(), self.resource())
    }
}

/// Is this response a Vlexivo 402? `headers`: a mapping or an iterable of `(name, value)`.
/// Raises `not_payment_required` (or a challenge error) otherwise.
#[pyfunction]
fn parse_payment_required(
    py: Python<'_>,
    status: u16,
    headers: &Bound<'_, PyAny>,
    body: &[u8],
) -> PyResult<PaymentRequired> {
    let pairs = header_pairs(headers)?;
    let inner =
        vclient::parse_payment_required(status, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), body)
            .py_err(py)?;
    Ok(PaymentRequired { inner })
}

/// The facilitator's receipt for a payment.
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "Receipt")]
pub struct Receipt {
    token: String,
    tx_hash: String,
    payer: String,
    amount: String,
    currency: String,
    balance: String,
    nonce: String,
    paid_at: u64,
    expires_at: u64,
    replayed: bool,
}

impl From<vlexivo_core::payment::PaymentReceipt> for Receipt {
    fn from(r: vlexivo_core::payment::PaymentReceipt) -> Self {
        Self {
            token: r.token,
            tx_hash: r.tx_hash,
            payer: r.payer,
            amount: r.amount,
            currency: r.currency,
            balance: r.balance,
            nonce: r.nonce,
            paid_at: r.paid_at,
            expires_at: r.expires_at,
            replayed: r.replayed,
        }
    }
}

#[pymethods]
impl Receipt {
    fn __repr__(&self) -> String {
        format!(
            "Receipt(amount={:?}, currency={:?}, tx_hash={:?}, balance={:?}, replayed={})",
            self.amount, self.currency, self.tx_hash, self.balance, self.replayed
        )
    }
}

/// A sandbox faucet top-up's receipt.
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "TopUpReceipt")]
pub struct TopUpReceipt {
    address: String,
    amount: String,
    balance: String,
    currency: String,
    tx_hash: String,
}

/// An HTTP request to the facilitator: send it without following redirects, and read at most
/// `MAX_RESPONSE_BODY` bytes of the answer.
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "FacilitatorRequest")]
pub struct FacilitatorRequest {
    method: &'static str,
    url: String,
    /// JSON (`content-type: application/json`), or None.
    body: Option<String>,
    facilitator: String,
}

impl FacilitatorRequest {
    fn from_core(r: vclient::FacilitatorRequest) -> Self {
        Self { method: r.method, url: r.url, body: r.body, facilitator: r.facilitator }
    }
    fn to_core(&self) -> vclient::FacilitatorRequest {
        vclient::FacilitatorRequest {
            method: self.method,
            url: self.url.clone(),
            body: self.body.clone(),
            facilitator: self.facilitator.clone(),
        }
    }
}

/// A payment made, for `on_payment`.
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "PaymentEvent")]
pub struct PaymentEvent {
    method: String,
    url: String,
    host: String,
    resource: String,
    facilitator: String,
    /// What the challenge asked.
    price: String,
    receipt: Py<Receipt>,
    /// Added by auto top-up before this payment.
    topped_up: Option<String>,
    /// A payment an earlier call left in doubt, found paid.
    reconciled: bool,
}

/// What the executor does next (`kind`): `send` the request to `url` with `headers` added;
/// `read_body` (at most `limit` bytes) and feed it; `facilitator`: perform `request`; `paid`:
/// run the hook with `event`, then `resume()`; `wait` `millis`, then `resume()`; `return` the
/// last response.
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "Step")]
pub struct Step {
    kind: &'static str,
    url: Option<String>,
    headers: Vec<(&'static str, String)>,
    limit: Option<usize>,
    request: Option<Py<FacilitatorRequest>>,
    event: Option<Py<PaymentEvent>>,
    millis: Option<u64>,
}

impl Step {
    fn from_core(py: Python<'_>, s: vclient::Step) -> PyResult<Self> {
        let mut out = Self {
            kind: "",
            url: None,
            headers: Vec::new(),
            limit: None,
            request: None,
            event: None,
            millis: None,
        };
        out.kind = match s {
            vclient::Step::Send { url, headers } => {
                out.url = Some(url);
                out.headers = headers;
                "send"
            }
            vclient::Step::ReadBody { limit } => {
                out.limit = Some(limit);
                "read_body"
            }
            vclient::Step::Facilitator(r) => {
                out.request = Some(Py::new(py, FacilitatorRequest::from_core(r))?);
                "facilitator"
            }
            vclient::Step::Paid(e) => {
                let e = *e;
                out.event = Some(Py::new(
                    py,
                    PaymentEvent {
                        method: e.method,
                        url: e.url,
                        host: e.host,
                        resource: e.resource,
                        facilitator: e.facilitator,
                        price: e.price.to_string(),
                        receipt: Py::new(py, Receipt::from(e.receipt))?,
                        topped_up: e.topped_up.map(|t| t.to_string()),
                        reconciled: e.reconciled,
                    },
                )?);
                "paid"
            }
            vclient::Step::Wait { millis } => {
                out.millis = Some(millis);
                "wait"
            }
            vclient::Step::Return => "return",
        };
        Ok(out)
    }
}

/// What paying a 402 would send, unsent (nothing stays reserved).
#[pyclass(frozen, get_all, module = "vlexivo._native", name = "Quote")]
pub struct Quote {
    price: String,
    currency: &'static str,
    nonce: String,
    resource: String,
    host: String,
    facilitator: String,
    pay_url: String,
    /// The signed payment request (JSON).
    body: String,
    expires_at: u64,
}

/// The pairs of a mapping, an httpx/starlette `Headers` or an iterable of `(name, value)`.
fn header_pairs(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    if let Ok(d) = headers.cast::<PyDict>() {
        d.iter().map(|(k, v)| Ok((k.extract()?, v.extract()?))).collect()
    } else if headers.hasattr("multi_items")? {
        headers.call_method0("multi_items")?.extract()
    } else if headers.hasattr("items")? {
        headers.call_method0("items")?.try_iter()?.map(|i| i?.extract()).collect()
    } else {
        headers.try_iter()?.map(|i| i?.extract()).collect()
    }
}

/// The payer: a wallet, a spending policy (caps per call, per host, total, rolling window),
/// the facilitators it trusts and auto top-up. Calls made through it share its budget.
#[pyclass(frozen, module = "vlexivo._native", name = "Payer")]
pub struct Payer {
    inner: vclient::Payer,
}

#[pymethods]
impl Payer {
    /// `window`: `(seconds, max_amount)`; `auto_top_up`: `(trigger_balance, top_up_amount,
    /// max_total, funding_key, rpc_url)` (the last three `None` when unset).
    /// Amounts: str, int, float or Decimal (usd). Trusted facilitators: `facilitator_url` and
    /// `facilitators`; with neither, `facilitator_env` (the environment's
    /// `VLX_FACILITATOR_URL`), else the default.
    /// `fixed_now`: a fixed clock (unix seconds), for replaying recorded exchanges.
    #[new]
    #[pyo3(signature = (wallet_key, max_per_call = None, max_per_host = None, max_total = None,
        window = None, facilitator_url = None, facilitators = None, auto_top_up = None, fixed_now = None,
        facilitator_env = None, payer_hint = true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        wallet_key: &str,
        max_per_call: Option<&Bound<'_, PyAny>>,
        max_per_host: Option<&Bound<'_, PyAny>>,
        max_total: Option<&Bound<'_, PyAny>>,
        window: Option<&Bound<'_, PyTuple>>,
        facilitator_url: Option<String>,
        facilitators: Option<Vec<String>>,
        auto_top_up: Option<&Bound<'_, PyTuple>>,
        fixed_now: Option<u64>,
        facilitator_env: Option<&str>,
        payer_hint: bool,
    ) -> PyResult<Self> {
        let wallet = vlexivo_core::wallet::Wallet::from_hex(wallet_key).py_err(py)?;
        let cap = |v: Option<&Bound<'_, PyAny>>| v.map(|v| amount_from_py(py, v, "usd", false)).transpose();
        let window = match window {
            None => None,
            Some(t) => {
                let (secs, max): (u64, Bound<'_, PyAny>) = t.extract()?;
                if secs == 0 {
                    return Err(native_error(py, Error::Config("window must be at least 1 second".into())));
                }
                Some((secs, amount_from_py(py, &max, "usd", false)?))
            }
        };
        let auto_top_up = match auto_top_up {
            None => None,
            Some(t) => {
                // `(trigger, amount)`, optionally followed by `max_total, funding_key, rpc_url`.
                let (trigger, amount) = (t.get_item(0)?, t.get_item(1)?);
                let opt = |i: usize| -> PyResult<Option<Bound<'_, PyAny>>> {
                    if i >= t.len() {
                        return Ok(None);
                    }
                    let v = t.get_item(i)?;
                    Ok((!v.is_none()).then_some(v))
                };
                let max_total = opt(2)?;
                let funding_key: Option<String> = opt(3)?.map(|v| v.extract()).transpose()?;
                let rpc_url: Option<String> = opt(4)?.map(|v| v.extract()).transpose()?;
                let funding =
                    vclient::Funding::from_options(funding_key.as_deref(), rpc_url.as_deref(), "rpc_url")
                        .py_err(py)?;
                Some(vclient::AutoTopUp {
                    enabled: true,
                    trigger_balance: amount_from_py(py, &trigger, "usd", false)?,
                    top_up_amount: amount_from_py(py, &amount, "usd", true)?,
                    max_total: max_total.map(|m| amount_from_py(py, &m, "usd", false)).transpose()?,
                    funding,
                })
            }
        };
        let policy = SpendingPolicy {
            max_per_call: cap(max_per_call)?,
            max_per_host: cap(max_per_host)?,
            max_total: cap(max_total)?,
            window,
        };
        let trust = vclient::TrustedFacilitators::new(
            facilitator_url.as_deref(),
            &facilitators.unwrap_or_default(),
            facilitator_env,
        )
        .py_err(py)?;
        let clock: Arc<dyn Clock> = match fixed_now {
            Some(n) => Arc::new(vlexivo_core::env::FixedClock::new(n)),
            None => Arc::new(SystemClock),
        };
        let config = vclient::PayerConfig { policy, facilitators: trust, auto_top_up, payer_hint };
        Ok(Self { inner: vclient::Payer::new(wallet, config, clock) })
    }

    #[getter]
    fn address(&self) -> &str {
        self.inner.address()
    }

    /// The trusted facilitators (wallet operations go to the first).
    #[getter]
    fn facilitators(&self) -> Vec<String> {
        self.inner.trusted().urls().to_vec()
    }

    /// Start the payer flow for one request (`replayable`: its body can be sent twice).
    fn call(&self, py: Python<'_>, method: &str, url: &str, replayable: bool) -> PyResult<PayerCall> {
        let inner = self.inner.call(method, url, replayable).py_err(py)?;
        Ok(PayerCall { inner: Mutex::new(inner) })
    }

    /// Check a 402 against the request and the policy and sign, without paying.
    fn quote(
        &self,
        py: Python<'_>,
        payment_required: PyRef<'_, PaymentRequired>,
        method: &str,
        url: &str,
    ) -> PyResult<Quote> {
        let pr = &payment_required.inner;
        let q = py.detach(|| self.inner.quote(pr, method, url)).py_err(py)?;
        Ok(Quote {
            price: q.price.to_string(),
            currency: q.price.currency().code(),
            nonce: q.nonce,
            resource: q.resource,
            host: q.host,
            facilitator: q.facilitator,
            pay_url: q.pay_url,
            body: q.body,
            expires_at: q.expires_at,
        })
    }

    /// `GET /v1/wallets/{address}` at `facilitator` (default: the first trusted).
    #[pyo3(signature = (facilitator = None))]
    fn balance_request(&self, py: Python<'_>, facilitator: Option<&str>) -> PyResult<FacilitatorRequest> {
        Ok(FacilitatorRequest::from_core(self.inner.balance_request(facilitator).py_err(py)?))
    }

    fn read_balance(
        &self,
        py: Python<'_>,
        request: PyRef<'_, FacilitatorRequest>,
        status: u16,
        body: &[u8],
    ) -> PyResult<String> {
        Ok(self.inner.read_balance(&request.to_core(), status, body).py_err(py)?.to_string())
    }

    /// `POST /v1/wallets/{address}/topup` (the sandbox faucet).
    #[pyo3(signature = (amount, facilitator = None))]
    fn top_up_request(
        &self,
        py: Python<'_>,
        amount: &Bound<'_, PyAny>,
        facilitator: Option<&str>,
    ) -> PyResult<FacilitatorRequest> {
        let amount = amount_from_py(py, amount, "usd", true)?;
        Ok(FacilitatorRequest::from_core(self.inner.top_up_request(&amount, facilitator).py_err(py)?))
    }

    fn read_top_up(
        &self,
        py: Python<'_>,
        request: PyRef<'_, FacilitatorRequest>,
        status: u16,
        body: &[u8],
    ) -> PyResult<TopUpReceipt> {
        let r = self.inner.read_top_up(&request.to_core(), status, body).py_err(py)?;
        Ok(TopUpReceipt {
            address: r.address,
            amount: r.amount,
            balance: r.balance,
            currency: r.currency,
            tx_hash: r.tx_hash,
        })
    }

    /// Committed spend so far (decimal string).
    fn spent_total(&self) -> String {
        self.inner.spent_total().to_string()
    }
    fn spent_for_host(&self, host: &str) -> String {
        self.inner.budget().spent_for_host(host).to_string()
    }
    /// Reserved by payments in flight or in doubt.
    fn reserved_total(&self) -> String {
        self.inner.reserved_total().to_string()
    }
    /// Payments whose fate the facilitator has not told yet (counted as spent meanwhile).
    fn in_doubt_total(&self) -> String {
        self.inner.in_doubt_total().to_string()
    }
}

/// One request through the payer flow: feed it what happened, do the step it returns.
#[pyclass(frozen, module = "vlexivo._native", name = "PayerCall")]
pub struct PayerCall {
    inner: Mutex<vclient::Call>,
}

impl PayerCall {
    fn with<T>(&self, f: impl FnOnce(&mut vclient::Call) -> T) -> PyResult<T> {
        let mut call = self.inner.lock().map_err(|_| PyTypeError::new_err("payer call lock poisoned"))?;
        Ok(f(&mut call))
    }

    fn step(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut vclient::Call) -> vlexivo_core::Result<vclient::Step>,
    ) -> PyResult<Step> {
        let s = self.with(f)?.py_err(py)?;
        Step::from_core(py, s)
    }
}

#[pymethods]
impl PayerCall {
    fn start(&self, py: Python<'_>) -> PyResult<Step> {
        self.step(py, |c| Ok(c.start()))
    }

    /// The API answered (`body` only once a `read_body` step asked for it; `url` where the
    /// request ended up after redirects). `headers` as for `parse_payment_required`.
    #[pyo3(signature = (status, headers, body = None, url = None))]
    fn response(
        &self,
        py: Python<'_>,
        status: u16,
        headers: &Bound<'_, PyAny>,
        body: Option<&[u8]>,
        url: Option<&str>,
    ) -> PyResult<Step> {
        let pairs = header_pairs(headers)?;
        self.step(py, |c| c.response(status, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), body, url))
    }

    /// The facilitator answered the last `facilitator` step.
    fn answer(&self, py: Python<'_>, status: u16, body: &[u8]) -> PyResult<Step> {
        self.step(py, |c| c.answer(status, body))
    }

    /// The last `facilitator` step failed without an answer (`sent`: anything but a failure
    /// to connect).
    fn transport_error(&self, py: Python<'_>, sent: bool, reason: &str) -> PyResult<Step> {
        self.step(py, |c| c.transport_error(sent, reason))
    }

    /// Go on after `paid` or `wait`.
    fn resume(&self, py: Python<'_>) -> PyResult<Step> {
        self.step(py, |c| c.resume())
    }

    /// Sending the API request failed (the caller re-raises its own error).
    fn request_failed(&self) -> PyResult<()> {
        self.with(|c| c.request_failed())
    }

    /// The challenge's price, once a 402 was read.
    #[getter]
    fn price(&self) -> PyResult<Option<String>> {
        self.with(|c| c.price().map(|p| p.to_string()))
    }
}

/// How much to top up before paying `price` from `balance`, or `None`.
#[pyfunction]
fn auto_top_up_amount(
    py: Python<'_>,
    trigger_balance: &Bound<'_, PyAny>,
    top_up_amount: &Bound<'_, PyAny>,
    balance: &Bound<'_, PyAny>,
    price: &Bound<'_, PyAny>,
) -> PyResult<Option<String>> {
    let trigger = amount_from_py(py, trigger_balance, "usd", false)?;
    let top_up = amount_from_py(py, top_up_amount, "usd", false)?;
    let cfg = vclient::AutoTopUp::new(&trigger.to_string(), &top_up.to_string()).py_err(py)?;
    let balance = amount_from_py(py, balance, "usd", false)?;
    let price = amount_from_py(py, price, "usd", false)?;
    Ok(cfg.amount_before(&balance, &price).py_err(py)?.map(|m| m.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The response policy (core's `response_policy`): the adapters ask, core decides.
// ---------------------------------------------------------------------------------------------

/// Whether a request passes unpaid: only a CORS preflight (`OPTIONS` carrying
/// `Access-Control-Request-Method`; `preflight_header` says whether it does).
#[pyfunction]
fn is_free_request(method: &str, preflight_header: bool) -> bool {
    response_policy::admission(method, preflight_header) == response_policy::Admission::Free
}

/// The method whose price applies: `HEAD` costs what `GET` costs.
#[pyfunction]
fn priced_method(method: &str) -> String {
    response_policy::priced_method(method).to_string()
}

/// Whether a paid request's nonce is released once its handler has ended: `status` of the
/// response it started (`None` or 0: none), whether it raised, whether the response was complete.
#[pyfunction]
#[pyo3(signature = (status, raised, complete))]
fn releases(status: Option<u16>, raised: bool, complete: bool) -> bool {
    let status = status.filter(|s| *s != 0);
    response_policy::Outcome { status, raised, complete }.settlement() == response_policy::Settlement::Release
}

/// Whether a paid response with this status carries `Vlexivo-Receipt`.
#[pyfunction]
fn sends_receipt(status: u16) -> bool {
    response_policy::sends_receipt(status)
}

/// Whether a response (paid or refused) lists our headers in `Access-Control-Expose-Headers`:
/// `origin_header` says whether its request carries `Origin`.
#[pyfunction]
fn exposes_headers(origin_header: bool) -> bool {
    response_policy::exposes_headers(origin_header)
}

/// The `Access-Control-Expose-Headers` value of a response that exposes our headers, given the
/// application's own (`None`: unset): `None` when it needs no change.
#[pyfunction]
#[pyo3(signature = (existing = None))]
fn expose_value(existing: Option<&str>) -> Option<String> {
    response_policy::expose_value(existing)
}

/// The one price of several paywalls covering a request (the highest; `price_invalid` across
/// currencies).
#[pyfunction]
fn effective_price(py: Python<'_>, prices: Vec<PyRef<'_, Price>>) -> PyResult<Price> {
    let money: Vec<Money> = prices.iter().map(|p| p.money).collect();
    response_policy::effective_price(&money).map(|money| Price { money }).py_err(py)
}

/// A paywall after the one that consumed the proof: `None` when the payment (`paid_amount` in
/// `paid_currency`) covers `price`, else the price to ask instead (release the nonce first).
#[pyfunction]
fn check_stacked(
    py: Python<'_>,
    paid_amount: &str,
    paid_currency: &str,
    price: PyRef<'_, Price>,
) -> PyResult<Option<Price>> {
    let paid = Currency::parse(paid_currency).and_then(|c| Money::parse(paid_amount, c)).py_err(py)?;
    match response_policy::check_stacked(&paid, &price.money) {
        response_policy::Stacked::Covered => Ok(None),
        response_policy::Stacked::Underpaid { ask } => Ok(Some(Price { money: ask })),
    }
}

/// `(host, path)` of an absolute http(s) URL, as the payer binds it.
#[pyfunction]
fn split_url(py: Python<'_>, url: &str) -> PyResult<(String, String)> {
    let (h, p) = vclient::split_url(url).py_err(py)?;
    Ok((h.to_string(), p.to_string()))
}

/// The current time as core sees it (unix seconds).
#[pyfunction]
fn now() -> u64 {
    SystemClock.now()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NativeError", py.get_type::<NativeError>())?;
    // pyo3 turns a panic inside a call into this exception (a BaseException); the package
    // catches it with NativeError and raises it as an `internal` VlexivoError.
    m.add("PanicException", py.get_type::<pyo3::panic::PanicException>())?;
    m.add_class::<ErrorBox>()?;
    m.add_class::<Price>()?;
    m.add_class::<Payment>()?;
    m.add_class::<Paywall>()?;
    m.add_class::<paid::Paid>()?;
    m.add_class::<asgi::PaymentBox>()?;
    m.add_class::<asgi::ResponseWatch>()?;
    m.add_class::<asgi::AsgiMiddleware>()?;
    m.add_class::<Wallet>()?;
    m.add_class::<PaymentRequired>()?;
    m.add_class::<Receipt>()?;
    m.add_class::<TopUpReceipt>()?;
    m.add_class::<FacilitatorRequest>()?;
    m.add_class::<PaymentEvent>()?;
    m.add_class::<Step>()?;
    m.add_class::<Quote>()?;
    m.add_class::<Payer>()?;
    m.add_class::<PayerCall>()?;
    m.add_function(wrap_pyfunction!(parse_price, m)?)?;
    m.add_function(wrap_pyfunction!(parse_amount, m)?)?;
    m.add_function(wrap_pyfunction!(error_for, m)?)?;
    m.add_function(wrap_pyfunction!(error_from_body, m)?)?;
    m.add_function(wrap_pyfunction!(for_browser, m)?)?;
    m.add_function(wrap_pyfunction!(env_var, m)?)?;
    m.add_function(wrap_pyfunction!(parse_payment_required, m)?)?;
    m.add_function(wrap_pyfunction!(auto_top_up_amount, m)?)?;
    m.add_function(wrap_pyfunction!(split_url, m)?)?;
    m.add_function(wrap_pyfunction!(is_free_request, m)?)?;
    m.add_function(wrap_pyfunction!(priced_method, m)?)?;
    m.add_function(wrap_pyfunction!(releases, m)?)?;
    m.add_function(wrap_pyfunction!(sends_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(exposes_headers, m)?)?;
    m.add_function(wrap_pyfunction!(expose_value, m)?)?;
    m.add_function(wrap_pyfunction!(effective_price, m)?)?;
    m.add_function(wrap_pyfunction!(check_stacked, m)?)?;
    m.add_function(wrap_pyfunction!(now, m)?)?;
    mcp::register(m)?;
    m.add_class::<onchain::PyPaymentCheck>()?;
    m.add("ALL_CODES", PyTuple::new(py, Error::ALL_CODES)?)?;
    // Core's error table, (code, status, category, bad_input) per code, and its categories.
    let rows = Error::ALL_CODES
        .iter()
        .filter_map(|c| Error::from_code(c, &serde_json::Value::Null))
        .map(|e| (e.code(), e.http_status(), e.category().as_str(), e.is_bad_input()))
        .collect::<Vec<_>>();
    m.add("ERROR_TABLE", PyTuple::new(py, rows)?)?;
    let categories = vlexivo_core::ErrorCategory::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>();
    m.add("ERROR_CATEGORIES", PyTuple::new(py, categories)?)?;
    // Header names as core spells them.
    m.add("CHALLENGE_HEADER", vlexivo_core::headers::CHALLENGE)?;
    m.add("PROOF_HEADER", vlexivo_core::headers::PROOF)?;
    m.add("RECEIPT_HEADER", vlexivo_core::headers::RECEIPT)?;
    m.add("PAYER_HEADER", vlexivo_core::headers::PAYER)?;
    m.add("EXPOSE_HEADERS", vlexivo_core::headers::EXPOSE)?;
    m.add("PROTOCOL_VERSION", vlexivo_core::PROTOCOL_VERSION)?;
    m.add("DEFAULT_FACILITATOR_URL", vpaywall::DEFAULT_FACILITATOR_URL)?;
    m.add("MAX_RESPONSE_BODY", vclient::MAX_RESPONSE_BODY)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_header_names_are_cores_in_lower_case() {
        assert_eq!(PROOF_NAME, vlexivo_core::headers::PROOF.to_ascii_lowercase().as_bytes());
        assert_eq!(HOST_NAME, b"host");
        assert_eq!(ORIGIN_NAME, b"origin");
    }

    #[test]
    fn latin1_decodes_every_byte_as_its_code_point() {
        assert!(matches!(latin1(b"/a?b"), Cow::Borrowed("/a?b")));
        assert_eq!(latin1(b"/caf\xe9"), "/caf\u{e9}");
        // UTF-8 bytes are two Latin-1 characters each, as Python's decode("latin-1") gives.
        assert_eq!(latin1("é".as_bytes()), "\u{c3}\u{a9}");
    }

    #[test]
    fn a_payment_holds_each_fact_and_cores_receipt() {
        let paid = vpaywall::PaidRef {
            payer: "0x1111111111111111111111111111111111111111",
            amount: "0.001",
            currency: "USDC",
            tx_hash: "0x2222222222222222222222222222222222222222222222222222222222222222",
            nonce: "n_3333",
            paid_at: 1,
            expires_at: 2,
            resource: "GET http://api.test/hello",
            store_key: "acct_44:n_3333~0000000000000005",
        };
        let p = Payment::from_paid(&paid);
        let facts =
            (p.payer(), p.amount(), p.currency(), p.tx_hash(), p.nonce(), p.resource(), p.store_key());
        assert_eq!(
            facts,
            (paid.payer, paid.amount, paid.currency, paid.tx_hash, paid.nonce, paid.resource, paid.store_key)
        );
        assert_eq!((p.paid_at, p.expires_at), (1, 2));
        assert_eq!(p.receipt(), vpaywall::Paywall::receipt(&paid.to_facts()));
    }

    #[test]
    fn every_code_has_a_constructor() {
        for code in Error::ALL_CODES {
            let e = error_for_code(code, "x").unwrap_or_else(|| panic!("no constructor for {code}"));
            assert_eq!(e.code(), *code);
        }
        assert!(error_for_code("nope", "").is_none());
    }
}
