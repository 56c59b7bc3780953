//! A tower [`Layer`] that paywalls axum routes with Vlexivo.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Extension, Router};
//! use vlexivo_core::{paywall::{Paywall, PaywallConfig, PaymentFacts}, store::MemoryStore};
//! use vlexivo_tower::{PaywallLayer, Price};
//!
//! # fn app(secret: &str) -> Router {
//! let paywall = Arc::new(Paywall::new(PaywallConfig::new(secret)).unwrap());
//! let store = Arc::new(MemoryStore::new());
//! Router::new().route(
//!     "/api/v1/hello",
//!     get(|Extension(paid): Extension<PaymentFacts>| async move { format!("paid by {}", paid.payer) })
//!         .layer(PaywallLayer::new(paywall, store, Price::fixed("0.001"))),
//! )
//! # }
//! ```
//!
//! Every decision (challenge, verification, nonce consumption, refusal bodies) is
//! [`Paywall`]'s; this module only moves bytes between axum and it.

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use vlexivo_core::env::{Clock, Entropy, OsEntropy, SystemClock};
use vlexivo_core::paywall::{PaymentFacts, Paywall, Rejection, RequestInfo};
use vlexivo_core::store::NonceStore;
use vlexivo_core::{Currency, Error, Money};

/// Default cap on a body the layer buffers (for body binding or a body-reading price).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Headers a browser may read from a paywalled response.
const EXPOSE: &str = "Vlexivo-Challenge, Vlexivo-Receipt";

// ---------------------------------------------------------------------------------------------
// Prices

/// What a price resolver may return: a decimal string, a [`Money`], a [`Decimal`], or a
/// `Result`/`Option` of those (an `Err`/`None` is the provider's bug: 500 `price_invalid`).
pub trait IntoPrice {
    fn into_price(self, currency: Currency) -> Result<Money, Error>;
}

impl IntoPrice for &str {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        Paywall::parse_price(self, currency.code())
    }
}

impl IntoPrice for String {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        self.as_str().into_price(currency)
    }
}

impl IntoPrice for Money {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        if self.currency() != currency {
            return Err(Error::PriceInvalid(format!(
                "price in {} but the paywall charges {}",
                self.currency(),
                currency
            )));
        }
        self.positive().map_err(|e| Error::PriceInvalid(e.to_string()))
    }
}

impl IntoPrice for Decimal {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        Money::new(self, currency).and_then(Money::positive).map_err(|e| Error::PriceInvalid(e.to_string()))
    }
}

impl<T: IntoPrice, E: fmt::Display> IntoPrice for Result<T, E> {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        match self {
            Ok(p) => p.into_price(currency),
            Err(e) => Err(Error::PriceInvalid(e.to_string())),
        }
    }
}

impl<T: IntoPrice> IntoPrice for Option<T> {
    fn into_price(self, currency: Currency) -> Result<Money, Error> {
        match self {
            Some(p) => p.into_price(currency),
            None => Err(Error::PriceInvalid("the price resolver returned no price".into())),
        }
    }
}

type SyncFn = dyn Fn(&Parts, Option<&Bytes>, Currency) -> Result<Money, Error> + Send + Sync;
type AsyncFn =
    dyn Fn(Parts, Option<Bytes>, Currency) -> BoxFuture<'static, Result<Money, Error>> + Send + Sync;

#[derive(Clone)]
enum PriceKind {
    Fixed(String),
    Sync(Arc<SyncFn>),
    Async(Arc<AsyncFn>),
}

/// How a route is priced: fixed, or computed per request (sync or async, from the request head
/// or also from its body).
#[derive(Clone)]
pub struct Price {
    kind: PriceKind,
    /// The resolver reads the body, so the layer buffers it.
    needs_body: bool,
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PriceKind::Fixed(p) => write!(f, "Price::fixed({p:?})"),
            PriceKind::Sync(_) => write!(f, "Price::dynamic(needs_body: {})", self.needs_body),
            PriceKind::Async(_) => write!(f, "Price::dynamic_async(needs_body: {})", self.needs_body),
        }
    }
}

impl Price {
    /// One price for every call, e.g. `Price::fixed("0.001")`. Checked when the layer is built
    /// into a service and on every request (a bad one is a 500, never a free call).
    pub fn fixed(price: impl Into<String>) -> Self {
        Self { kind: PriceKind::Fixed(price.into()), needs_body: false }
    }

