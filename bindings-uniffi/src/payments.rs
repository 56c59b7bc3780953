//! `VlexivoPayments`: turns a 402 into the header for the paid retry. The flow's decisions are
//! `vlexivo_core::client::{Payer, AutoTopUp}`'s; this file sequences them around the
//! facilitator's HTTP.

use crate::facilitator::Http;
use crate::{HttpHeader, TlsOptions, VlexivoError, Wallet, header_pairs, parse_402};
use std::sync::{Arc, Mutex, PoisonError};
use vlexivo_core::client::{AutoTopUp as CoreAutoTopUp, Payer, PreparedPayment};
use vlexivo_core::env::{Clock, SystemClock};
use vlexivo_core::payment::PaymentReceipt;
use vlexivo_core::policy::SpendingPolicy as CorePolicy;
use vlexivo_core::{Currency, Error as CoreError, Money};

/// Caps on what this client pays. Decimal strings in USD; `null`/`nil` means no cap of that
/// kind. `windowSeconds` and `windowMax` go together: at most `windowMax` within any rolling
/// `windowSeconds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct SpendingPolicy {
    #[uniffi(default)]
    pub max_per_call: Option<String>,
    #[uniffi(default)]
    pub max_per_host: Option<String>,
    #[uniffi(default)]
    pub max_total: Option<String>,
    #[uniffi(default)]
    pub window_seconds: Option<u64>,
    #[uniffi(default)]
    pub window_max: Option<String>,
}

/// Top the wallet up (sandbox faucet) before a payment that would leave it below
/// `triggerBalance`, by `topUpAmount` (or by the shortfall, if that is more).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AutoTopUp {
    #[uniffi(default = true)]
    pub enabled: bool,
    pub trigger_balance: String,
    pub top_up_amount: String,
}

/// A paid challenge: attach `header` to the retry of the same request (same method, URL and
/// body). The rest is the receipt, for the app's records and UI.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentResult {
    /// `Vlexivo-Proof: <token>`.
    pub header: HttpHeader,
    pub price: String,
    pub currency: String,
    pub tx_hash: String,
    /// The wallet's balance after this payment.
    pub balance_after: String,
    pub payer: String,
    pub nonce: String,
    /// Unix seconds until which the proof token may be presented (a failed retry may reuse it).
    pub expires_at: u64,
    /// True when the facilitator had already been paid for this challenge (nothing debited).
    pub replayed: bool,
    /// The amount added by auto top-up before paying, if any.
    pub topped_up: Option<String>,
}

/// What paying a 402 would do, without paying: the policy is checked (and nothing reserved
/// afterwards), and the request that would be sent is signed but not sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentQuote {
    pub price: String,
    pub currency: String,
    pub nonce: String,
    pub resource: String,
    /// Lower-cased host the per-host cap counts against.
    pub host: String,
    pub facilitator: String,
    /// `{facilitator}/v1/payments`.
    pub pay_url: String,
    /// The JSON body `pay` would POST there (challenge, payer, EIP-712 signature).
    pub payment_request: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TopUpResult {
    pub amount: String,
    pub balance: String,
    pub currency: String,
    pub tx_hash: Option<String>,
}

/// The payment client. One per wallet; safe to share across threads and coroutines (its
/// budget counts concurrent payments before they happen, so N parallel calls never overshoot
/// a cap together).
#[derive(Debug, uniffi::Object)]
pub struct VlexivoPayments {
    payer: Payer,
    auto_top_up: Option<CoreAutoTopUp>,
    /// Configured, else the last one a challenge named.
    facilitator: Mutex<Option<String>>,
    /// The last balance a facilitator reported, so auto top-up need not ask before each call.
    /// May be stale (another device spends too); an `insufficient_funds` answer corrects it.
    last_balance: Mutex<Option<Money>>,
    /// One top-up at a time: concurrent calls that all see a low balance top up once.
    top_up_lock: tokio::sync::Mutex<()>,
    http: Http,
}

/// Run an operation as a task on the library's tokio runtime. The caller's thread (possibly an
/// app's main thread, which polls the future first) only schedules it, so even the signature is
/// computed elsewhere; and a cancelled caller (a coroutine or Swift task going away) does not
/// cut a payment in half: the task finishes, and the budget records what the facilitator did.
async fn on_runtime<T, F>(op: F) -> Result<T, VlexivoError>
where
    F: std::future::Future<Output = Result<T, CoreError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(op).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(CoreError::Internal(format!("payment task failed: {e}")).into()),
    }
}

