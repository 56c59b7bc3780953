//! Node.js bindings of `vlexivo-core` (napi-rs). Thin on purpose: every rule lives in core; this
//! crate converts types and turns `vlexivo_core::Error` into JS errors that carry the stable
//! `code`, the HTTP `status` and the error's fields as `details`. The TypeScript package maps
//! those to its typed error classes.
//!
//! Every export is `#[napi(catch_unwind)]`: a panic becomes a thrown error (an `internal`
//! VlexivoError in TypeScript), never an abort of the Node process.
//!
//! With a local nonce store (memory, SQLite) everything is synchronous: the provider's hot path
//! (verify a proof, consume its nonce) is a few microseconds of CPU and one local insert, cheaper
//! than a trip through libuv's pool. A networked store (Redis, PostgreSQL) is asked from core's
//! own I/O threads and answers through a promise (`authorizeAsync`), so the event loop never
//! waits on the network.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::borrow::Cow;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::Arc;
use vlexivo_core as vx;
use vx::env::{Clock, OsEntropy, SystemClock};
use vx::paywall::{PaidRef, PaywallConfig, RequestInfo};
use vx::store::Consume;
use vx::store::NonceStore;
use vx::{Currency, Error as VxError, Money};

/// The addon's own allocator (see Cargo.toml): Node's objects are untouched; memory the addon
/// hands to JS (external buffers) is freed by the addon's finalizers, through the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod errors;
mod headers;
mod mcp;
mod onchain;
mod page;
pub use errors::*;
pub use headers::*;
pub use mcp::*;
pub use onchain::*;
pub use page::*;

// A price or amount as JS gives it (`Either<String, f64>`, spelled out in signatures so the
// generated .d.ts says `string | number`): a decimal string, or a number read through its
// shortest round-trip decimal form (`Money::from_f64`), never rounded.

fn money_of(v: &Either<String, f64>, currency: Currency) -> vx::Result<Money> {
    match v {
        Either::A(s) => Money::parse(s, currency),
        Either::B(f) => Money::from_f64(*f, currency),
    }
}

/// A provider's price: any defect is the provider's (`price_invalid`, 500), not the caller's.
fn price_of(v: &Either<String, f64>, currency: &str) -> vx::Result<Money> {
    test_panic(currency);
    vx::paywall::Paywall::price_with(currency, |c| money_of(v, c))
}

fn now_or_clock(now: Option<f64>) -> u64 {
    match now {
        Some(n) if n.is_finite() && n >= 0.0 => n as u64,
        _ => SystemClock.now(),
    }
}

/// `https` when the connection was TLS (`socket.encrypted`), else `http`.
fn scheme_of(secure: Option<bool>) -> &'static str {
    if secure == Some(true) { "https" } else { "http" }
}

fn currency_of(c: &str) -> vx::Result<Currency> {
    test_panic(c);
    Currency::parse(c)
}

/// A test-only build (feature `test-panic`, never published) panics on the currency
/// "test-panic", so the tests can check that a panic in a binding call, a function's or a
/// class method's, reaches JS as an `internal` error (test/panic.mjs).
#[cfg_attr(not(feature = "test-panic"), inline(always))]
fn test_panic(_currency: &str) {
    #[cfg(feature = "test-panic")]
    if _currency == "test-panic" {
        panic!("forced by the test-panic feature");
    }
}

// ---------------------------------------------------------------------------------------------
// Provider side
// ---------------------------------------------------------------------------------------------

#[napi(object)]
pub struct PaywallOptions {
    /// `sk_test_…` or `sk_live_…`.
    pub api_secret: String,
    /// "sandbox" | "live"; must agree with the secret when given.
    pub mode: Option<String>,
    pub facilitator_url: Option<String>,
    /// "sandbox" or CAIP-2 "eip155:<chainId>".
    pub network: Option<String>,
    /// Challenge lifetime in seconds (default 300).
    pub challenge_ttl: Option<u32>,
    /// Clock-skew leeway on token times in seconds (default 30).
    pub leeway: Option<u32>,
    /// Bind challenges and tokens to the request body's SHA-256.
    pub bind_body: Option<bool>,
    /// Nonce store URL (core's `store::spec`): "memory" (default), "sqlite:///path",
    /// "redis://host:port", "redis+cluster://h1:p1,h2:p2", "postgres://…".
    pub nonce_store: Option<String>,
    /// Its options by core's names (`prefix`, `pool_size`, `timeout_ms`, `connect_timeout_ms`,
    /// `capacity`); core refuses unknown ones.
    pub nonce_store_options: Option<HashMap<String, String>>,
    /// The facilitator's JWKS (JSON) to also accept its EdDSA tokens.
    pub jwks: Option<String>,
    /// The origin clients call (`https://api.example.com`); default: each request's own.
    pub origin: Option<String>,
}

/// A response to send instead of running the handler.
#[napi(object)]
pub struct Rejection {
    pub status: u32,
    pub headers: HashMap<String, String>,
    /// JSON text.
    pub body: String,
    pub code: String,
    /// For provider-side faults (5xx): the full error, for the provider's log only (the body
    /// names the code but not the details).
    pub log_message: Option<String>,
}

impl Rejection {
    fn from_core(r: vx::paywall::Rejection, err: Option<&VxError>) -> Self {
        let log_message = err.filter(|e| e.http_status() >= 500).map(|e| e.to_string());
        Self {
            status: r.status.into(),
            headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            body: r.body,
            code: r.code.to_string(),
            log_message,
        }
    }
}

/// What `authorize` returns for a paid request. Setting ten named properties (or ten array
/// elements) from native code costs more than the verification itself, so the facts cross
/// the boundary as ONE string, fields separated by U+001F (unit separator), and JS splits it:
/// `receipt␟payer␟amount␟currency␟txHash␟nonce␟paidAt␟expiresAt␟resource␟storeKey`. The
/// receipt comes first: every paid response sends it, so JS takes it with one forward search
/// and splits the rest only if the application reads the payment.
/// A field that contains the separator (only a hostile-but-signed token could) falls back to
/// the array form `[payer, amount, currency, txHash, nonce, paidAt, expiresAt, resource,
/// storeKey, receipt]`.
type PaidTuple = Vec<Either<String, i64>>;
const SEP: char = '\u{1f}';
/// Fields of the paid line: the receipt and the nine facts.
const PAID_FIELDS: usize = 10;

fn paid_result(f: &PaidRef<'_>) -> Either<Latin1String, PaidTuple> {
    let texts = [f.payer, f.amount, f.currency, f.tx_hash, f.nonce, f.resource, f.store_key];
    // One allocation: the receipt (made of the fields and fixed text), then the fields.
    let mut out = String::with_capacity(2 * texts.iter().map(|t| t.len()).sum::<usize>() + 96);
    f.write_receipt(&mut out);
    let receipt_len = out.len();
    for t in &texts[..5] {
        out.push(SEP);
        out.push_str(t);
    }
    // itoa rather than `write!`: the formatting machinery is a cold detour on the hot path.
    let mut n = itoa::Buffer::new();
    for t in [f.paid_at, f.expires_at] {
        out.push(SEP);
        out.push_str(n.format(t));
    }
    for t in &texts[5..] {
        out.push(SEP);
        out.push_str(t);
    }
    // The line goes out as a one-byte (latin1) string, which V8 copies without decoding: exact
    // for ASCII only, so any other text (and a separator inside a field) takes the array form.
    // Checked once over the fields, both at once in one branch-free pass: no byte above ASCII,
    // and only our 9 separators; the receipt before them is made of fields and fixed ASCII
    // text, so checking the fields checks it. Counted in bytes over chunks a byte cannot
    // overflow, so the compiler keeps 16 bytes a step (a wider count unpacks every vector).
    let fields = &out.as_bytes()[receipt_len..];
    let (mut seps, mut high) = (0usize, 0u8);
    for chunk in fields.chunks(255) {
        let (n, h) = chunk.iter().fold((0u8, 0u8), |(n, h), &b| (n + u8::from(b == SEP as u8), h | b));
        (seps, high) = (seps + usize::from(n), high | h);
    }
    if high < 0x80 && seps == PAID_FIELDS - 1 {
        return Either::A(Latin1String::from(out));
    }
    let s = |t: &str| Either::A(t.to_string());
    let mut receipt = String::new();
    f.write_receipt(&mut receipt);
    Either::B(vec![
        s(f.payer),
        s(f.amount),
        s(f.currency),
        s(f.tx_hash),
        s(f.nonce),
        Either::B(f.paid_at as i64),
        Either::B(f.expires_at as i64),
        s(f.resource),
        s(f.store_key),
        Either::A(receipt),
    ])
}

