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
//!
//! Pricing by payer: a dynamic price finds who the request is priced for in the request's
//! extensions, `parts.extensions.get::<vlexivo_core::payer_pricing::PricedPayer>()` — the
//! payer its proof proves on the paid retry, else the one its `Vlexivo-Payer` hint names on the
//! unpaid request (unverified), else none. The challenge then names the hinted payer and the
//! retry is priced again for the proven one, so a borrowed address is never served cheaper.

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
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{Layer, Service};
use vlexivo_core::env::{Clock, Entropy, OsEntropy, SystemClock};
use vlexivo_core::paywall::{PaymentFacts, Paywall, Rejection, RequestInfo};
use vlexivo_core::response_policy::{self, Admission, Outcome, Settlement, Stacked};
use vlexivo_core::store::NonceStore;
use vlexivo_core::{Currency, Error, Money};

/// Default cap on a body the layer buffers (for body binding or a body-reading price).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

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

    fn is_fixed(&self) -> bool {
        matches!(self.kind, PriceKind::Fixed(_))
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
    /// The paywalls inside this one, declared per matched path ([`PaywallLayer::around`]).
    declared: Vec<(String, usize, Price)>,
    /// Prices undeclared paywalls inside this one taught it, per route.
    learned: Arc<Learned>,
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
        Ok(Self::new(paywall, vlexivo_core::store::StoreSpec::parse(store_url, options)?.open()?, price))
    }

    /// A layer over `store` (wrapped to count its failures: [`store_failures`](Self::store_failures)).
    pub fn new(paywall: Arc<Paywall>, store: Arc<dyn NonceStore>, price: Price) -> Self {
        Self {
            cfg: Arc::new(Config {
                paywall,
                store: Arc::new(vlexivo_core::store::Metered::new(store)),
                price,
                scope: "per-call".into(),
                currency: Currency::Usd,
                max_body: DEFAULT_MAX_BODY_BYTES,
                clock: Arc::new(SystemClock),
                entropy: Arc::new(OsEntropy),
                declared: Vec::new(),
                learned: Arc::default(),
            }),
        }
    }

    /// Nonce-store operations that failed on the store's side (unreachable, timed out, full)
    /// since this layer was built; each failed request also logs an error (target `vlexivo`).
    pub fn store_failures(&self) -> u64 {
        self.cfg.store.failures()
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

    /// Declares that `inner`, a paywall of the same [`Paywall`], guards the route matched as
    /// `path` (axum's `MatchedPath`: the full path, nest prefixes included) inside this layer.
    /// The request's first 402 then asks the effective price of both, once, and one proof
    /// covers both:
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use axum::{routing::get, Router};
    /// # use vlexivo_core::{paywall::Paywall, store::NonceStore};
    /// # use vlexivo_tower::{PaywallLayer, Price};
    /// # fn app(paywall: Arc<Paywall>, store: Arc<dyn NonceStore>) -> Router {
    /// let premium = PaywallLayer::new(paywall.clone(), store.clone(), Price::fixed("0.05"));
    /// Router::new()
    ///     .route("/api/premium", get(|| async { "premium" }).layer(premium.clone()))
    ///     .route("/api/basic", get(|| async { "basic" }))
    ///     .layer(PaywallLayer::new(paywall, store, Price::fixed("0.001")).around("/api/premium", &premium))
    /// # }
    /// ```
    ///
    /// axum offers a layer no view of the layers inside it, so this is declared. Undeclared,
    /// the outer layer asks its own price on the route's first request, the inner one refuses
    /// it (`token_underpaid`, the nonce given back) and asks the effective price, and the outer
    /// one learns it for later requests; it logs a warning naming the route when that happens.
    pub fn around(self, path: impl Into<String>, inner: &PaywallLayer) -> Self {
        let entry = (path.into(), layer_id(&inner.cfg), inner.cfg.price.clone());
        self.edit(|c| c.declared.push(entry))
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
    let earlier = parts.extensions.get::<Paid>().filter(|p| Arc::ptr_eq(&p.paywall, &cfg.paywall)).cloned();

    if earlier.is_none() {
        let preflight = parts.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if response_policy::admission(&method, preflight) == Admission::Free {
            return call_inner(inner, Request::from_parts(parts, body)).await;
        }
    }
    let exposes = response_policy::exposes_headers(parts.headers.contains_key(header::ORIGIN));
    // This paywall's own price, and those the paywalls inside it taught it for this route.
    let key = route_key(&parts, &target);
    let inner_prices = if earlier.is_none() { cfg.inner_prices(&key) } else { Vec::new() };

    // Buffer only when something reads the body: body binding or a body-based price.
    let needs_body =
        cfg.paywall.binds_body() || cfg.price.needs_body || inner_prices.iter().any(|(_, p)| p.needs_body);
    let (buffered, req_body) = if needs_body {
        match http_body_util::Limited::new(body, cfg.max_body).collect().await {
            Ok(c) => {
                let bytes = c.to_bytes();
                (Some(bytes.clone()), Body::from(bytes))
            }
            Err(e) => {
                let err = if e.is::<http_body_util::LengthLimitError>() {
                    Error::RequestTooLarge { limit: cfg.max_body }
                } else {
                    Error::RequestMalformed("could not read the request body".into())
                };
                let info = RequestInfo::new(&method, "http", None, &target);
                let r = cfg.paywall.reject(&err, &info, None, &cfg.scope, now, &*cfg.entropy);
                return Ok(answer(r, exposes));
            }
        }
    } else {
        // Not read: the stream goes to the handler untouched.
        (None, body)
    };
    let call = Call { cfg: &cfg, method: &method, path: &target, now, body: buffered, key, exposes };
    match earlier {
        Some(paid) => call.stacked(inner, parts, req_body, paid).await,
        None => call.first(inner, parts, req_body, inner_prices).await,
    }
}

async fn call_inner<S, ResBody>(mut inner: S, req: Request<Body>) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = http::Response<ResBody>>,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    inner.call(req).await.map(|res| res.map(Body::new))
}