fn usd(s: &str) -> Result<Money, CoreError> {
    Money::parse(s, Currency::Usd)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain data, valid whatever a panicking holder was doing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SpendingPolicy {
    fn to_core(&self) -> Result<CorePolicy, CoreError> {
        let opt = |s: &Option<String>| s.as_deref().map(usd).transpose();
        let window = match (self.window_seconds, &self.window_max) {
            (None, None) => None,
            (Some(secs), Some(max)) if secs > 0 => Some((secs, usd(max)?)),
            _ => {
                return Err(CoreError::Config(
                    "spending window needs both windowSeconds (> 0) and windowMax".into(),
                ));
            }
        };
        Ok(CorePolicy {
            max_per_call: opt(&self.max_per_call)?,
            max_total: opt(&self.max_total)?,
            max_per_host: opt(&self.max_per_host)?,
            window,
        })
    }
}

fn normalize_facilitator_url(url: &str) -> Result<String, CoreError> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['?', '#']) {
        return Err(CoreError::Config("facilitatorUrl must be an absolute http(s) base URL".into()));
    }
    Ok(url.to_string())
}

impl VlexivoPayments {
    fn facilitator(&self) -> Result<String, CoreError> {
        lock(&self.facilitator).clone().ok_or_else(|| {
            CoreError::Config("no facilitator known yet: pass facilitatorUrl, or pay a 402 first".into())
        })
    }

    fn set_balance(&self, balance: &str) {
        if let Ok(b) = usd(balance) {
            *lock(&self.last_balance) = Some(b);
        }
    }

    async fn fetch_balance(&self, facilitator: &str) -> Result<Money, CoreError> {
        let info = self.http.wallet(facilitator, &self.address()).await?;
        if let Some(c) = info.currency.as_deref() {
            Currency::parse(c)?;
        }
        let balance = usd(&info.balance)?;
        *lock(&self.last_balance) = Some(balance);
        Ok(balance)
    }