/// A proof header as its bytes. Node gives header values as one-byte (latin1) strings, so
/// reading them as latin1 is a copy where UTF-8 would re-encode each character; a non-ASCII
/// proof can never verify and reaches the verifier as text that fails as malformed.
fn proof_text(proof: Option<&[u8]>) -> Option<Cow<'_, str>> {
    // A token is ASCII: one word-at-a-time test, where `from_utf8` runs its validator over the
    // ~650 bytes. Anything else is read as `from_utf8_lossy` reads it (valid UTF-8 unchanged).
    proof.map(|p| {
        if p.is_ascii() {
            // SAFETY: every byte is below 0x80, and ASCII text is UTF-8.
            Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(p) })
        } else {
            String::from_utf8_lossy(p)
        }
    })
}

/// Latin1 bytes a string argument may take on the stack (a proof of ours is ~650 characters).
const LATIN1_STACK: usize = 2048;
/// UTF-16 units a string argument may take on the stack (a request path).
const UTF16_STACK: usize = 512;

/// A string argument (`undefined` or `null`: none) as latin1 bytes, read into `buf` (left
/// uninitialised: napi fills what is read) with one napi call. napi-rs's `Latin1String` asks
/// for the length first, then allocates, zeroes and fills a buffer that is freed again when the
/// call returns: for the proof on every paid request, a zeroed allocation and a napi call more
/// than this. A string that fills `buf` may have been cut short and is read again whole
/// (napi-rs's way).
fn latin1_arg<'b>(
    env: &Env,
    v: &Unknown<'_>,
    buf: &'b mut [MaybeUninit<u8>; LATIN1_STACK],
) -> Result<Option<Cow<'b, [u8]>>> {
    let mut written = 0usize;
    // SAFETY: `env` and `v` are this call's live environment and argument; napi writes at most
    // `buf.len()` bytes (the text, then a NUL) into `buf` and the text's length into `written`.
    let status = unsafe {
        sys::napi_get_value_string_latin1(
            env.raw(),
            v.raw(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut written,
        )
    };
    if status == sys::Status::napi_ok {
        if written < buf.len() - 1 {
            // SAFETY: napi initialised the first `written` bytes.
            return Ok(Some(Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(buf.as_ptr().cast(), written)
            })));
        }
        // SAFETY: as above; napi-rs's own conversion of the same value.
        let whole = unsafe { Latin1String::from_napi_value(env.raw(), v.raw()) }?;
        return Ok(Some(Cow::Owned(whole.to_vec())));
    }
    match v.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        _ => Err(Error::new(Status::StringExpected, "expected a string, undefined or null".to_string())),
    }
}

/// A string argument as UTF-16, read into `buf` with one napi call ([`latin1_arg`]'s reasons).
fn utf16_arg<'b>(
    env: &Env,
    v: &Unknown<'_>,
    buf: &'b mut [MaybeUninit<u16>; UTF16_STACK],
) -> Result<Cow<'b, [u16]>> {
    let mut written = 0usize;
    // SAFETY: as in `latin1_arg`, with `buf.len()` UTF-16 units.
    let status = unsafe {
        sys::napi_get_value_string_utf16(env.raw(), v.raw(), buf.as_mut_ptr().cast(), buf.len(), &mut written)
    };
    if status != sys::Status::napi_ok {
        return Err(Error::new(Status::StringExpected, "expected a string".to_string()));
    }
    if written < buf.len() - 1 {
        // SAFETY: napi initialised the first `written` units.
        return Ok(Cow::Borrowed(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), written) }));
    }
    // SAFETY: as above; napi-rs's own conversion of the same value.
    let whole = unsafe { Utf16String::from_napi_value(env.raw(), v.raw()) }?;
    Ok(Cow::Owned(whole.to_vec()))
}

/// The core paywall and its nonce store, shared by the `Paywall` object and its routes.
struct Shared {
    inner: vx::paywall::Paywall,
    store: Arc<dyn NonceStore>,
}

impl Shared {
    /// Verify and consume, or the response to send instead. `price` is already parsed (or its
    /// parse error, which becomes a logged 500).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        price: vx::Result<Money>,
        proof: Option<&str>,
        req: RequestInfo<'_>,
        scope: &str,
        now: Option<f64>,
    ) -> Either3<Latin1String, PaidTuple, Rejection> {
        let now = now_or_clock(now);
        let price = match price {
            Ok(p) => p,
            Err(e) => {
                let r = self.inner.reject(&e, &req, None, scope, now, &OsEntropy);
                return Either3::C(Rejection::from_core(r, Some(&e)));
            }
        };
        let outcome = match vx::paywall::proof_token(proof) {
            // No proof: straight to the challenge (no token parsing, no store access).
            None => Err(VxError::TokenMissing),
            Some(p) => self.inner.verify_with(Some(p), &req, &price, now, &*self.store, paid_result),
        };
        match outcome {
            Ok(paid) => match paid {
                Either::A(line) => Either3::A(line),
                Either::B(tuple) => Either3::B(tuple),
            },
            Err(e) => {
                let r = self.inner.reject(&e, &req, Some(&price), scope, now, &OsEntropy);
                Either3::C(Rejection::from_core(r, Some(&e)))
            }
        }
    }
}

impl Shared {
    /// [`decide`](Self::decide) for a networked store: a refusal found before the store is
    /// asked (no proof, a bad one, a bad price) comes back at once; otherwise a promise that
    /// the store's own I/O threads resolve with the paid facts or the refusal, so the event
    /// loop never waits on the network (and never longer than the store's timeout).
    #[allow(clippy::too_many_arguments)]
    fn decide_async<'env>(
        self: &Arc<Self>,
        env: &'env Env,
        price: vx::Result<Money>,
        proof: Option<&str>,
        req: RequestInfo<'_>,
        scope: &str,
        now: Option<f64>,
    ) -> Result<Either<Rejection, Object<'env>>> {
        let now = now_or_clock(now);
        let refuse = |e: VxError, price: Option<&Money>| {
            Rejection::from_core(self.inner.reject(&e, &req, price, scope, now, &OsEntropy), Some(&e))
        };
        let price = match price {
            Ok(p) => p,
            Err(e) => return Ok(Either::A(refuse(e, None))),
        };
        let checked = match vx::paywall::proof_token(proof) {
            None => Err(VxError::TokenMissing),
            Some(p) => self.inner.check(Some(p), &req, &price, now),
        };
        let pending = match checked {
            Ok(p) => p,
            Err(e) => return Ok(Either::A(refuse(e, Some(&price)))),
        };
        let (deferred, promise) = env.create_deferred()?;
        let shared = Arc::clone(self);
        let owned = OwnedRequest::of(&req);
        let scope = scope.to_string();
        let (key, until, at) = (pending.key().to_string(), pending.consume_until(), pending.now());
        let done = move |consumed: vx::Result<Consume>| {
            let out: Either3<Latin1String, PaidTuple, Rejection> =
                match shared.inner.settle(pending, consumed) {
                    Ok(facts) => match paid_result(&PaidRef::from(&facts)) {
                        Either::A(line) => Either3::A(line),
                        Either::B(tuple) => Either3::B(tuple),
                    },
                    Err(e) => {
                        let r = shared.inner.reject(&e, &owned.req(), Some(&price), &scope, now, &OsEntropy);
                        Either3::C(Rejection::from_core(r, Some(&e)))
                    }
                };
            deferred.resolve(move |_| Ok(out));
        };
        self.store.consume_then(key, until, at, Box::new(done));
        Ok(Either::B(promise))
    }
}