/// One paywalled request through one [`PaywallService`].
struct Call<'a> {
    cfg: &'a Arc<Config>,
    method: &'a str,
    path: &'a str,
    now: u64,
    body: Option<Bytes>,
    key: RouteKey,
    /// Core's CORS rule for this request: its refusals and receipts expose our headers.
    exposes: bool,
}

impl Call<'_> {
    fn info<'b>(&'b self, scheme: &'b str, host: Option<&'b str>) -> RequestInfo<'b> {
        RequestInfo {
            method: self.method,
            path: self.path,
            scheme,
            host,
            body: self.body.as_deref(),
            payer: None,
        }
    }

    fn refuse(&self, err: &Error, price: Option<&Money>, scheme: &str, host: Option<&str>) -> Response {
        let r = self.cfg.paywall.reject(
            err,
            &self.info(scheme, host),
            price,
            &self.cfg.scope,
            self.now,
            &*self.cfg.entropy,
        );
        answer(r, self.exposes)
    }

    /// A price this paywall could not compute: the provider's bug, logged, a 500, never free.
    fn bad_price(&self, e: Error) -> Response {
        tracing::error!(target: "vlexivo", route = %format!("{} {}", self.method, self.path), "price resolver failed: {e}");
        let err = match e {
            Error::PriceInvalid(_) => e,
            other => Error::PriceInvalid(other.to_string()),
        };
        let r = self.cfg.paywall.reject(
            &err,
            &self.info("http", None),
            None,
            &self.cfg.scope,
            self.now,
            &*self.cfg.entropy,
        );
        answer(r, self.exposes)
    }

    /// The first paywall on the request: verify at the effective price of this one and the
    /// paywalls inside it (as far as they taught it), consume, run the handler, settle.
    async fn first<S, ResBody>(
        self,
        inner: S,
        mut parts: Parts,
        req_body: Body,
        inner_prices: Vec<(usize, Price)>,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = http::Response<ResBody>>,
        ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<axum::BoxError>,
    {
        let cfg = self.cfg;
        let (scheme, host) = request_origin(&parts);
        // Pricing by payer: a resolver finds who the request is priced for in the extensions
        // (the proof's payer, else the `Vlexivo-Payer` hint's), and a challenge for a price it
        // computed names the hinted payer.
        let dynamic =
            std::iter::once(&cfg.price).chain(inner_prices.iter().map(|(_, p)| p)).any(|p| !p.is_fixed());
        let mut hint = None;
        if dynamic {
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            hint = header(vlexivo_core::headers::PAYER).map(str::to_string);
            let payer =
                cfg.paywall.priced_payer(header(vlexivo_core::headers::PROOF), hint.as_deref(), self.now);
            if let Some(p) = payer {
                parts.extensions.insert(p);
            }
        }
        let mut prices = Vec::with_capacity(1 + inner_prices.len());
        for p in std::iter::once(&cfg.price).chain(inner_prices.iter().map(|(_, p)| p)) {
            match p.resolve(&parts, self.body.as_ref(), cfg.currency).await {
                Ok(m) => prices.push(m),
                Err(e) => return Ok(self.bad_price(e)),
            }
        }
        let price = match response_policy::effective_price(&prices) {
            Ok(p) => p,
            Err(e) => return Ok(self.bad_price(e)),
        };
        let proof = match parts.headers.get(vlexivo_core::headers::PROOF) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(s) => Some(s),
                Err(_) => {
                    return Ok(self.refuse(
                        &Error::TokenMalformed("header"),
                        Some(&price),
                        scheme,
                        host.as_deref(),
                    ));
                }
            },
        };
        // A networked store is awaited (its I/O runs on the store's own runtime); a local one
        // answers inline in microseconds.
        let mut info = self.info(scheme, host.as_deref());
        info.payer = hint.as_deref();
        let verified = if cfg.store.blocks() {
            cfg.paywall.verify_async(proof, &info, &price, self.now, &*cfg.store).await
        } else {
            cfg.paywall.verify(proof, &info, &price, self.now, &*cfg.store)
        };
        let facts = match verified {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, Error::NonceStoreUnavailable(_) | Error::NonceStoreFull | Error::Internal(_)) {
                    tracing::error!(target: "vlexivo", "nonce store failed: {e}");
                }
                // A person's browser without a proof gets core's HTML page (same 402, same challenge).
                let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                let r = cfg.paywall.reject(&e, &info, Some(&price), &cfg.scope, self.now, &*cfg.entropy);
                return Ok(answer(r.for_browser(accept, proof.is_some()), self.exposes));
            }
        };
        // From here the nonce is consumed: the handler's outcome decides its fate.
        let settle = Arc::new(Settle::new(cfg.clone(), facts.clone()));
        let mut covered = vec![layer_id(cfg)];
        covered.extend(inner_prices.iter().map(|(id, _)| *id));
        let amount = Money::parse(&facts.amount, price.currency()).unwrap_or(price);
        parts.extensions.insert(Paid {
            paywall: cfg.paywall.clone(),
            amount,
            covered: covered.into(),
            settle: settle.clone(),
            learned: cfg.learned.clone(),
            key: self.key.clone(),
        });
        parts.extensions.insert(facts.clone());
        let guard = OutcomeGuard { settle: Some(settle.clone()) };
        let result = call_inner(inner, Request::from_parts(parts, req_body)).await;
        guard.disarm();
        Ok(match result {
            Ok(mut res) => {
                let status = res.status().as_u16();
                settle.outcome(Outcome::completed(status));
                if !settle.released()
                    && response_policy::sends_receipt(status)
                    && let Ok(v) = HeaderValue::from_str(&Paywall::receipt(&facts))
                {
                    res.headers_mut().insert(HeaderName::from_static("vlexivo-receipt"), v);
                    if self.exposes {
                        expose_headers(&mut res);
                    }
                }
                res
            }
            Err(e) => {
                settle.outcome(Outcome::raised());
                return Err(e);
            }
        })
    }

    /// A paywall inside one that already took the request's proof: check the amount, never
    /// consume a second nonce. A payment that falls short gives its nonce back and asks this
    /// price, and the outer paywall learns it for the next request of this route.
    async fn stacked<S, ResBody>(
        self,
        inner: S,
        parts: Parts,
        req_body: Body,
        paid: Paid,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<Body>, Response = http::Response<ResBody>>,
        ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<axum::BoxError>,
    {
        let cfg = self.cfg;
        let me = layer_id(cfg);
        if paid.covered.contains(&me) || paid.settle.released() {
            return call_inner(inner, Request::from_parts(parts, req_body)).await;
        }
        // Teach the outer paywall this route's price, so its next 402 asks for both at once.
        if paid.learned.teach(&paid.key, me, &cfg.price) {
            tracing::warn!(
                target: "vlexivo",
                route = %format!("{} {}", paid.key.0, paid.key.1),
                "a paywall inside another was not declared with PaywallLayer::around: this route's first request was asked the outer price only"
            );
        }
        let price = match cfg.price.resolve(&parts, self.body.as_ref(), cfg.currency).await {
            Ok(p) => p,
            Err(e) => return Ok(self.bad_price(e)),
        };
        match response_policy::check_stacked(&paid.amount, &price) {
            Stacked::Covered => call_inner(inner, Request::from_parts(parts, req_body)).await,
            Stacked::Underpaid { ask } => {
                paid.settle.release_now();
                let (scheme, host) = request_origin(&parts);
                let err = Error::TokenUnderpaid { paid: paid.amount.to_string(), price: ask.to_string() };
                Ok(self.refuse(&err, Some(&ask), scheme, host.as_deref()))
            }
        }
    }
}

