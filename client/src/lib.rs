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
//! The decisions (is this a Vlexivo 402, does it match the request, is it within budget, what
//! did the facilitator say) are `vlexivo_core::client`'s; this module does the HTTP.

pub mod tls;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use reqwest::{Response, StatusCode, Url};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use vlexivo_core::client::{self as flow, AutoTopUp, MAX_RESPONSE_BODY, Payer, PaymentRequired};
use vlexivo_core::env::{Clock, SystemClock};
use vlexivo_core::payment::PaymentReceipt;
use vlexivo_core::policy::{Budget, SpendingPolicy};
use vlexivo_core::wallet::Wallet;
use vlexivo_core::{Currency, Error, Money};

/// Time allowed for one call to the facilitator (pay, balance, top-up).
const FACILITATOR_TIMEOUT: Duration = Duration::from_secs(15);

type OnPayment = dyn Fn(&PaymentReceipt) + Send + Sync;

/// Builder for [`VlexivoClient`].
#[derive(Default)]
pub struct VlexivoClientBuilder {
    wallet_key: Option<String>,
    wallet: Option<Wallet>,
    facilitator_url: Option<String>,
    spending: SpendingPolicy,
    auto_top_up: Option<AutoTopUp>,
    on_payment: Option<Arc<OnPayment>>,
    http: Option<reqwest::Client>,
    tls: Option<tls::TlsConfig>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for VlexivoClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("VlexivoClientBuilder")
            .field("facilitator_url", &self.facilitator_url)
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

    /// Only pay through this facilitator (challenges naming another are refused). `None`: pay
    /// where each challenge says.
    pub fn facilitator_url(mut self, url: Option<impl Into<String>>) -> Self {
        self.facilitator_url = url.map(|u| u.into().trim_end_matches('/').to_string());
        self
    }

    /// Spending caps (per call, per host, total, per window).
    pub fn spending(mut self, policy: SpendingPolicy) -> Self {
        self.spending = policy;
        self
    }

    /// Top the wallet up from the (sandbox) faucet before a payment would leave it below the
    /// trigger balance.
    pub fn auto_top_up(mut self, cfg: AutoTopUp) -> Self {
        self.auto_top_up = Some(cfg);
        self
    }

    /// Called after every payment, with its receipt (price, tx hash, balance after).
    pub fn on_payment(mut self, f: impl Fn(&PaymentReceipt) + Send + Sync + 'static) -> Self {
        self.on_payment = Some(Arc::new(f));
        self
    }

    /// How servers are verified: roots, private CAs, https only. Default:
    /// [`tls::TlsConfig::from_env`] (`VLX_TLS_ROOTS`, `VLX_CA_FILE`, `VLX_HTTPS_ONLY`).
    /// Ignored when [`VlexivoClientBuilder::http_client`] gives a client.
    pub fn tls(mut self, tls: tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Use this reqwest client (connection pool, proxies, timeouts, its own TLS).
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
        if let Some(url) = &self.facilitator_url {
            Url::parse(url).map_err(|_| Error::Config("facilitator URL is not a URL".into()))?;
        }
        let tls = match self.tls {
            Some(t) => t,
            None => tls::TlsConfig::from_env()?,
        };
        vlexivo_core::envvars::FACILITATOR_URL.from_process()?;
        let http = match self.http {
            Some(c) => c,
            None => tls
                .client_builder()
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {}", tls::describe(&e))))?,
        };
        Ok(VlexivoClient {
            inner: Arc::new(Inner {
                payer: Payer::new(wallet, self.spending, self.facilitator_url.clone())
                    .with_https_only(tls.is_https_only()),
                facilitator: self.facilitator_url,
                auto_top_up: self.auto_top_up.filter(|a| a.enabled),
                on_payment: self.on_payment,
                http,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                wallet_state: tokio::sync::Mutex::new(WalletState::default()),
                last_facilitator: parking_lot::Mutex::new(None),
            }),
        })
    }
}

/// Pays 402s and retries. Cheap to clone; clones share the budget and the wallet's state.
#[derive(Clone)]
pub struct VlexivoClient {
    inner: Arc<Inner>,
}

struct Inner {
    payer: Payer,
    facilitator: Option<String>,
    auto_top_up: Option<AutoTopUp>,
    on_payment: Option<Arc<OnPayment>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Serializes top-up decisions so concurrent calls top up once, not N times.
    wallet_state: tokio::sync::Mutex<WalletState>,
    /// The facilitator the last challenge named (for `balance()` without a configured one).
    last_facilitator: parking_lot::Mutex<Option<String>>,
}

#[derive(Default)]
struct WalletState {
    /// Last balance the facilitator reported (a receipt or a balance call), to skip a
    /// balance round trip before each payment. Only an estimate: a refusal refreshes it.
    balance: Option<Money>,
}