    /// Auto top-up before paying `price`: what core's rule says to add, if anything. A refused
    /// top-up is not fatal while the balance still covers this call.
    async fn top_up_before(
        &self,
        rule: &CoreAutoTopUp,
        facilitator: &str,
        price: &Money,
    ) -> Result<Option<String>, CoreError> {
        let _one_at_a_time = self.top_up_lock.lock().await;
        let cached = *lock(&self.last_balance);
        let balance = match cached {
            Some(b) => b,
            None => self.fetch_balance(facilitator).await?,
        };
        let Some(amount) = rule.amount_before(&balance, price)? else {
            return Ok(None);
        };
        match self.http.top_up(facilitator, &self.address(), &amount.to_string()).await {
            Ok(r) => {
                self.set_balance(&r.balance);
                Ok(Some(r.amount))
            }
            Err(_) if balance.amount() >= price.amount() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST a prepared payment and read the answer; the budget reservation is committed on a
    /// receipt and released otherwise (core's `finish`/`abandon`).
    async fn send(&self, prepared: PreparedPayment) -> Result<PaymentReceipt, CoreError> {
        let pay_url = prepared.pay_url.clone();
        let body = prepared.body.clone();
        match self.http.post_json(&pay_url, body).await {
            Ok((status, answer)) => self.payer.finish(prepared, status, &answer),
            Err(e) => {
                self.payer.abandon(prepared);
                Err(e)
            }
        }
    }

    async fn pay_inner(
        &self,
        status: u16,
        headers: &[HttpHeader],
        body: &[u8],
        method: &str,
        url: &str,
    ) -> Result<PaymentResult, CoreError> {
        let pr = vlexivo_core::client::parse_payment_required(status, header_pairs(headers), body)?;
        let prepared = self.payer.prepare(&pr, method, url, SystemClock.now())?;
        let facilitator = prepared.facilitator.clone();
        let price = prepared.price;
        {
            // Without a configured facilitator, follow the challenges (prepare() has already
            // refused any other one when it is configured); a balance seen at another
            // facilitator means nothing here.
            let mut current = lock(&self.facilitator);
            if current.as_deref() != Some(facilitator.as_str()) {
                *current = Some(facilitator.clone());
                *lock(&self.last_balance) = None;
            }
        }

        let mut topped_up = None;
        if let Some(rule) = &self.auto_top_up {
            match self.top_up_before(rule, &facilitator, &price).await {
                Ok(t) => topped_up = t,
                Err(e) => {
                    self.payer.abandon(prepared);
                    return Err(e);
                }
            }
        }
        let mut result = self.send(prepared).await;

        // Our idea of the balance was stale (the wallet is spent elsewhere too): now that the
        // facilitator has said what it is, top up and pay once more.
        if let (Err(CoreError::InsufficientFunds { balance, .. }), Some(rule), None) =
            (&result, &self.auto_top_up, &topped_up)
        {
            self.set_balance(balance);
            if let Ok(Some(t)) = self.top_up_before(rule, &facilitator, &price).await {
                topped_up = Some(t);
                let again = self.payer.prepare(&pr, method, url, SystemClock.now())?;
                result = self.send(again).await;
            }
        }
        let receipt = result?;
        self.set_balance(&receipt.balance);
        Ok(PaymentResult {
            header: HttpHeader { name: vlexivo_core::headers::PROOF.to_string(), value: receipt.token },
            price: price.to_string(),
            currency: receipt.currency,
            tx_hash: receipt.tx_hash,
            balance_after: receipt.balance,
            payer: receipt.payer,
            nonce: receipt.nonce,
            expires_at: receipt.expires_at,
            replayed: receipt.replayed,
            topped_up,
        })
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl VlexivoPayments {
    /// `facilitatorUrl`: pay only through this facilitator (a challenge naming another one is
    /// refused); without it, the facilitator each challenge names is used. `tls`: how the
    /// facilitator's certificate is verified (a private CA, https only).
    #[uniffi::constructor(default(auto_top_up = None, facilitator_url = None, tls = None, policy))]
    pub fn new(
        wallet: Arc<Wallet>,
        policy: SpendingPolicy,
        auto_top_up: Option<AutoTopUp>,
        facilitator_url: Option<String>,
        tls: Option<TlsOptions>,
    ) -> Result<Arc<Self>, VlexivoError> {
        let tls = tls.unwrap_or_default().to_config()?;
        let facilitator = facilitator_url.as_deref().map(normalize_facilitator_url).transpose()?;
        let auto_top_up = match auto_top_up {
            Some(a) if a.enabled => Some(CoreAutoTopUp::new(&a.trigger_balance, &a.top_up_amount)?),
            _ => None,
        };
        Ok(Arc::new(Self {
            payer: Payer::new(wallet.inner.clone(), policy.to_core()?, facilitator.clone())
                .with_https_only(tls.is_https_only()),
            auto_top_up,
            facilitator: Mutex::new(facilitator),
            last_balance: Mutex::new(None),
            top_up_lock: tokio::sync::Mutex::new(()),
            http: Http::new(&tls)?,
        }))
    }

    /// Pay for a 402 the app received for `method url`: returns the header for the retry.
    /// Throws `NotPaymentRequired` for any other response, `BudgetExceeded` when the policy
    /// refuses, `InsufficientFunds` with the amounts when the wallet cannot pay.
    pub async fn pay(
        self: Arc<Self>,
        status: u16,
        headers: Vec<HttpHeader>,
        body: Vec<u8>,
        method: String,
        url: String,
    ) -> Result<PaymentResult, VlexivoError> {
        on_runtime(async move { self.pay_inner(status, &headers, &body, &method, &url).await }).await
    }

    /// Check a 402 against the request and the policy and sign the payment, without sending
    /// it or keeping any budget reserved. `nowSeconds` defaults to the system clock.
    #[uniffi::method(default(now_seconds = None))]
    pub fn quote(
        &self,
        status: u16,
        headers: Vec<HttpHeader>,
        body: Vec<u8>,
        method: String,
        url: String,
        now_seconds: Option<u64>,
    ) -> Result<PaymentQuote, VlexivoError> {
        let pr = parse_402(status, &headers, &body)?;
        let now = now_seconds.unwrap_or_else(|| SystemClock.now());
        let p = self.payer.prepare(&pr, &method, &url, now)?;
        let quote = PaymentQuote {
            price: p.price.to_string(),
            currency: p.price.currency().code().to_string(),
            nonce: p.nonce.clone(),
            resource: pr.challenge.resource(),
            host: p.host.to_ascii_lowercase(),
            facilitator: p.facilitator.clone(),
            pay_url: p.pay_url.clone(),
            payment_request: p.body.clone(),
            expires_at: pr.challenge.exp,
        };
        self.payer.abandon(p);
        Ok(quote)
    }

    /// The wallet's balance at the facilitator (decimal string, USD).
    pub async fn balance(self: Arc<Self>) -> Result<String, VlexivoError> {
        on_runtime(async move {
            let facilitator = self.facilitator()?;
            Ok(self.fetch_balance(&facilitator).await?.to_string())
        })
        .await
    }

    /// Add `amount` to the wallet (the sandbox faucet; live wallets are funded on chain).
    pub async fn top_up(self: Arc<Self>, amount: String) -> Result<TopUpResult, VlexivoError> {
        on_runtime(async move {
            let amount = usd(&amount)?.positive()?;
            let facilitator = self.facilitator()?;
            let r = self.http.top_up(&facilitator, &self.address(), &amount.to_string()).await?;
            self.set_balance(&r.balance);
            Ok(TopUpResult {
                amount: r.amount,
                balance: r.balance,
                currency: r.currency.unwrap_or_else(|| "usd".into()),
                tx_hash: r.tx_hash,
            })
        })
        .await
    }

    /// The wallet's address.
    pub fn address(&self) -> String {
        self.payer.wallet().address().to_checksum()
    }

    /// The facilitator in use: the configured one, else the last one a challenge named.
    pub fn facilitator_url(&self) -> Option<String> {
        lock(&self.facilitator).clone()
    }

    /// What this client has paid so far (its budget's committed spend).
    pub fn spent_total(&self) -> String {
        self.payer.budget().spent_total().to_string()
    }
}