    /// Priced from the request head: `Price::dynamic(|parts| if … { "0.01" } else { "0.001" })`.
    pub fn dynamic<F, P>(f: F) -> Self
    where
        F: Fn(&Parts) -> P + Send + Sync + 'static,
        P: IntoPrice,
    {
        Self {
            kind: PriceKind::Sync(Arc::new(move |parts, _, cur| f(parts).into_price(cur))),
            needs_body: false,
        }
    }

    /// Priced from the head and the (buffered) body, e.g. by the `model` of a JSON body.
    pub fn dynamic_with_body<F, P>(f: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> P + Send + Sync + 'static,
        P: IntoPrice,
    {
        Self {
            kind: PriceKind::Sync(Arc::new(move |parts, body, cur| {
                f(parts, body.map(|b| &b[..]).unwrap_or_default()).into_price(cur)
            })),
            needs_body: true,
        }
    }

    /// Priced asynchronously (a database, a quote service):
    /// `Price::dynamic_async(|parts| async move { lookup(parts.uri.path()).await })`.
    /// The resolver gets its own copy of the request head.
    pub fn dynamic_async<F, Fut, P>(f: F) -> Self
    where
        F: Fn(Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = P> + Send + 'static,
        P: IntoPrice,
    {
        Self {
            kind: PriceKind::Async(Arc::new(move |parts, _, cur| {
                let fut = f(parts);
                Box::pin(async move { fut.await.into_price(cur) })
            })),
            needs_body: false,
        }
    }

    /// Asynchronous, from the head and the buffered body.
    pub fn dynamic_async_with_body<F, Fut, P>(f: F) -> Self
    where
        F: Fn(Parts, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = P> + Send + 'static,
        P: IntoPrice,
    {
        Self {
            kind: PriceKind::Async(Arc::new(move |parts, body, cur| {
                let fut = f(parts, body.unwrap_or_default());
                Box::pin(async move { fut.await.into_price(cur) })
            })),
            needs_body: true,
        }
    }

    async fn resolve(&self, parts: &Parts, body: Option<&Bytes>, cur: Currency) -> Result<Money, Error> {
        match &self.kind {
            PriceKind::Fixed(p) => p.as_str().into_price(cur),
            PriceKind::Sync(f) => f(parts, body, cur),
            PriceKind::Async(f) => f(parts.clone(), body.cloned(), cur).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layer

/// Paywalls the services it wraps. Cheap to clone.
#[derive(Clone)]
pub struct PaywallLayer {
    cfg: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    paywall: Arc<Paywall>,
    store: Arc<dyn NonceStore>,
    price: Price,
    scope: String,
    currency: Currency,
    max_body: usize,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

impl fmt::Debug for PaywallLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaywallLayer")
            .field("account", &self.cfg.paywall.account())
            .field("price", &self.cfg.price)
            .field("scope", &self.cfg.scope)
            .field("currency", &self.cfg.currency)
            .field("store", &self.cfg.store.kind())
            .finish()
    }
}

impl PaywallLayer {
    /// A layer whose nonce store is named by URL (`memory`, `sqlite:///path`, `redis://…`,
    /// `redis+cluster://…`, `postgres://…`; see `vlexivo_core::store::spec`) with `options`
    /// (`prefix`, `pool_size`, `timeout_ms`, `connect_timeout_ms`, `capacity`). An unknown
    /// scheme or option, or a server that does not answer, is `config_invalid`. Redis and
    /// PostgreSQL need this crate's `redis` / `postgres` features.
    pub fn with_store_url(
        paywall: Arc<Paywall>,
        store_url: &str,
        options: &[(&str, &str)],
        price: Price,
    ) -> Result<Self, Error> {
        Ok(Self::new(paywall, vlexivo_core::store::open(store_url, options)?, price))
    }

    pub fn new(paywall: Arc<Paywall>, store: Arc<dyn NonceStore>, price: Price) -> Self {
        Self {
            cfg: Arc::new(Config {
                paywall,
                store,
                price,
                scope: "per-call".into(),
                currency: Currency::Usd,
                max_body: DEFAULT_MAX_BODY_BYTES,
                clock: Arc::new(SystemClock),
                entropy: Arc::new(OsEntropy),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.cfg));
        self
    }

    /// Pricing scope carried in challenges ("per-call", the default).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.edit(|c| c.scope = scope)
    }

    /// Currency of the prices ("usd", the default). An unknown code makes every request a
    /// 500 `price_invalid` (and an error in the log), never a free call.
    pub fn currency(self, code: &str) -> Self {
        match Currency::parse(code) {
            Ok(cur) => self.edit(|c| c.currency = cur),
            Err(e) => {
                let msg = format!("currency {code:?}: {e}");
                tracing::error!(target: "vlexivo", "paywall misconfigured: {msg}");
                let price = Price {
                    kind: PriceKind::Sync(Arc::new(move |_, _, _| Err(Error::PriceInvalid(msg.clone())))),
                    needs_body: false,
                };
                self.edit(|c| c.price = price)
            }
        }
    }

    /// Largest body buffered for body binding or a body-reading price (413 above it).
    pub fn max_body_bytes(self, n: usize) -> Self {
        self.edit(|c| c.max_body = n)
    }

    /// Inject the clock (tests); the system clock by default.
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.edit(|c| c.clock = clock)
    }

    /// Inject the challenge-nonce randomness (tests); the OS RNG by default.
    pub fn entropy(self, entropy: Arc<dyn Entropy>) -> Self {
        self.edit(|c| c.entropy = entropy)
    }
}

impl<S> Layer<S> for PaywallLayer {
    type Service = PaywallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if let PriceKind::Fixed(p) = &self.cfg.price.kind {
            // Say it at startup rather than on the first request.
            if let Err(e) = p.as_str().into_price(self.cfg.currency) {
                tracing::error!(target: "vlexivo", price = %p, "paywall price is invalid: {e}");
            }
        }
        PaywallService { inner, cfg: self.cfg.clone() }
    }
}

/// The service [`PaywallLayer`] produces.
#[derive(Clone)]
pub struct PaywallService<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S> fmt::Debug for PaywallService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaywallService").field("account", &self.cfg.paywall.account()).finish()
    }
}

impl<S, ResBody> Service<Request<Body>> for PaywallService<S>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        Box::pin(handle(cfg, inner, req))
    }
}