/// A request's facts owned, for a refusal shaped after the store has answered.
struct OwnedRequest {
    method: String,
    path: String,
    scheme: &'static str,
    host: Option<String>,
    body: Option<Vec<u8>>,
    payer: Option<String>,
}

impl OwnedRequest {
    fn of(r: &RequestInfo<'_>) -> Self {
        Self {
            method: r.method.to_string(),
            path: r.path.to_string(),
            scheme: if r.scheme == "https" { "https" } else { "http" },
            host: r.host.map(str::to_string),
            body: r.body.map(<[u8]>::to_vec),
            payer: r.payer.map(str::to_string),
        }
    }

    fn req(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            path: &self.path,
            scheme: self.scheme,
            host: self.host.as_deref(),
            body: self.body.as_deref(),
            payer: self.payer.as_deref(),
        }
    }
}

/// The provider's paywall: a `vlexivo_core::paywall::Paywall` and its nonce store.
/// Every nonce store option core takes, snake_case (`capacity`, `pages_thread`, `prefix`, …):
/// `nonceStoreOptions` takes their camelCase forms.
#[napi(catch_unwind)]
pub fn store_option_names() -> Vec<String> {
    vx::store::spec::option_names().map(String::from).collect()
}

#[napi(js_name = "Paywall")]
pub struct JsPaywall {
    shared: Arc<Shared>,
}

impl JsPaywall {
    fn req<'a>(
        method: &'a str,
        path: &'a str,
        host: Option<&'a str>,
        secure: Option<bool>,
        body: Option<&'a [u8]>,
        payer: Option<&'a str>,
    ) -> RequestInfo<'a> {
        RequestInfo { method, path, scheme: scheme_of(secure), host, body, payer }
    }

    fn build(options: PaywallOptions) -> vx::Result<Self> {
        let mut cfg = PaywallConfig::new(options.api_secret);
        if let Some(m) = options.mode.as_deref() {
            cfg.mode = Some(m.parse()?);
        }
        if let Some(url) = options.facilitator_url {
            cfg.facilitator_url = url;
        }
        cfg.network = options.network;
        if let Some(ttl) = options.challenge_ttl {
            cfg.challenge_ttl_secs = ttl.into();
        }
        if let Some(l) = options.leeway {
            cfg.leeway_secs = l.into();
        }
        cfg.bind_body = options.bind_body.unwrap_or(false);
        cfg.origin = options.origin;
        if let Some(j) = options.jwks {
            cfg.jwks =
                Some(serde_json::from_str(&j).map_err(|_| VxError::Config("jwks is not a JWK set".into()))?);
        }
        let opts = options.nonce_store_options.unwrap_or_default();
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let store = vx::store::open(options.nonce_store.as_deref().unwrap_or("memory"), &opts)?;
        let inner = vx::paywall::Paywall::new(cfg)?;
        Ok(Self { shared: Arc::new(Shared { inner, store }) })
    }
}

