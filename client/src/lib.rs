//! A Rust client that pays Vlexivo 402s: a drop-in `fetch` over reqwest.
//!
//! ```no_run
//! # async fn f() -> Result<(), vlexivo_core::Error> {
//! use vlexivo_core::client::AutoTopUp;
//! use vlexivo_client::VlexivoClient;
//!
//! let client = VlexivoClient::builder()
//!     .wallet_key(&std::env::var("VLX_WALLET_KEY").unwrap())
//!     .auto_top_up(AutoTopUp::new("1.00", "10.00")?)
//!     .build()?;
//! let res = client
//!     .post_json("https://api.provider.com/v1/inference", &serde_json::json!({"model": "large-v2"}))
//!     .await?;
//! println!("{}", res.text().await.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! Every decision is `vlexivo_core::client`'s payer flow ([`Call`], [`Step`]); this crate
//! only performs the HTTP it asks for.

pub mod onchain;
pub mod tls;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use reqwest::{Response, Url};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use vlexivo_core::client::{
    AutoTopUp, Call, FacilitatorRequest, MAX_RESPONSE_BODY, Payer, PayerConfig, PaymentEvent,
    PaymentRequired, Step, TrustedFacilitators,
};
use vlexivo_core::env::{Clock, SystemClock};
use vlexivo_core::payment::PaymentReceipt;
use vlexivo_core::policy::{Budget, SpendingPolicy};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Error, Money};

/// Time allowed for one call to the facilitator (pay, balance, top-up).
const FACILITATOR_TIMEOUT: Duration = Duration::from_secs(15);

type OnPayment = dyn Fn(&PaymentReceipt) + Send + Sync;

/// Builder for [`VlexivoClient`].
#[derive(Default)]
pub struct VlexivoClientBuilder {
    wallet_key: Option<String>,
    wallet: Option<Wallet>,
    facilitator_url: Option<String>,
    trusted: Vec<String>,
    spending: SpendingPolicy,
    auto_top_up: Option<AutoTopUp>,
    on_payment: Option<Arc<OnPayment>>,
    http: Option<reqwest::Client>,
    tls: Option<tls::TlsConfig>,
    clock: Option<Arc<dyn Clock>>,
    /// The payer hint is off (it is on by default).
    no_payer_hint: bool,
}

impl fmt::Debug for VlexivoClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("VlexivoClientBuilder")
            .field("facilitator_url", &self.facilitator_url)
            .field("trusted", &self.trusted)
            .field("spending", &self.spending)
            .field("auto_top_up", &self.auto_top_up)
            .finish_non_exhaustive()
    }
}

impl VlexivoClientBuilder {
    /// The payer's secp256k1 key, `0x` + 64 hex digits. It signs locally and is never sent.
    pub fn wallet_key(mut self, key: &str) -> Self {
        self.wallet_key = Some(key.to_string());
        self
    }

    pub fn wallet(mut self, wallet: Wallet) -> Self {
        self.wallet = Some(wallet);
        self
    }

    /// The facilitator to pay through (and to query for balances). Challenges naming any
    /// facilitator that is not trusted are refused; with neither this nor
    /// [`VlexivoClientBuilder::trusted_facilitators`], `VLEXIVO_FACILITATOR_URL` is trusted,
    /// else the default local facilitator.
    pub fn facilitator_url(mut self, url: Option<impl Into<String>>) -> Self {
        self.facilitator_url = url.map(Into::into);
        self
    }