async fn handle<S, ResBody>(cfg: Arc<Config>, inner: S, req: Request<Body>) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>>,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let (parts, body) = req.into_parts();
    // Under `Router::nest` the URI is stripped of the prefix; the client paid for the full path.
    let target = match parts.extensions.get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path().to_string(),
        None => parts.uri.path().to_string(),
    };
    let method = parts.method.as_str().to_string();
    let now = cfg.clock.now();

    // Buffer only when something reads the body: body binding or a body-based price.
    let buffered: Option<Bytes> = if cfg.paywall.binds_body() || cfg.price.needs_body {
        match http_body_util::Limited::new(body, cfg.max_body).collect().await {
            Ok(c) => Some(c.to_bytes()),
            Err(e) => {
                let err = if e.is::<http_body_util::LengthLimitError>() {
                    Error::RequestTooLarge { limit: cfg.max_body }
                } else {
                    Error::RequestMalformed("could not read the request body".into())
                };
                let info = RequestInfo::new(&method, "http", None, &target);
                return Ok(rejection(cfg.paywall.reject(&err, &info, None, &cfg.scope, now, &*cfg.entropy)));
            }
        }
    } else {
        // Not read: hand the stream to the handler untouched.
        let req = Request::from_parts(parts, body);
        return paid_or_refused(cfg, inner, req, None, &method, &target, now).await;
    };
    let req = Request::from_parts(parts, Body::from(buffered.clone().unwrap_or_default()));
    paid_or_refused(cfg, inner, req, buffered, &method, &target, now).await
}