impl fmt::Debug for VlexivoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VlexivoClient")
            .field("address", &self.address())
            .field("facilitator", &self.inner.facilitator)
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
        self.inner.payer.wallet().address().to_checksum()
    }

    /// The spending budget (what was spent, what is reserved).
    pub fn budget(&self) -> &Budget {
        self.inner.payer.budget()
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
        let url = Url::parse(url).map_err(|e| Error::RequestMalformed(format!("URL: {e}")))?;
        let first = self.send(&method, &url, &headers, body.clone(), None).await?;
        if first.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(first);
        }
        // After a redirect the challenge is for where we ended up; pay and retry there.
        let url = first.url().clone();
        let pr = match self.read_challenge(first).await? {
            Ok(pr) => pr,
            // A 402 that is not Vlexivo's: hand it back untouched.
            Err(res) => return Ok(res),
        };
        let (receipt, topped_up) = self.pay(&pr, method.as_str(), url.as_str()).await?;
        let mut res = self.send(&method, &url, &headers, body, Some(&receipt.token)).await?;
        res.extensions_mut().insert(receipt);
        if let Some(t) = topped_up {
            res.extensions_mut().insert(AutoTopUpDone(t));
        }
        Ok(res)
    }

    /// Pay a 402 challenge for a request to `url` and return the receipt (its `token` goes in
    /// the `Vlexivo-Proof` header). `fetch` does this for you; exposed for callers that send
    /// the retry themselves.
    pub async fn pay_challenge(
        &self,
        pr: &PaymentRequired,
        method: &str,
        url: &str,
    ) -> Result<PaymentReceipt, Error> {
        let url = Url::parse(url).map_err(|e| Error::RequestMalformed(format!("URL: {e}")))?;
        Ok(self.pay(pr, method, url.as_str()).await?.0)
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
        proof: Option<&str>,
    ) -> Result<Response, Error> {
        let mut req = self.inner.http.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(token) = proof {
            let (name, value) = flow::proof_header(token);
            req = req.header(name, value);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(|e| {
            let host = url.host_str().unwrap_or("?");
            Error::Internal(format!("request to {host} failed: {}", tls::describe(&e)))
        })
    }

    /// Ok(Ok(challenge)) for a Vlexivo 402; Ok(Err(response)) for another 402, rebuilt.
    async fn read_challenge(&self, res: Response) -> Result<Result<PaymentRequired, Response>, Error> {
        let status = res.status();
        let headers = res.headers().clone();
        let url = res.url().clone();
        let body = read_limited(res, MAX_RESPONSE_BODY).await.unwrap_or_default();
        let pairs = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        match flow::parse_payment_required(status.as_u16(), pairs, &body) {
            Ok(pr) => Ok(Ok(pr)),
            Err(Error::NotPaymentRequired) => {
                use reqwest::ResponseBuilderExt;
                let mut b = http::Response::builder().status(status).url(url);
                if let Some(h) = b.headers_mut() {
                    *h = headers;
                }
                let rebuilt = b.body(body).map_err(|e| Error::Internal(e.to_string()))?;
                Ok(Err(Response::from(rebuilt)))
            }
            Err(e) => Err(e),
        }
    }

    /// Top up if configured and needed, sign, pay, commit the budget.
    async fn pay(
        &self,
        pr: &PaymentRequired,
        method: &str,
        url: &str,
    ) -> Result<(PaymentReceipt, Option<TopUpReceipt>), Error> {
        let inner = &self.inner;
        let facilitator = inner.payer.facilitator_for(pr);
        *inner.last_facilitator.lock() = Some(facilitator.clone());
        // Budget first: a call the policy refuses must not move money, not even a top-up.
        let prepared = inner.payer.prepare(pr, method, url, inner.clock.now())?;
        let mut topped_up = None;
        if inner.auto_top_up.is_some() {
            match self.top_up_if_needed(&facilitator, &pr.price, false).await {
                Ok(t) => topped_up = t,
                Err(e) => {
                    inner.payer.abandon(prepared);
                    return Err(e);
                }
            }
        }
        match self.submit(prepared).await {
            Err(Error::InsufficientFunds { .. }) if inner.auto_top_up.is_some() && topped_up.is_none() => {
                // Our balance estimate was stale (another client spent): refresh, top up, and
                // pay the same challenge once more.
                topped_up = self.top_up_if_needed(&facilitator, &pr.price, true).await?;
                let prepared = inner.payer.prepare(pr, method, url, inner.clock.now())?;
                Ok((self.submit(prepared).await?, topped_up))
            }
            other => Ok((other?, topped_up)),
        }
    }

    async fn submit(&self, prepared: flow::PreparedPayment) -> Result<PaymentReceipt, Error> {
        let inner = &self.inner;
        let sent = inner
            .http
            .post(&prepared.pay_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(prepared.body.clone())
            .timeout(FACILITATOR_TIMEOUT)
            .send()
            .await;
        let res = match sent {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{}: {}", prepared.facilitator, tls::describe(&e));
                inner.payer.abandon(prepared);
                return Err(Error::FacilitatorUnavailable(msg));
            }
        };
        let status = res.status().as_u16();
        let body = match read_limited(res, MAX_RESPONSE_BODY).await {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("{}: {e}", prepared.facilitator);
                inner.payer.abandon(prepared);
                return Err(Error::FacilitatorUnavailable(msg));
            }
        };
        let facilitator = prepared.facilitator.clone();
        match inner.payer.finish(prepared, status, &body) {
            Ok(receipt) => {
                if let Ok(b) = Money::parse(&receipt.balance, Currency::Usd) {
                    inner.wallet_state.lock().await.balance = Some(b);
                }
                if let Some(cb) = &inner.on_payment {
                    cb(&receipt);
                }
                Ok(receipt)
            }
            Err(Error::FacilitatorError { status: 502..=504, code, .. }) if code == "http_error" => {
                Err(Error::FacilitatorUnavailable(format!("{facilitator}: HTTP {status}")))
            }
            Err(e @ Error::InsufficientFunds { .. }) => {
                inner.wallet_state.lock().await.balance = None;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Top up when [`AutoTopUp::amount_before`] says so. One caller at a time decides, so N
    /// concurrent calls top up once.
    async fn top_up_if_needed(
        &self,
        facilitator: &str,
        price: &Money,
        refresh: bool,
    ) -> Result<Option<TopUpReceipt>, Error> {
        let Some(cfg) = &self.inner.auto_top_up else { return Ok(None) };
        let mut state = self.inner.wallet_state.lock().await;
        let balance = match (refresh, state.balance) {
            (false, Some(b)) => b,
            _ => self.balance_at(facilitator).await?,
        };
        state.balance = Some(balance);
        let Some(amount) = cfg.amount_before(&balance, price)? else { return Ok(None) };
        match self.top_up_at(facilitator, &amount.to_string()).await {
            Ok(t) => {
                state.balance = Money::parse(&t.balance, balance.currency()).ok();
                Ok(Some(t))
            }
            // Refused (faucet cap) but the payment is still covered: pay anyway.
            Err(e) if balance.amount() >= price.amount() => {
                tracing::warn!(target: "vlexivo", "auto top-up failed, balance still covers the call: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The facilitator wallet operations use: the configured one, else the last challenge's,
    /// else `VLX_FACILITATOR_URL` (or its older name), else the default.
    pub fn facilitator_url(&self) -> String {
        if let Some(f) = &self.inner.facilitator {
            return f.clone();
        }
        if let Some(f) = self.inner.last_facilitator.lock().clone() {
            return f;
        }
        // A conflicting pair of names was refused when the client was built.
        vlexivo_core::envvars::FACILITATOR_URL
            .from_process()
            .ok()
            .flatten()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| vlexivo_core::paywall::DEFAULT_FACILITATOR_URL.to_string())
    }

    /// The wallet's balance at the facilitator.
    pub async fn balance(&self) -> Result<Money, Error> {
        let b = self.balance_at(&self.facilitator_url()).await?;
        self.inner.wallet_state.lock().await.balance = Some(b);
        Ok(b)
    }

    /// Add `amount` (decimal string) to the wallet from the sandbox faucet.
    pub async fn top_up(&self, amount: &str) -> Result<TopUpReceipt, Error> {
        Money::parse(amount, Currency::Usd)?.positive()?;
        let t = self.top_up_at(&self.facilitator_url(), amount).await?;
        self.inner.wallet_state.lock().await.balance = Money::parse(&t.balance, Currency::Usd).ok();
        Ok(t)
    }

    async fn balance_at(&self, facilitator: &str) -> Result<Money, Error> {
        #[derive(serde::Deserialize)]
        struct W {
            balance: String,
            #[serde(default)]
            currency: Option<String>,
        }
        let url = format!("{facilitator}/v1/wallets/{}", self.address());
        let w: W = self.facilitator_json(self.inner.http.get(&url), facilitator).await?;
        let cur = Currency::parse(w.currency.as_deref().unwrap_or("usd"))?;
        Money::parse(&w.balance, cur)
    }

    async fn top_up_at(&self, facilitator: &str, amount: &str) -> Result<TopUpReceipt, Error> {
        let url = format!("{facilitator}/v1/wallets/{}/topup", self.address());
        let req = self.inner.http.post(&url).json(&serde_json::json!({ "amount": amount }));
        self.facilitator_json(req, facilitator).await
    }

    async fn facilitator_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        facilitator: &str,
    ) -> Result<T, Error> {
        let res =
            req.timeout(FACILITATOR_TIMEOUT).send().await.map_err(|e| {
                Error::FacilitatorUnavailable(format!("{facilitator}: {}", tls::describe(&e)))
            })?;
        let status = res.status().as_u16();
        let body = read_limited(res, MAX_RESPONSE_BODY)
            .await
            .map_err(|e| Error::FacilitatorUnavailable(format!("{facilitator}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(match flow::error_from_body(status, &body) {
                Error::FacilitatorError { status: 502..=504, code, .. } if code == "http_error" => {
                    Error::FacilitatorUnavailable(format!("{facilitator}: HTTP {status}"))
                }
                e => e,
            });
        }
        serde_json::from_slice(&body).map_err(|_| Error::FacilitatorError {
            status,
            code: "bad_response".into(),
            message: "facilitator answered with unexpected JSON".into(),
        })
    }
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