    /// More facilitators this client pays through.
    pub fn trusted_facilitators(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.trusted.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Spending caps (per call, per host, total, per window).
    pub fn spending(mut self, policy: SpendingPolicy) -> Self {
        self.spending = policy;
        self
    }

    /// Top the wallet up before a payment would leave it below the trigger balance: from the
    /// facilitator's faucet in sandbox; in live mode from the funding wallet of
    /// [`AutoTopUp::with_funding`] (or `VLX_FUNDING_KEY` and `VLX_RPC_URL`), by an on-chain
    /// transfer mined before the payment.
    pub fn auto_top_up(mut self, cfg: AutoTopUp) -> Self {
        self.auto_top_up = Some(cfg);
        self
    }

    /// Send the wallet's address on the unpaid request (`Vlexivo-Payer`), so an API that prices
    /// by payer (usage-based discounts) quotes this wallet's price. On by default; `false` for
    /// privacy (the API then learns the payer only from the paid request's proof).
    pub fn payer_hint(mut self, on: bool) -> Self {
        self.no_payer_hint = !on;
        self
    }

    /// Called after every payment, with its receipt (price, tx hash, balance after).
    pub fn on_payment(mut self, f: impl Fn(&PaymentReceipt) + Send + Sync + 'static) -> Self {
        self.on_payment = Some(Arc::new(f));
        self
    }

    /// How servers are verified: roots, private CAs, https only. Default:
    /// [`tls::TlsConfig::from_env`] (`VLX_TLS_ROOTS`, `VLX_CA_FILE`, `VLX_HTTPS_ONLY`).
    /// The facilitator's client always uses it; the API's too unless
    /// [`VlexivoClientBuilder::http_client`] gives one.
    pub fn tls(mut self, tls: tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Use this reqwest client for the API's requests (connection pool, proxies, timeouts,
    /// its own TLS).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Inject the clock (tests); the system clock by default.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn build(self) -> Result<VlexivoClient, Error> {
        let wallet = match (self.wallet, self.wallet_key) {
            (Some(w), _) => w,
            (None, Some(k)) => Wallet::from_hex(k.trim())?,
            (None, None) => return Err(Error::Config("a wallet key is required".into())),
        };
        let tls = match self.tls {
            Some(t) => t,
            None => tls::TlsConfig::from_env()?,
        };
        let trust = TrustedFacilitators::from_env(self.facilitator_url.as_deref(), &self.trusted)?
            .with_https_only(tls.is_https_only());
        let builder = |b: reqwest::ClientBuilder| {
            b.connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {}", tls::describe(&e))))
        };
        let http = match self.http {
            Some(c) => c,
            None => builder(tls.client_builder())?,
        };
        // A signed payment is for one facilitator: never follow it elsewhere.
        let facilitator_http = builder(tls.client_builder().redirect(reqwest::redirect::Policy::none()))?;
        let config = PayerConfig {
            policy: self.spending,
            facilitators: trust,
            auto_top_up: self.auto_top_up.map(funding_from_env).transpose()?,
            payer_hint: !self.no_payer_hint,
        };
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(VlexivoClient {
            inner: Arc::new(Inner {
                payer: Payer::new(wallet, config, clock),
                on_payment: self.on_payment,
                http,
                facilitator_http,
            }),
        })
    }
}

/// Live auto top-up's funding wallet from `VLX_FUNDING_KEY` (and `VLX_RPC_URL`) when the
/// configuration names none.
fn funding_from_env(mut cfg: AutoTopUp) -> Result<AutoTopUp, Error> {
    use vlexivo_core::envvars::{FUNDING_KEY, RPC_URL};
    if cfg.funding.is_none()
        && let Some(key) = FUNDING_KEY.from_process()?
    {
        let rpc = RPC_URL.from_process()?.ok_or_else(|| {
            Error::Config(format!("{} needs {} (the chain's JSON-RPC URL)", FUNDING_KEY.name, RPC_URL.name))
        })?;
        cfg.funding = Some(vlexivo_core::client::Funding::new(&key, &rpc)?);
    }
    Ok(cfg)
}

/// Pays 402s and retries. Cheap to clone; clones share the budget and the wallet's state.
#[derive(Clone)]
pub struct VlexivoClient {
    inner: Arc<Inner>,
}

struct Inner {
    payer: Payer,
    on_payment: Option<Arc<OnPayment>>,
    http: reqwest::Client,
    facilitator_http: reqwest::Client,
}

impl fmt::Debug for VlexivoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VlexivoClient")
            .field("address", &self.address())
            .field("facilitators", &self.inner.payer.trusted().urls())
            .finish_non_exhaustive()
    }
}

/// The answer of `POST /v1/wallets/{address}/topup` (the service's own type).
pub use vlexivo_core::payment::TopUpReceipt;

/// The receipt of the payment made for a response, if one was (`fetch` attaches it).
pub fn receipt_of(res: &Response) -> Option<&PaymentReceipt> {
    res.extensions().get::<PaymentReceipt>()
}