async fn paid_or_refused<S, ResBody>(
    cfg: Arc<Config>,
    mut inner: S,
    req: Request<Body>,
    body: Option<Bytes>,
    method: &str,
    path: &str,
    now: u64,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>>,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let (mut parts, req_body) = req.into_parts();
    let (scheme, host) = request_origin(&parts);
    let info = RequestInfo { method, path, scheme, host: host.as_deref(), body: body.as_deref() };
    let paywall = &*cfg.paywall;

    let price = match cfg.price.resolve(&parts, body.as_ref(), cfg.currency).await {
        Ok(p) => p,
        Err(e) => {
            // The provider's bug: log it for them, answer 500, never serve the call for free.
            tracing::error!(target: "vlexivo", route = %format!("{method} {path}"), "price resolver failed: {e}");
            let err = match e {
                Error::PriceInvalid(_) => e,
                other => Error::PriceInvalid(other.to_string()),
            };
            return Ok(rejection(paywall.reject(&err, &info, None, &cfg.scope, now, &*cfg.entropy)));
        }
    };

    let proof = match parts.headers.get(vlexivo_core::headers::PROOF) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => {
                let err = Error::TokenMalformed("header");
                return Ok(rejection(paywall.reject(
                    &err,
                    &info,
                    Some(&price),
                    &cfg.scope,
                    now,
                    &*cfg.entropy,
                )));
            }
        },
    };

    // A networked store is awaited (its I/O runs on the store's own runtime); a local one
    // answers inline in microseconds.
    let verified = if cfg.store.blocks() {
        paywall.verify_async(proof, &info, &price, now, &*cfg.store).await
    } else {
        paywall.verify(proof, &info, &price, now, &*cfg.store)
    };
    let facts = match verified {
        Ok(f) => f,
        Err(e) => {
            if matches!(e, Error::NonceStoreUnavailable(_) | Error::NonceStoreFull | Error::Internal(_)) {
                tracing::error!(target: "vlexivo", "nonce store failed: {e}");
            }
            return Ok(rejection(paywall.reject(&e, &info, Some(&price), &cfg.scope, now, &*cfg.entropy)));
        }
    };

    // From here the nonce is consumed: give it back unless the handler produced a non-5xx
    // response (an error, a panic or a dropped future all release it).
    let guard = ReleaseGuard { cfg: &cfg, facts: Some(facts.clone()) };
    parts.extensions.insert(facts.clone());
    let result = inner.call(Request::from_parts(parts, req_body)).await;
    match result {
        Ok(res) if !res.status().is_server_error() => {
            guard.disarm();
            let mut res = res.map(Body::new);
            if let Ok(v) = HeaderValue::from_str(&Paywall::receipt(&facts)) {
                res.headers_mut().insert(HeaderName::from_static("vlexivo-receipt"), v);
            }
            expose_headers(&mut res);
            Ok(res)
        }
        Ok(res) => {
            drop(guard); // releases
            let mut res = res.map(Body::new);
            expose_headers(&mut res);
            Ok(res)
        }
        Err(e) => {
            drop(guard);
            Err(e)
        }
    }
}

/// The request's scheme and `Host` (HTTP/2: the URI's authority), for a paywall without a
/// configured origin. hyper does not say whether the connection was TLS: a server behind TLS
/// configures `PaywallConfig::origin`.
fn request_origin(parts: &Parts) -> (&'static str, Option<String>) {
    let scheme = if parts.uri.scheme_str() == Some("https") { "https" } else { "http" };
    let host = match parts.headers.get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_string),
        None => parts.uri.authority().map(|a| a.as_str().to_string()),
    };
    (scheme, host)
}

/// Releases the consumed nonce on drop unless disarmed.
struct ReleaseGuard<'a> {
    cfg: &'a Config,
    facts: Option<PaymentFacts>,
}

impl ReleaseGuard<'_> {
    fn disarm(mut self) {
        self.facts = None;
    }
}

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        if let Some(facts) = self.facts.take() {
            let store = &*self.cfg.store;
            if store.blocks() {
                // Never wait on the network in a destructor: the store releases in the
                // background (and keeps retrying while it is unreachable).
                if let Ok((key, lease)) = vlexivo_core::store::parse_handle(&facts.store_key) {
                    drop(store.release_async(key.to_string(), lease));
                }
                return;
            }
            if let Err(e) = self.cfg.paywall.release(&facts, store) {
                tracing::error!(target: "vlexivo", nonce = %facts.nonce, "could not release a nonce after a failed handler: {e}");
            } else {
                tracing::debug!(target: "vlexivo", nonce = %facts.nonce, "handler failed; payment stays valid for a retry");
            }
        }
    }
}

/// A core [`Rejection`] as an axum response.
pub fn rejection(r: Rejection) -> Response {
    let mut res = Response::new(Body::from(r.body));
    *res.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            h.insert(k, v);
        }
    }
    expose_headers(&mut res);
    res
}

fn expose_headers(res: &mut Response) {
    let h = res.headers_mut();
    let merged = match h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).and_then(|v| v.to_str().ok()) {
        Some(existing) if existing.trim() == "*" => return,
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {EXPOSE}"),
        _ => EXPOSE.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&merged) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}