#[napi]
impl JsPaywall {
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, options: PaywallOptions) -> Result<Self> {
        Self::build(options).map_err(|e| throw(&env, e))
    }

    /// The provider account id (`acct_…`) derived from the secret.
    #[napi(getter, catch_unwind)]
    pub fn account(&self) -> String {
        self.shared.inner.account().to_string()
    }

    #[napi(getter, catch_unwind)]
    pub fn mode(&self) -> String {
        self.shared.inner.mode().as_str().to_string()
    }

    #[napi(getter, catch_unwind)]
    pub fn facilitator_url(&self) -> String {
        self.shared.inner.facilitator_url().to_string()
    }

    /// The configured origin, or `null` when each request's own is bound.
    #[napi(getter, catch_unwind)]
    pub fn origin(&self) -> Option<String> {
        self.shared.inner.origin().map(|o| o.as_str().to_string())
    }

    #[napi(getter, catch_unwind)]
    pub fn binds_body(&self) -> bool {
        self.shared.inner.binds_body()
    }

    #[napi(getter, catch_unwind)]
    pub fn store_kind(&self) -> String {
        self.shared.store.kind().to_string()
    }

    /// True when the nonce store waits on the network (Redis, PostgreSQL): paid requests go
    /// through `authorizeAsync`, which answers with a promise.
    #[napi(getter, catch_unwind)]
    pub fn store_blocks(&self) -> bool {
        self.shared.store.blocks()
    }

    /// Store operations that failed on the store's side (unreachable, timed out, full) since
    /// this paywall was built.
    #[napi(getter, catch_unwind)]
    pub fn store_failures(&self) -> f64 {
        self.shared.store.failures() as f64
    }

    /// A route at a fixed price: the price is parsed once (`price_invalid` otherwise) and the
    /// hot path then passes only the proof, method and path.
    #[napi(catch_unwind)]
    pub fn route(
        &self,
        env: Env,
        price: Either<String, f64>,
        currency: String,
        scope: Option<String>,
    ) -> Result<PricedRoute> {
        let price = price_of(&price, &currency).map_err(|e| throw(&env, e))?;
        Ok(PricedRoute {
            shared: Arc::clone(&self.shared),
            canonical: price.to_string(),
            price,
            scope: scope.unwrap_or_else(|| "per-call".into()),
        })
    }

    /// Verify a proof for this request at `price` and consume its nonce: the paid facts in the
    /// compact form `authorize` returns (see `PricedRoute.authorize`; the TypeScript
    /// `VlexivoServer.verify` makes the payment object of it). Throws the core error (with
    /// `code`, `status`, `details`) when the proof does not buy the request.
    #[allow(clippy::too_many_arguments)]
    #[napi(
        catch_unwind,
        ts_return_type = "string | [string, string, string, string, string, number, number, string, string, string]"
    )]
    pub fn verify(
        &self,
        env: Env,
        proof: Option<Latin1String>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        price: Either<String, f64>,
        currency: String,
        now: Option<f64>,
        body: Option<Buffer>,
    ) -> Result<Either<Latin1String, PaidTuple>> {
        let run = || -> vx::Result<Either<Latin1String, PaidTuple>> {
            let price = price_of(&price, &currency)?;
            let req = Self::req(&method, &path, host.as_deref(), secure, body.as_deref(), None);
            let s = &self.shared;
            let proof = proof_text(proof.as_deref());
            s.inner.verify_with(proof.as_deref(), &req, &price, now_or_clock(now), &*s.store, paid_result)
        };
        run().map_err(|e| throw(&env, e))
    }

    /// The adapters' path in one call, at a price given per request: verify and consume (a
    /// paid array, see `PricedRoute.authorize`), or the response to send instead (402 with a
    /// fresh challenge, 409 replay, 500 bad price, 503 store down). Never throws for a refusal.
    #[allow(clippy::too_many_arguments)]
    #[napi(
        ts_return_type = "string | [string, string, string, string, string, number, number, string, string, string] | Rejection",
        catch_unwind
    )]
    pub fn authorize(
        &self,
        proof: Option<Latin1String>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        price: Either<String, f64>,
        currency: String,
        scope: String,
        now: Option<f64>,
        body: Option<Buffer>,
        payer: Option<String>,
    ) -> Either3<Latin1String, PaidTuple, Rejection> {
        self.shared.decide(
            price_of(&price, &currency),
            proof_text(proof.as_deref()).as_deref(),
            Self::req(&method, &path, host.as_deref(), secure, body.as_deref(), payer.as_deref()),
            &scope,
            now,
        )
    }

    /// `authorize` for a networked store (`storeBlocks`): a refusal at once, or a promise of
    /// the paid facts or the refusal.
    #[allow(clippy::too_many_arguments)]
    #[napi(
        ts_return_type = "Rejection | Promise<string | [string, string, string, string, string, number, number, string, string, string] | Rejection>",
        catch_unwind
    )]
    pub fn authorize_async<'env>(
        &self,
        env: &'env Env,
        proof: Option<Latin1String>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        price: Either<String, f64>,
        currency: String,
        scope: String,
        now: Option<f64>,
        body: Option<Buffer>,
        payer: Option<String>,
    ) -> Result<Either<Rejection, Object<'env>>> {
        self.shared.decide_async(
            env,
            price_of(&price, &currency),
            proof_text(proof.as_deref()).as_deref(),
            Self::req(&method, &path, host.as_deref(), secure, body.as_deref(), payer.as_deref()),
            &scope,
            now,
        )
    }

    /// Who this request is priced for (core's `Paywall::priced_payer`): the payer of a proof
    /// whose signature, audience, mode and time verify, else the one the `Vlexivo-Payer` hint
    /// names, else `null`. The price resolver's second argument.
    #[napi(catch_unwind)]
    pub fn priced_payer(
        &self,
        proof: Option<Latin1String>,
        hint: Option<String>,
        now: Option<f64>,
    ) -> Option<PricedPayer> {
        self.shared
            .inner
            .priced_payer(proof_text(proof.as_deref()).as_deref(), hint.as_deref(), now_or_clock(now))
            .map(|p| PricedPayer { address: p.address, proven: p.proven })
    }

    /// The one price of several paywalls covering a request (the highest), as a canonical
    /// decimal; `price_invalid` for a bad price or paywalls in different currencies.
    #[napi(catch_unwind)]
    pub fn effective_price(
        &self,
        env: Env,
        prices: Vec<Either<String, f64>>,
        currencies: Vec<String>,
    ) -> Result<String> {
        let run = || -> vx::Result<String> {
            let money = prices
                .iter()
                .zip(currencies.iter().map(String::as_str).chain(std::iter::repeat("usd")))
                .map(|(p, c)| price_of(p, c))
                .collect::<vx::Result<Vec<Money>>>()?;
            Ok(vx::response_policy::effective_price(&money)?.to_string())
        };
        run().map_err(|e| throw(&env, e))
    }

    /// A paywall after the one that consumed the request's proof: `null` when the payment
    /// (`paidAmount` in `paidCurrency`) covers `price`, else the refusal to send (402
    /// `token_underpaid` with a challenge for the price to ask) once the nonce is released.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn check_stacked(
        &self,
        paid_amount: String,
        paid_currency: String,
        price: Either<String, f64>,
        currency: String,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        scope: String,
        now: Option<f64>,
        payer: Option<String>,
    ) -> Option<Rejection> {
        let req = Self::req(&method, &path, host.as_deref(), secure, None, payer.as_deref());
        let now = now_or_clock(now);
        let inner = &self.shared.inner;
        let price = match price_of(&price, &currency) {
            Ok(p) => p,
            Err(e) => {
                return Some(Rejection::from_core(
                    inner.reject(&e, &req, None, &scope, now, &OsEntropy),
                    Some(&e),
                ));
            }
        };
        let paid = Currency::parse(&paid_currency).and_then(|c| Money::parse(&paid_amount, c));
        let ask = match paid.map(|paid| vx::response_policy::check_stacked(&paid, &price)) {
            Ok(vx::response_policy::Stacked::Covered) => return None,
            Ok(vx::response_policy::Stacked::Underpaid { ask }) => ask,
            Err(_) => price,
        };
        let err = VxError::TokenUnderpaid { paid: paid_amount, price: ask.to_string() };
        Some(Rejection::from_core(inner.reject(&err, &req, Some(&ask), &scope, now, &OsEntropy), Some(&err)))
    }

    /// Forget a consumed nonce (the handler failed): the same token may be presented again.
    #[napi(catch_unwind)]
    /// A networked store releases in the background (retrying while it is unreachable), so
    /// this never waits on the network.
    pub fn release(&self, env: Env, store_key: String) -> Result<()> {
        let store = &*self.shared.store;
        if store.blocks() {
            let (key, lease) = vx::store::parse_handle(&store_key).map_err(|e| throw(&env, e))?;
            // The operation is already running on the store's threads; its future is not needed.
            drop(store.release_async(key.to_string(), lease));
            return Ok(());
        }
        vx::paywall::Paywall::release_handle(&store_key, store).map_err(|e| throw(&env, e))
    }

    /// Drop expired nonces; returns how many. Networked stores expire their entries
    /// themselves (Redis by TTL, PostgreSQL by a background purge): 0, without a round trip.
    #[napi(catch_unwind)]
    pub fn purge(&self, env: Env, now: Option<f64>) -> Result<f64> {
        if self.shared.store.blocks() {
            return Ok(0.0);
        }
        self.shared.store.purge(now_or_clock(now)).map(|n| n as f64).map_err(|e| throw(&env, e))
    }

    /// A fresh 402 for this request and price.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn challenge(
        &self,
        env: Env,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        price: Either<String, f64>,
        currency: String,
        scope: Option<String>,
        now: Option<f64>,
        body: Option<Buffer>,
        payer: Option<String>,
    ) -> Result<Rejection> {
        let run = || -> vx::Result<Rejection> {
            let price = price_of(&price, &currency)?;
            let req = Self::req(&method, &path, host.as_deref(), secure, body.as_deref(), payer.as_deref());
            let scope = scope.as_deref().unwrap_or("per-call");
            let r = self.shared.inner.challenge(&req, &price, scope, now_or_clock(now), &OsEntropy)?;
            Ok(Rejection::from_core(r, None))
        };
        run().map_err(|e| throw(&env, e))
    }

    /// Shape any refusal: `code` (with the error's `details`, as a thrown error carries them)
    /// becomes the core error again and then the response core decides. A price is needed for
    /// proof problems to attach a fresh challenge; without one they answer without it.
    #[allow(clippy::too_many_arguments)]
    #[napi(catch_unwind)]
    pub fn reject(
        &self,
        env: Env,
        code: String,
        details: Option<serde_json::Value>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        price: Option<Either<String, f64>>,
        currency: Option<String>,
        scope: Option<String>,
        now: Option<f64>,
    ) -> Result<Rejection> {
        let err = errors::error_from_code(&code, details.as_ref(), None)
            .ok_or_else(|| throw(&env, VxError::Config(format!("unknown error code {code:?}"))))?;
        let price = match price {
            Some(p) => Some(price_of(&p, currency.as_deref().unwrap_or("usd")).map_err(|e| throw(&env, e))?),
            None => None,
        };
        let req = Self::req(&method, &path, host.as_deref(), secure, None, None);
        let scope = scope.as_deref().unwrap_or("per-call");
        let r = self.shared.inner.reject(&err, &req, price.as_ref(), scope, now_or_clock(now), &OsEntropy);
        Ok(Rejection::from_core(r, Some(&err)))
    }
}

/// Who a request is priced for: `proven` from its proof, else hinted (unverified).
#[napi(object)]
pub struct PricedPayer {
    /// EIP-55 address.
    pub address: String,
    pub proven: bool,
}