impl Config {
    /// The prices of the paywalls inside this one on `key`'s route: declared, then learned.
    fn inner_prices(&self, key: &RouteKey) -> Vec<(usize, Price)> {
        let mut out: Vec<(usize, Price)> = self
            .declared
            .iter()
            .filter(|(p, _, _)| *p == key.1)
            .map(|(_, id, pr)| (*id, pr.clone()))
            .collect();
        for (id, price) in self.learned.prices(key) {
            if !out.iter().any(|(i, _)| *i == id) {
                out.push((id, price));
            }
        }
        out
    }
}

/// The identity of a [`PaywallLayer`] (its configuration, shared by the services it makes).
fn layer_id(cfg: &Arc<Config>) -> usize {
    Arc::as_ptr(cfg) as usize
}

/// The route a request matched (axum's `MatchedPath`, else its path) and its method.
type RouteKey = (http::Method, String);

fn route_key(parts: &Parts, target: &str) -> RouteKey {
    let path = match parts.extensions.get::<axum::extract::MatchedPath>() {
        Some(m) => m.as_str().to_string(),
        None => target.to_string(),
    };
    (parts.method.clone(), path)
}

/// What the paywalls inside a layer taught it, per route: their prices, asked with its own.
#[derive(Default)]
struct Learned {
    by_route: Mutex<HashMap<RouteKey, Vec<(usize, Price)>>>,
}