/// A top-up the client made before a payment (`fetch` attaches it to the response).
#[derive(Debug, Clone)]
pub struct AutoTopUpDone(pub TopUpReceipt);

impl VlexivoClient {
    pub fn builder() -> VlexivoClientBuilder {
        VlexivoClientBuilder::default()
    }

    /// The payer's address (EIP-55).
    pub fn address(&self) -> String {
        self.inner.payer.address().to_string()
    }

    /// The spending budget (what was spent, what is reserved: in flight or in doubt).
    pub fn budget(&self) -> &Budget {
        self.inner.payer.budget()
    }

    /// The payer flow's state shared by this client's calls.
    pub fn payer(&self) -> &Payer {
        &self.inner.payer
    }

    /// `GET url`, paying if asked to.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        self.fetch(Method::GET, url, HeaderMap::new(), None).await
    }

    /// `POST url` with a JSON body, paying if asked to.
    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
    ) -> Result<Response, Error> {
        let body = serde_json::to_vec(body).map_err(|e| Error::RequestMalformed(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.fetch(Method::POST, url, headers, Some(Bytes::from(body))).await
    }

    /// Send a request; on a Vlexivo 402, pay (within the spending policy, topping up if
    /// configured) and retry once with the same method, headers and body plus the proof.
    /// Any other response — including the paid retry's — is returned as is; its payment
    /// receipt is in its extensions ([`receipt_of`]).
    pub async fn fetch(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, Error> {
        let mut call = self.inner.payer.call(method.as_str(), url, true)?;
        let mut step = call.start();
        let mut last: Option<Response> = None;
        let mut paid: Option<Box<PaymentEvent>> = None;
        loop {
            step = match step {
                Step::Send { url, headers: extra } => {
                    let res = match self.send(&method, &url, &headers, body.clone(), &extra).await {
                        Ok(r) => r,
                        Err(e) => {
                            call.request_failed();
                            return Err(e);
                        }
                    };
                    let (status, res_headers, final_url) =
                        (res.status().as_u16(), res.headers().clone(), res.url().to_string());
                    last = Some(res);
                    call.response(status, pairs(&res_headers), None, Some(&final_url))?
                }
                Step::ReadBody { limit } => {
                    let res = last.take().expect("a response to read");
                    let (status, res_headers) = (res.status().as_u16(), res.headers().clone());
                    let (res, prefix) = read_prefix(res, limit).await?;
                    last = Some(res);
                    call.response(status, pairs(&res_headers), Some(&prefix), None)?
                }
                Step::Facilitator(req) => self.facilitator(&mut call, &req).await?,
                Step::Paid(event) => {
                    if let Some(cb) = &self.inner.on_payment {
                        cb(&event.receipt);
                    }
                    if !event.reconciled {
                        paid = Some(event);
                    }
                    call.resume()?
                }
                Step::Wait { millis } => {
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    call.resume()?
                }
                Step::Return => {
                    let mut res = last.take().expect("a response to return");
                    if let Some(e) = paid.take() {
                        if let Some(t) = e.top_up {
                            res.extensions_mut().insert(AutoTopUpDone(t));
                        }
                        res.extensions_mut().insert(e.receipt);
                    }
                    return Ok(res);
                }
            };
        }
    }

    /// Pay a 402 challenge for a request to `url` and return the receipt (its `token` goes in
    /// the `Vlexivo-Proof` header): for callers that send the retry themselves.
    pub async fn pay_challenge(
        &self,
        pr: &PaymentRequired,
        method: &str,
        url: &str,
    ) -> Result<PaymentReceipt, Error> {
        let mut call = self.inner.payer.call(method, url, true)?;
        let mut step = call.challenge(pr.clone())?;
        loop {
            step = match step {
                Step::Facilitator(req) => self.facilitator(&mut call, &req).await?,
                Step::Paid(event) => {
                    if let Some(cb) = &self.inner.on_payment {
                        cb(&event.receipt);
                    }
                    call.resume()?
                }
                Step::Wait { millis } => {
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    call.resume()?
                }
                Step::Send { .. } => {
                    return call
                        .receipt()
                        .cloned()
                        .ok_or_else(|| Error::Internal("paid without a receipt".into()));
                }
                Step::ReadBody { .. } | Step::Return => {
                    return Err(Error::Internal("unexpected step paying a challenge".into()));
                }
            };
        }
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
        extra: &[(&'static str, String)],
    ) -> Result<Response, Error> {
        let mut req = self.inner.http.request(method.clone(), url).headers(headers.clone());
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(|e| {
            let host =
                Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
            Error::Internal(format!("request to {host} failed: {}", tls::describe(&e)))
        })
    }

    /// Perform a facilitator request the flow asked for and feed back what came of it.
    async fn facilitator(&self, call: &mut Call, req: &FacilitatorRequest) -> Result<Step, Error> {
        match self.facilitator_http_call(req).await {
            Ok((status, body)) => call.answer(status, &body),
            Err((sent, why)) => call.transport_error(sent, &why),
        }
    }

    /// `(status, body)`, or `(sent, reason)` when no whole answer came back.
    async fn facilitator_http_call(
        &self,
        req: &FacilitatorRequest,
    ) -> Result<(u16, Vec<u8>), (bool, String)> {
        let method = Method::from_bytes(req.method.as_bytes()).expect("GET or POST");
        let mut rb = self.inner.facilitator_http.request(method, &req.url).timeout(FACILITATOR_TIMEOUT);
        if let Some(b) = &req.body {
            rb = rb.header(http::header::CONTENT_TYPE, "application/json").body(b.clone());
        }
        let res = rb
            .send()
            .await
            .map_err(|e| (!e.is_connect(), format!("{}: {}", req.facilitator, tls::describe(&e))))?;
        let status = res.status().as_u16();
        let body = read_limited(res, MAX_RESPONSE_BODY)
            .await
            .map_err(|e| (true, format!("{}: {e}", req.facilitator)))?;
        Ok((status, body))
    }

    /// The facilitator wallet operations use: the configured one, else the first trusted.
    pub fn facilitator_url(&self) -> String {
        self.inner.payer.trusted().primary().to_string()
    }

    /// The wallet's balance at the facilitator.
    pub async fn balance(&self) -> Result<Money, Error> {
        let req = self.inner.payer.balance_request(None)?;
        let (status, body) = self.wallet_call(&req).await?;
        self.inner.payer.read_balance(&req, status, &body)
    }

    /// Add `amount` (decimal string) to the wallet from the sandbox faucet.
    pub async fn top_up(&self, amount: &str) -> Result<TopUpReceipt, Error> {
        let amount = Money::parse(amount, vlexivo_core::Currency::Usd)?;
        let req = self.inner.payer.top_up_request(&amount, None)?;
        let (status, body) = self.wallet_call(&req).await?;
        self.inner.payer.read_top_up(&req, status, &body)
    }

    async fn wallet_call(&self, req: &FacilitatorRequest) -> Result<(u16, Vec<u8>), Error> {
        self.facilitator_http_call(req).await.map_err(|(_, why)| Error::FacilitatorUnavailable(why))
    }
}

fn pairs(h: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    h.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
}

/// Read at most `limit` bytes of a body (a hostile server cannot make us buffer more).
pub async fn read_limited(mut res: Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| tls::describe(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("response larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Read up to `limit + 1` bytes of a response for the flow, and give the caller back an
/// equivalent response. A body longer than `limit` is not a challenge (the flow says so);
/// the caller then gets it whole, as reqwest would have read it.
async fn read_prefix(mut res: Response, limit: usize) -> Result<(Response, Vec<u8>), Error> {
    let failed = |e: reqwest::Error| Error::Internal(format!("reading the 402: {}", tls::describe(&e)));
    let (status, headers, url, version) =
        (res.status(), res.headers().clone(), res.url().clone(), res.version());
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(failed)? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            // Not a challenge: the rest is the caller's.
            while let Some(chunk) = res.chunk().await.map_err(failed)? {
                body.extend_from_slice(&chunk);
            }
            break;
        }
    }
    use reqwest::ResponseBuilderExt;
    let mut b = http::Response::builder().status(status).version(version).url(url);
    if let Some(h) = b.headers_mut() {
        *h = headers;
    }
    let prefix = body[..body.len().min(limit + 1)].to_vec();
    let rebuilt = b.body(body).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((Response::from(rebuilt), prefix))
}