/// A paid route at a fixed, pre-parsed price (see `Paywall.route`).
#[napi]
pub struct PricedRoute {
    shared: Arc<Shared>,
    price: Money,
    canonical: String,
    scope: String,
}

#[napi]
impl PricedRoute {
    /// Canonical decimal price.
    #[napi(getter, catch_unwind)]
    pub fn price(&self) -> String {
        self.canonical.clone()
    }

    #[napi(getter, catch_unwind)]
    pub fn currency(&self) -> String {
        self.price.currency().code().to_string()
    }

    /// Verify and consume, or the response to send instead. A paid request returns its facts
    /// as one U+001F-separated string (see `paid_result`; rarely the array form).
    #[allow(clippy::too_many_arguments)]
    #[napi(
        ts_return_type = "string | [string, string, string, string, string, number, number, string, string, string] | Rejection",
        catch_unwind
    )]
    pub fn authorize(
        &self,
        proof: Option<Latin1String>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        now: Option<f64>,
        body: Option<Buffer>,
        payer: Option<String>,
    ) -> Either3<Latin1String, PaidTuple, Rejection> {
        self.shared.decide(
            Ok(self.price),
            proof_text(proof.as_deref()).as_deref(),
            JsPaywall::req(&method, &path, host.as_deref(), secure, body.as_deref(), payer.as_deref()),
            &self.scope,
            now,
        )
    }

    /// `authorize` for a networked store: a refusal at once, or a promise of the paid facts
    /// or the refusal.
    #[allow(clippy::too_many_arguments)]
    #[napi(
        ts_return_type = "Rejection | Promise<string | [string, string, string, string, string, number, number, string, string, string] | Rejection>",
        catch_unwind
    )]
    pub fn authorize_async<'env>(
        &self,
        env: &'env Env,
        proof: Option<Latin1String>,
        method: String,
        path: String,
        host: Option<String>,
        secure: Option<bool>,
        now: Option<f64>,
        body: Option<Buffer>,
        payer: Option<String>,
    ) -> Result<Either<Rejection, Object<'env>>> {
        self.shared.decide_async(
            env,
            Ok(self.price),
            proof_text(proof.as_deref()).as_deref(),
            JsPaywall::req(&method, &path, host.as_deref(), secure, body.as_deref(), payer.as_deref()),
            &self.scope,
            now,
        )
    }

    /// This route as a handle for `authorizeFixed`.
    #[napi(getter, catch_unwind, ts_return_type = "ExternalObject<'FixedRoute'>")]
    pub fn handle(&self) -> External<FixedRoute> {
        External::new(FixedRoute {
            shared: Arc::clone(&self.shared),
            price: self.price,
            scope: self.scope.clone(),
        })
    }
}

/// A fixed-price route as `authorizeFixed` takes it (`PricedRoute.handle`).
pub struct FixedRoute {
    shared: Arc<Shared>,
    price: Money,
    scope: String,
}

/// The HTTP methods `authorizeFixed` takes by their index here (`httpMethods()`): a number
/// crosses napi for a few nanoseconds where a string is measured, copied and allocated (about
/// as long as the rest of the crossing). Any other method goes by name (`PricedRoute.authorize`).
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The methods `authorizeFixed` takes by number, in the order of their numbers.
#[napi(catch_unwind)]
pub fn http_methods() -> Vec<String> {
    HTTP_METHODS.iter().map(|m| (*m).to_string()).collect()
}

/// `PricedRoute.authorize` for the adapters' usual paid request: no injected clock, no body
/// binding, no payer hint, a method of `httpMethods()` by its index. A plain function on the
/// route's handle: a method call first finds its object's native half (`napi_unwrap`, a
/// private-property lookup), and each argument given as `undefined` is still converted;
/// together about a sixth of the napi crossing. `host` and `secure` are left out (or
/// undefined) for a paywall with a configured origin, which core binds instead.
#[napi(
    ts_args_type = "route: ExternalObject<'FixedRoute'>, proof: string | undefined | null, method: number, path: string, host?: string | undefined | null, secure?: boolean | undefined | null",
    ts_return_type = "string | [string, string, string, string, string, number, number, string, string, string] | Rejection",
    catch_unwind
)]
pub fn authorize_fixed(
    env: Env,
    route: &External<FixedRoute>,
    proof: Unknown<'_>,
    method: u32,
    path: Unknown<'_>,
    host: Option<String>,
    secure: Option<bool>,
) -> Result<Either3<Latin1String, PaidTuple, Rejection>> {
    let method = usize::try_from(method).ok().and_then(|i| HTTP_METHODS.get(i)).ok_or_else(|| {
        Error::new(Status::InvalidArg, format!("method {method} is not an index of httpMethods()"))
    })?;
    let mut proof_buf = [MaybeUninit::uninit(); LATIN1_STACK];
    let proof = latin1_arg(&env, &proof, &mut proof_buf)?;
    let mut path_buf = [MaybeUninit::uninit(); UTF16_STACK];
    let path = utf16_arg(&env, &path, &mut path_buf)?;
    Ok(with_utf16(&path, |path| {
        route.shared.decide(
            Ok(route.price),
            proof_text(proof.as_deref()).as_deref(),
            JsPaywall::req(method, path, host.as_deref(), secure, None, None),
            &route.scope,
            None,
        )
    }))
}

/// A JS string read as UTF-16 (exact for any string: latin1 would cut characters above U+00FF
/// to a byte), handed to `f` as UTF-8. V8 copies a one-byte string (every URL Node's parser
/// makes) into UTF-16 without looking at it, where its UTF-8 encoder measures and then encodes
/// character by character: an ASCII string of typical length is narrowed on the stack, anything
/// else converted as `String` would (a lone surrogate becomes U+FFFD either way).
fn with_utf16<T>(s: &[u16], f: impl FnOnce(&str) -> T) -> T {
    let mut ascii = [0u8; 256];
    if s.len() <= ascii.len() && s.iter().all(|&c| c < 0x80) {
        for (b, &c) in ascii.iter_mut().zip(s) {
            *b = c.to_le_bytes()[0];
        }
        if let Ok(text) = std::str::from_utf8(&ascii[..s.len()]) {
            return f(text);
        }
    }
    f(&String::from_utf16_lossy(s))
}

// ---------------------------------------------------------------------------------------------
// The response policy (core's `response_policy`): the adapters ask, core decides. Pure functions
// of small inputs: the TypeScript side remembers each answer (see ts/policy.ts).
// ---------------------------------------------------------------------------------------------

/// Whether a request passes unpaid: only a CORS preflight (`OPTIONS` carrying
/// `Access-Control-Request-Method`; `preflightHeader` says whether it does).
#[napi(catch_unwind)]
pub fn is_free_request(method: String, preflight_header: bool) -> bool {
    vx::response_policy::admission(&method, preflight_header) == vx::response_policy::Admission::Free
}

/// Whether a paid request's nonce is released once its handler has ended: `status` of the
/// response it started (`null`: none), whether it threw, whether the response was complete.
#[napi(catch_unwind)]
pub fn releases(status: Option<u32>, raised: bool, complete: bool) -> bool {
    let status = status.and_then(|s| u16::try_from(s).ok()).filter(|s| *s != 0);
    vx::response_policy::Outcome { status, raised, complete }.settlement()
        == vx::response_policy::Settlement::Release
}

/// Whether a paid response with this status carries `Vlexivo-Receipt`.
#[napi(catch_unwind)]
pub fn sends_receipt(status: u32) -> bool {
    vx::response_policy::sends_receipt(u16::try_from(status).unwrap_or(u16::MAX))
}