/// Routes remembered per layer (a bound against paths without a `MatchedPath`).
const LEARNED_ROUTES_MAX: usize = 4096;

impl Learned {
    fn prices(&self, key: &RouteKey) -> Vec<(usize, Price)> {
        let map = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return Vec::new();
        }
        map.get(key).cloned().unwrap_or_default()
    }

    /// Whether this was news.
    fn teach(&self, key: &RouteKey, id: usize, price: &Price) -> bool {
        let mut map = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= LEARNED_ROUTES_MAX && !map.contains_key(key) {
            return false;
        }
        let prices = map.entry(key.clone()).or_default();
        if prices.iter().any(|(i, _)| *i == id) {
            return false;
        }
        prices.push((id, price.clone()));
        true
    }
}

/// A request whose proof a paywall consumed, for the paywalls inside it (a request extension).
#[derive(Clone)]
struct Paid {
    paywall: Arc<Paywall>,
    /// What the proof paid.
    amount: Money,
    /// The layers whose price the proof was verified against.
    covered: Arc<[usize]>,
    settle: Arc<Settle>,
    /// The consuming layer's lessons, and this request's route in them.
    learned: Arc<Learned>,
    key: RouteKey,
}

/// The consumed nonce's fate, decided once (by the handler's outcome, or by a paywall inside
/// that refused the payment).
struct Settle {
    cfg: Arc<Config>,
    facts: PaymentFacts,
    /// 0: open, 1: kept, 2: released.
    state: AtomicU8,
}

impl Settle {
    fn new(cfg: Arc<Config>, facts: PaymentFacts) -> Self {
        Self { cfg, facts, state: AtomicU8::new(0) }
    }

    fn released(&self) -> bool {
        self.state.load(Ordering::Acquire) == 2
    }

    fn outcome(&self, outcome: Outcome) {
        match outcome.settlement() {
            Settlement::Keep => {
                let _ = self.state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
            }
            Settlement::Release => self.release_now(),
        }
    }

    fn release_now(&self) {
        if self.state.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let store = &*self.cfg.store;
        if store.blocks() {
            // Never wait on the network here (this may run in a destructor): the store releases
            // in the background (and keeps retrying while it is unreachable).
            if let Ok((key, lease)) = vlexivo_core::store::parse_handle(&self.facts.store_key) {
                drop(store.release_async(key.to_string(), lease));
            }
            return;
        }
        if let Err(e) = self.cfg.paywall.release(&self.facts, store) {
            tracing::error!(target: "vlexivo", nonce = %self.facts.nonce, "could not release a nonce after a failed handler: {e}");
        } else {
            tracing::debug!(target: "vlexivo", nonce = %self.facts.nonce, "handler failed; payment stays valid for a retry");
        }
    }
}

/// Reports a handler that panicked (its future unwinds through ours). A future dropped without
/// a panic is a client that went away: that decides nothing, the nonce stays consumed.
struct OutcomeGuard {
    settle: Option<Arc<Settle>>,
}

impl OutcomeGuard {
    fn disarm(mut self) {
        self.settle = None;
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take()
            && std::thread::panicking()
        {
            settle.outcome(Outcome::raised());
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

/// A core [`Rejection`] as an axum response (without CORS headers: a response to a request
/// carrying `Origin` also gets [`response_policy::expose_value`] in `Access-Control-Expose-Headers`).
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
    res
}

/// A refusal as the layer sends it: our headers exposed when core's CORS rule says so.
fn answer(r: Rejection, exposes: bool) -> Response {
    let mut res = rejection(r);
    if exposes {
        expose_headers(&mut res);
    }
    res
}

/// Our headers merged into the response's `Access-Control-Expose-Headers` (core's rule).
fn expose_headers(res: &mut Response) {
    let h = res.headers_mut();
    let existing = h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).map(|v| v.to_str().unwrap_or("*"));
    if let Some(v) = response_policy::expose_value(existing).and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}