/// Whether the paywall's answers to a request (its refusals, a paid response's receipt) expose
/// our headers to CORS: `originHeader` says whether the request carries `Origin`.
#[napi(catch_unwind)]
pub fn exposes_headers(origin_header: bool) -> bool {
    vx::response_policy::exposes_headers(origin_header)
}

/// The `Access-Control-Expose-Headers` value of an answer that exposes our headers, given the
/// application's own (`null`: unset): `null` when it needs no change.
#[napi(catch_unwind)]
pub fn expose_value(existing: Option<String>) -> Option<String> {
    vx::response_policy::expose_value(existing.as_deref())
}

/// Parse a provider price (string or number) to its canonical decimal string; any defect is
/// `price_invalid`.
#[napi(catch_unwind)]
pub fn parse_price(env: Env, value: Either<String, f64>, currency: String) -> Result<String> {
    price_of(&value, &currency).map(|m| m.to_string()).map_err(|e| throw(&env, e))
}

/// Parse an amount (string or number) to its canonical decimal string, with the precise money
/// error codes (`amount_malformed`, `amount_precision`, …). Zero is allowed unless `positive`.
#[napi(catch_unwind)]
pub fn parse_money(
    env: Env,
    value: Either<String, f64>,
    currency: String,
    positive: Option<bool>,
) -> Result<String> {
    parse_money_core(&value, &currency, positive.unwrap_or(false))
        .map(|m| m.to_string())
        .map_err(|e| throw(&env, e))
}

fn parse_money_core(value: &Either<String, f64>, currency: &str, positive: bool) -> vx::Result<Money> {
    let m = currency_of(currency).and_then(|c| money_of(value, c))?;
    if positive { m.positive() } else { Ok(m) }
}

/// Exact atomic units of an amount (`"0.001"` usd → `"1000"`), as a decimal string.
#[napi(catch_unwind)]
pub fn money_to_atomic(env: Env, value: Either<String, f64>, currency: String) -> Result<String> {
    parse_money_core(&value, &currency, false).map(|m| m.to_atomic().to_string()).map_err(|e| throw(&env, e))
}

// ---------------------------------------------------------------------------------------------
// Payer side
// ---------------------------------------------------------------------------------------------

#[napi(js_name = "Wallet")]
pub struct JsWallet {
    inner: vx::wallet::Wallet,
}

#[napi]
impl JsWallet {
    /// A new random key (OS entropy).
    #[napi(factory, catch_unwind)]
    pub fn generate() -> Self {
        Self { inner: vx::wallet::Wallet::generate(&OsEntropy) }
    }

    /// A key as 64 hex digits (`0x` optional).
    #[napi(factory, js_name = "import", catch_unwind)]
    pub fn import_key(env: Env, key: String) -> Result<Self> {
        vx::wallet::Wallet::from_hex(&key).map(|inner| Self { inner }).map_err(|e| throw(&env, e))
    }

    /// EIP-55 address.
    #[napi(getter, catch_unwind)]
    pub fn address(&self) -> String {
        self.inner.address().to_checksum()
    }

    /// The private key as `0x` + 64 hex digits.
    #[napi(catch_unwind)]
    pub fn export_key(&self) -> String {
        self.inner.secret_hex()
    }
}

/// Check an address (EIP-55 or lower case) and return its checksummed form.
#[napi(catch_unwind)]
pub fn checksum_address(env: Env, address: String) -> Result<String> {
    vx::wallet::Address::parse(&address).map(|a| a.to_checksum()).map_err(|e| throw(&env, e))
}

#[napi(object)]
pub struct AutoTopUpOptions {
    pub trigger_balance: Either<String, f64>,
    pub top_up_amount: Either<String, f64>,
    /// Most auto top-up may add over the payer's lifetime.
    pub max_total: Option<Either<String, f64>>,
    /// Live mode: the funding wallet's key; its on-chain transfers top the payer up.
    pub funding_key: Option<String>,
    /// Live mode: the chain's JSON-RPC URL for the funding transfers.
    pub rpc_url: Option<String>,
}

#[napi(object)]
pub struct PayerOptions {
    pub wallet_key: String,
    /// The facilitator to pay through (trusted, and where wallet operations go).
    pub facilitator_url: Option<String>,
    /// More trusted facilitators. With neither, `facilitatorEnv`, else the default.
    pub facilitators: Option<Vec<String>>,
    /// The environment's `VLX_FACILITATOR_URL` (read by the caller with `envVar`).
    pub facilitator_env: Option<String>,
    pub max_per_call: Option<Either<String, f64>>,
    pub max_per_host: Option<Either<String, f64>>,
    pub max_total: Option<Either<String, f64>>,
    pub window_seconds: Option<u32>,
    pub window_max: Option<Either<String, f64>>,
    pub auto_top_up: Option<AutoTopUpOptions>,
    /// A fixed clock (unix seconds) instead of the system's: for replaying recorded exchanges.
    pub fixed_now: Option<f64>,
    /// Send the wallet's address on the unpaid request (`Vlexivo-Payer`) so APIs can price by
    /// payer. Default true; false for privacy.
    pub payer_hint: Option<bool>,
}

/// A decoded Vlexivo 402.
#[napi]
pub struct PaymentRequired {
    inner: vx::client::PaymentRequired,
}

#[napi]
impl PaymentRequired {
    /// The challenge as received (base64url).
    #[napi(getter, catch_unwind)]
    pub fn encoded(&self) -> String {
        self.inner.encoded.clone()
    }
    /// Canonical decimal price.
    #[napi(getter, catch_unwind)]
    pub fn price(&self) -> String {
        self.inner.price.to_string()
    }
    #[napi(getter, catch_unwind)]
    pub fn currency(&self) -> String {
        self.inner.price.currency().code().to_string()
    }
    #[napi(getter, catch_unwind)]
    pub fn scope(&self) -> String {
        self.inner.challenge.scope.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn method(&self) -> String {
        self.inner.challenge.method.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn path(&self) -> String {
        self.inner.challenge.path.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn resource(&self) -> String {
        self.inner.challenge.resource()
    }
    #[napi(getter, catch_unwind)]
    pub fn account(&self) -> String {
        self.inner.challenge.account.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn facilitator(&self) -> String {
        self.inner.challenge.facilitator.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn mode(&self) -> String {
        self.inner.challenge.mode.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn network(&self) -> String {
        self.inner.challenge.network.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn nonce(&self) -> String {
        self.inner.challenge.nonce.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn body_sha256(&self) -> Option<String> {
        self.inner.challenge.body_sha256.clone()
    }
    #[napi(getter, catch_unwind)]
    pub fn issued_at(&self) -> i64 {
        self.inner.challenge.iat as i64
    }
    #[napi(getter, catch_unwind)]
    pub fn expires_at(&self) -> i64 {
        self.inner.challenge.exp as i64
    }
}

#[napi(object)]
pub struct PaymentReceipt {
    pub token: String,
    pub tx_hash: String,
    pub payer: String,
    pub amount: String,
    pub currency: String,
    /// The payer's balance after this payment.
    pub balance: String,
    pub nonce: String,
    pub paid_at: i64,
    pub expires_at: i64,
    /// The challenge had already been paid: same token, nothing debited.
    pub replayed: bool,
}

impl From<vx::payment::PaymentReceipt> for PaymentReceipt {
    fn from(r: vx::payment::PaymentReceipt) -> Self {
        Self {
            token: r.token,
            tx_hash: r.tx_hash,
            payer: r.payer,
            amount: r.amount,
            currency: r.currency,
            balance: r.balance,
            nonce: r.nonce,
            paid_at: r.paid_at as i64,
            expires_at: r.expires_at as i64,
            replayed: r.replayed,
        }
    }
}

#[napi(object)]
pub struct TopUpReceipt {
    pub address: String,
    pub amount: String,
    pub balance: String,
    pub currency: String,
    pub tx_hash: String,
}

/// A payment made (for `onPayment`).
#[napi(object)]
pub struct PaymentEvent {
    pub method: String,
    pub url: String,
    pub host: String,
    pub resource: String,
    pub facilitator: String,
    /// What the challenge asked.
    pub price: String,
    pub receipt: PaymentReceipt,
    /// Added by auto top-up before this payment.
    pub topped_up: Option<String>,
    /// A payment an earlier call left in doubt, found paid.
    pub reconciled: bool,
}

/// An HTTP request to the facilitator: send it without following redirects, read at most
/// `maxBody` bytes of the answer.
#[napi(object)]
pub struct FacilitatorRequest {
    pub method: String,
    pub url: String,
    /// JSON (`content-type: application/json`).
    pub body: Option<String>,
    pub facilitator: String,
}

impl From<vx::client::FacilitatorRequest> for FacilitatorRequest {
    fn from(r: vx::client::FacilitatorRequest) -> Self {
        Self { method: r.method.to_string(), url: r.url, body: r.body, facilitator: r.facilitator }
    }
}

/// What the executor does next (`kind`): `send` the request to `url` with `headers` added;
/// `read_body` (at most `limit` bytes) and feed it; `facilitator`: perform `request`;
/// `paid`: run the hook with `event`, then `resume`; `wait` `millis`, then `resume`;
/// `return` the last response.
#[napi(object)]
pub struct PayerStep {
    pub kind: String,
    pub url: Option<String>,
    pub headers: Option<HashMap<String, String>>,
    pub limit: Option<u32>,
    pub request: Option<FacilitatorRequest>,
    pub event: Option<PaymentEvent>,
    pub millis: Option<u32>,
}

impl From<vx::client::Step> for PayerStep {
    fn from(s: vx::client::Step) -> Self {
        use vx::client::Step;
        let mut out = Self {
            kind: String::new(),
            url: None,
            headers: None,
            limit: None,
            request: None,
            event: None,
            millis: None,
        };
        out.kind = match s {
            Step::Send { url, headers } => {
                out.url = Some(url);
                out.headers = Some(headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
                "send"
            }
            Step::ReadBody { limit } => {
                out.limit = Some(u32::try_from(limit).unwrap_or(u32::MAX));
                "read_body"
            }
            Step::Facilitator(r) => {
                out.request = Some(r.into());
                "facilitator"
            }
            Step::Paid(e) => {
                let e = *e;
                out.event = Some(PaymentEvent {
                    method: e.method,
                    url: e.url,
                    host: e.host,
                    resource: e.resource,
                    facilitator: e.facilitator,
                    price: e.price.to_string(),
                    receipt: e.receipt.into(),
                    topped_up: e.topped_up.map(|t| t.to_string()),
                    reconciled: e.reconciled,
                });
                "paid"
            }
            Step::Wait { millis } => {
                out.millis = Some(u32::try_from(millis).unwrap_or(u32::MAX));
                "wait"
            }
            Step::Return => "return",
        }
        .to_string();
        out
    }
}

/// What paying a 402 would send, unsent (nothing stays reserved).
#[napi(object)]
pub struct PaymentQuote {
    pub price: String,
    pub currency: String,
    pub nonce: String,
    pub resource: String,
    pub host: String,
    pub facilitator: String,
    pub pay_url: String,
    /// The signed payment request (JSON).
    pub body: String,
    pub expires_at: i64,
}

#[napi(js_name = "Payer")]
pub struct JsPayer {
    inner: vx::client::Payer,
}

impl JsPayer {
    fn build(o: PayerOptions) -> vx::Result<Self> {
        let wallet = vx::wallet::Wallet::from_hex(&o.wallet_key)?;
        let cur = Currency::Usd;
        let limit = |v: &Option<Either<String, f64>>| -> vx::Result<Option<Money>> {
            v.as_ref().map(|a| money_of(a, cur)).transpose()
        };
        let window = match (o.window_seconds, &o.window_max) {
            (Some(s), Some(m)) if s > 0 => Some((u64::from(s), money_of(m, cur)?)),
            (None, None) => None,
            _ => {
                return Err(VxError::Config("a spending window needs both seconds (> 0) and max".into()));
            }
        };
        let policy = vx::policy::SpendingPolicy {
            max_per_call: limit(&o.max_per_call)?,
            max_total: limit(&o.max_total)?,
            max_per_host: limit(&o.max_per_host)?,
            window,
        };
        let facilitators = vx::client::TrustedFacilitators::new(
            o.facilitator_url.as_deref(),
            &o.facilitators.unwrap_or_default(),
            o.facilitator_env.as_deref(),
        )?;
        let auto_top_up = match &o.auto_top_up {
            None => None,
            Some(a) => Some(vx::client::AutoTopUp {
                enabled: true,
                trigger_balance: money_of(&a.trigger_balance, cur)?,
                top_up_amount: money_of(&a.top_up_amount, cur)?.positive()?,
                max_total: a.max_total.as_ref().map(|m| money_of(m, cur)).transpose()?,
                funding: vx::client::Funding::from_options(
                    a.funding_key.as_deref(),
                    a.rpc_url.as_deref(),
                    "rpcUrl",
                )?,
            }),
        };
        let clock: Arc<dyn Clock> = match o.fixed_now {
            Some(n) if n.is_finite() && n >= 0.0 => Arc::new(vx::env::FixedClock::new(n as u64)),
            Some(_) => return Err(VxError::Config("fixedNow must be unix seconds".into())),
            None => Arc::new(SystemClock),
        };
        let payer_hint = o.payer_hint.unwrap_or(true);
        let config = vx::client::PayerConfig { policy, facilitators, auto_top_up, payer_hint };
        Ok(Self { inner: vx::client::Payer::new(wallet, config, clock) })
    }
}

#[napi]
impl JsPayer {
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, options: PayerOptions) -> Result<Self> {
        Self::build(options).map_err(|e| throw(&env, e))
    }

    /// The wallet's EIP-55 address.
    #[napi(getter, catch_unwind)]
    pub fn address(&self) -> String {
        self.inner.address().to_string()
    }

    /// The trusted facilitators (the first is where wallet operations go).
    #[napi(getter, catch_unwind)]
    pub fn facilitators(&self) -> Vec<String> {
        self.inner.trusted().urls().to_vec()
    }

    /// Spent so far (committed payments).
    #[napi(getter, catch_unwind)]
    pub fn spent_total(&self) -> String {
        self.inner.spent_total().to_string()
    }

    /// Reserved by payments in flight or in doubt.
    #[napi(getter, catch_unwind)]
    pub fn reserved_total(&self) -> String {
        self.inner.reserved_total().to_string()
    }

    /// Payments whose fate is unknown (counted as spent until it is).
    #[napi(getter, catch_unwind)]
    pub fn in_doubt_total(&self) -> String {
        self.inner.in_doubt_total().to_string()
    }

    #[napi(catch_unwind)]
    pub fn spent_for_host(&self, host: String) -> String {
        self.inner.budget().spent_for_host(&host).to_string()
    }

    /// Start the payer flow for one request (`replayable`: its body can be sent twice).
    #[napi(catch_unwind)]
    pub fn call(&self, env: Env, method: String, url: String, replayable: bool) -> Result<PayerCall> {
        self.inner
            .call(&method, &url, replayable)
            .map(|inner| PayerCall { inner })
            .map_err(|e| throw(&env, e))
    }

    /// Check a 402 against the request and the policy and sign, without paying.
    #[napi(catch_unwind)]
    pub fn quote(&self, env: Env, pr: &PaymentRequired, method: String, url: String) -> Result<PaymentQuote> {
        let q = self.inner.quote(&pr.inner, &method, &url).map_err(|e| throw(&env, e))?;
        Ok(PaymentQuote {
            price: q.price.to_string(),
            currency: q.price.currency().code().to_string(),
            nonce: q.nonce,
            resource: q.resource,
            host: q.host,
            facilitator: q.facilitator,
            pay_url: q.pay_url,
            body: q.body,
            expires_at: q.expires_at as i64,
        })
    }

    /// `GET /v1/wallets/{address}` at `facilitator` (default: the first trusted).
    #[napi(catch_unwind)]
    pub fn balance_request(&self, env: Env, facilitator: Option<String>) -> Result<FacilitatorRequest> {
        self.inner.balance_request(facilitator.as_deref()).map(Into::into).map_err(|e| throw(&env, e))
    }

    #[napi(catch_unwind)]
    pub fn read_balance(
        &self,
        env: Env,
        req: FacilitatorRequest,
        status: u32,
        body: Buffer,
    ) -> Result<String> {
        let req = core_request(req);
        self.inner
            .read_balance(&req, status_of(status), &body)
            .map(|m| m.to_string())
            .map_err(|e| throw(&env, e))
    }

    /// `POST /v1/wallets/{address}/topup` (the sandbox faucet).
    #[napi(catch_unwind)]
    pub fn top_up_request(
        &self,
        env: Env,
        amount: Either<String, f64>,
        facilitator: Option<String>,
    ) -> Result<FacilitatorRequest> {
        money_of(&amount, Currency::Usd)
            .and_then(|a| self.inner.top_up_request(&a, facilitator.as_deref()))
            .map(Into::into)
            .map_err(|e| throw(&env, e))
    }

    #[napi(catch_unwind)]
    pub fn read_top_up(
        &self,
        env: Env,
        req: FacilitatorRequest,
        status: u32,
        body: Buffer,
    ) -> Result<TopUpReceipt> {
        let req = core_request(req);
        let r = self.inner.read_top_up(&req, status_of(status), &body).map_err(|e| throw(&env, e))?;
        Ok(TopUpReceipt {
            address: r.address,
            amount: r.amount,
            balance: r.balance,
            currency: r.currency,
            tx_hash: r.tx_hash,
        })
    }
}

fn status_of(status: u32) -> u16 {
    u16::try_from(status).unwrap_or(599)
}

fn core_request(r: FacilitatorRequest) -> vx::client::FacilitatorRequest {
    vx::client::FacilitatorRequest {
        method: if r.method == "GET" { "GET" } else { "POST" },
        url: r.url,
        body: r.body,
        facilitator: r.facilitator,
    }
}

/// One request through the payer flow: feed it what happened, do the step it returns.
#[napi]
pub struct PayerCall {
    inner: vx::client::Call,
}

#[napi]
impl PayerCall {
    #[napi(catch_unwind)]
    pub fn start(&mut self) -> PayerStep {
        self.inner.start().into()
    }

    /// The API answered (`body` only once a `read_body` step asked for it; `url` where the
    /// request ended up after redirects).
    #[napi(catch_unwind)]
    pub fn response(
        &mut self,
        env: Env,
        status: u32,
        headers: Option<HashMap<String, String>>,
        body: Option<Buffer>,
        url: Option<String>,
    ) -> Result<PayerStep> {
        let headers = headers.unwrap_or_default();
        self.inner
            .response(
                status_of(status),
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                body.as_deref(),
                url.as_deref(),
            )
            .map(Into::into)
            .map_err(|e| throw(&env, e))
    }

    /// The facilitator answered the last `facilitator` step.
    #[napi(catch_unwind)]
    pub fn answer(&mut self, env: Env, status: u32, body: Buffer) -> Result<PayerStep> {
        self.inner.answer(status_of(status), &body).map(Into::into).map_err(|e| throw(&env, e))
    }

    /// The last `facilitator` step failed without an answer (`sent`: anything but a failure
    /// to connect).
    #[napi(catch_unwind)]
    pub fn transport_error(&mut self, env: Env, sent: bool, reason: String) -> Result<PayerStep> {
        self.inner.transport_error(sent, &reason).map(Into::into).map_err(|e| throw(&env, e))
    }

    /// Go on after `paid` or `wait`.
    #[napi(catch_unwind)]
    pub fn resume(&mut self, env: Env) -> Result<PayerStep> {
        self.inner.resume().map(Into::into).map_err(|e| throw(&env, e))
    }

    /// Sending the API request failed (the caller rethrows its own error).
    #[napi(catch_unwind)]
    pub fn request_failed(&mut self) {
        self.inner.request_failed();
    }

    /// The challenge's price, once a 402 was read.
    #[napi(getter, catch_unwind)]
    pub fn price(&self) -> Option<String> {
        self.inner.price().map(|p| p.to_string())
    }
}

/// Is this response a Vlexivo 402? `headers` may hold any response headers (names are
/// case-insensitive); the challenge is read from `Vlexivo-Challenge` or the JSON body.
#[napi(catch_unwind)]
pub fn parse_payment_required(
    env: Env,
    status: u32,
    headers: Option<HashMap<String, String>>,
    body: Option<Buffer>,
) -> Result<PaymentRequired> {
    let headers = headers.unwrap_or_default();
    let status = u16::try_from(status).unwrap_or(0);
    vx::client::parse_payment_required(
        status,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body.as_deref().unwrap_or_default(),
    )
    .map(|inner| PaymentRequired { inner })
    .map_err(|e| throw(&env, e))
}

/// How much to top up before paying `price` from `balance` (`null` when nothing is needed).
#[napi(catch_unwind)]
pub fn auto_top_up_amount(
    env: Env,
    balance: Either<String, f64>,
    price: Either<String, f64>,
    trigger_balance: Either<String, f64>,
    top_up_amount: Either<String, f64>,
) -> Result<Option<String>> {
    let run = || -> vx::Result<Option<String>> {
        let usd = Currency::Usd;
        let atu = vx::client::AutoTopUp::of(
            money_of(&trigger_balance, usd)?,
            money_of(&top_up_amount, usd)?.positive()?,
        );
        let amount = atu.amount_before(&money_of(&balance, usd)?, &money_of(&price, usd)?)?;
        Ok(amount.map(|m| m.to_string()))
    };
    run().map_err(|e| throw(&env, e))
}

/// Largest 402 or facilitator body the payer reads.
#[napi]
pub const MAX_RESPONSE_BODY: u32 = vx::client::MAX_RESPONSE_BODY as u32;

/// The proof header's name.
#[napi]
pub const PROOF_HEADER: &str = vx::headers::PROOF;

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// The provider account id for a secret.
#[napi(catch_unwind)]
pub fn account_for_secret(env: Env, api_secret: String) -> Result<String> {
    vx::keys::ProviderKeys::from_secret(&api_secret).map(|k| k.account).map_err(|e| throw(&env, e))
}

/// The value of a `VLX_*` variable (core's `envvars` table) in `env` (`process.env`): its name
/// first, then its older aliases; `null` when unset. Both set to different values, or a name
/// the table does not have, throws `config_invalid`.
#[napi(catch_unwind)]
pub fn env_var(env: Env, name: String, vars: HashMap<String, String>) -> Result<Option<String>> {
    let var = vx::envvars::by_name(&name).ok_or_else(|| {
        throw(&env, VxError::Config(format!("{name} is not a Vlexivo environment variable")))
    })?;
    var.read(|n| vars.get(n).cloned()).map_err(|e| throw(&env, e))
}

/// Unix seconds from the system clock (what the paywall uses when no clock is injected).
#[napi(catch_unwind)]
pub fn now_seconds() -> f64 {
    SystemClock.now() as f64
}
