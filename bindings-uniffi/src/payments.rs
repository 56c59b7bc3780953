//! `VlexivoPayments`: turns a 402 into the header for the paid retry. Every decision is core's
//! payer flow (`vlexivo_core::client::Call`); this file performs the facilitator requests it
//! asks for and converts types.

use crate::facilitator::Http;
use crate::flow::PaymentFlow;
use crate::{HttpHeader, TlsOptions, VlexivoError, Wallet, header_pairs, parse_402};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use vlexivo_core::client::{
    AutoTopUp as CoreAutoTopUp, Call, Funding, Payer, PayerConfig, Step, TrustedFacilitators,
};
use vlexivo_core::env::{Clock, FixedClock, SystemClock};
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

/// Top the wallet up before a payment that would leave it below `triggerBalance`, by
/// `topUpAmount` (or by the shortfall, if that is more; never more than the spending caps could
/// still spend). Sandbox: from the facilitator's faucet. Live: the funding wallet
/// (`fundingWalletKey`) sends the token to this wallet on chain through `rpcUrl` (default
/// `VLX_RPC_URL`) and pays its gas; the payment goes on once the transfer is mined.
/// `maxTotal`: the most auto top-up may add over this client's lifetime (`top_up_refused` past
/// it).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct AutoTopUp {
    #[uniffi(default = true)]
    pub enabled: bool,
    pub trigger_balance: String,
    pub top_up_amount: String,
    #[uniffi(default)]
    pub max_total: Option<String>,
    /// `0x` + 64 hex digits: a secret, never shown by `Debug` nor in errors.
    #[uniffi(default)]
    pub funding_wallet_key: Option<String>,
    /// The chain's JSON-RPC URL (it may hold an API key: never shown in errors).
    #[uniffi(default)]
    pub rpc_url: Option<String>,
}

/// Neither the funding key nor the RPC URL.
impl std::fmt::Debug for AutoTopUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoTopUp")
            .field("enabled", &self.enabled)
            .field("trigger_balance", &self.trigger_balance)
            .field("top_up_amount", &self.top_up_amount)
            .field("max_total", &self.max_total)
            .field("funding_wallet", &self.funding_wallet_key.is_some())
            .finish_non_exhaustive()
    }
}

impl AutoTopUp {
    fn to_core(&self) -> Result<CoreAutoTopUp, CoreError> {
        let mut rule = CoreAutoTopUp::new(&self.trigger_balance, &self.top_up_amount)?;
        if let Some(max) = &self.max_total {
            rule = rule.with_max_total(max)?;
        }
        let rpc_url = match &self.rpc_url {
            Some(url) => Some(url.clone()),
            None if self.funding_wallet_key.is_some() => vlexivo_core::envvars::RPC_URL.from_process()?,
            None => None,
        };
        if let Some(funding) =
            Funding::from_options(self.funding_wallet_key.as_deref(), rpc_url.as_deref(), "rpcUrl")?
        {
            rule = rule.with_funding(funding);
        }
        Ok(rule)
    }
}

/// A paid challenge: attach `header` to the retry of the same request (same method, URL and
/// body), then tell `reportRetry(nonce, status)` how it went. The rest is the receipt, for the
/// app's records and UI.
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
    /// True when the proof was paid by an earlier call whose retry failed with a 5xx: nothing
    /// was paid now.
    pub reused: bool,
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

/// Calls whose retry the app has not reported yet, at most.
const MAX_PENDING_RETRIES: usize = 64;

/// The payment client. One per wallet; safe to share across threads and coroutines (its
/// budget counts payments in flight and in doubt, so N parallel calls never overshoot a cap
/// together).
#[derive(uniffi::Object)]
pub struct VlexivoPayments {
    pub(crate) payer: Payer,
    http: Http,
    /// Paid calls waiting for `reportRetry`, oldest first.
    pending: Mutex<VecDeque<(String, Call)>>,
}

impl std::fmt::Debug for VlexivoPayments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VlexivoPayments").field("address", &self.payer.address()).finish_non_exhaustive()
    }
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

impl VlexivoPayments {
    /// Perform the facilitator request a step asks for; the flow's next step.
    pub(crate) async fn facilitator_step(
        &self,
        call: &mut Call,
        req: &vlexivo_core::client::FacilitatorRequest,
    ) -> Result<Step, CoreError> {
        match self.http.send(req).await {
            Ok((status, body)) => call.answer(status, &body),
            Err((sent, why)) => call.transport_error(sent, &why),
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
        let mut call = self.payer.call(method, url, true)?;
        // The app sent the request itself: the flow starts at its answer.
        let _ = call.start();
        let mut step = call.response(status, header_pairs(headers), Some(body), None)?;
        loop {
            step = match step {
                Step::Facilitator(req) => self.facilitator_step(&mut call, &req).await?,
                Step::Paid(_) => call.resume()?,
                Step::Wait { millis } => {
                    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
                    call.resume()?
                }
                Step::Send { headers, .. } => return self.paid(call, headers),
                Step::Return => return Err(CoreError::NotPaymentRequired),
                Step::ReadBody { .. } => return Err(CoreError::Internal("the body was given".into())),
            };
        }
    }

    fn paid(&self, call: Call, headers: Vec<(&'static str, String)>) -> Result<PaymentResult, CoreError> {
        let (name, value) = headers
            .into_iter()
            .next()
            .ok_or_else(|| CoreError::Internal("a retry without a proof".into()))?;
        let receipt = call.proof().cloned().ok_or_else(|| CoreError::Internal("no receipt".into()))?;
        let price = call.price().ok_or_else(|| CoreError::Internal("no price".into()))?;
        let result = PaymentResult {
            header: HttpHeader { name: name.to_string(), value },
            price: price.to_string(),
            currency: receipt.currency,
            tx_hash: receipt.tx_hash,
            balance_after: receipt.balance,
            payer: receipt.payer,
            nonce: receipt.nonce.clone(),
            expires_at: receipt.expires_at,
            replayed: receipt.replayed,
            topped_up: call.topped_up().map(|t| t.to_string()),
            reused: call.proof_reused(),
        };
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_PENDING_RETRIES {
            pending.pop_front();
        }
        pending.push_back((receipt.nonce, call));
        Ok(result)
    }

    async fn wallet_call(
        &self,
        req: &vlexivo_core::client::FacilitatorRequest,
    ) -> Result<(u16, Vec<u8>), CoreError> {
        self.http.wallet(req).await
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl VlexivoPayments {
    /// `facilitatorUrl` and `facilitators`: the facilitators this client pays through; a
    /// challenge naming any other is refused (`facilitator_untrusted`) before anything is
    /// signed or queried. With neither, `VLX_FACILITATOR_URL` from the environment, else the
    /// default local facilitator. `tls`: how the facilitator's certificate is verified (a
    /// private CA, https only). `fixedNow`: a fixed clock (unix seconds), for replaying
    /// recorded exchanges. `payerHint`: send the wallet's address on the unpaid request
    /// (`Vlexivo-Payer`, default true) so APIs can price by payer; false for privacy.
    #[uniffi::constructor(default(
        auto_top_up = None,
        facilitator_url = None,
        tls = None,
        facilitators = None,
        fixed_now = None,
        payer_hint = None,
        policy
    ))]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wallet: Arc<Wallet>,
        policy: SpendingPolicy,
        auto_top_up: Option<AutoTopUp>,
        facilitator_url: Option<String>,
        tls: Option<TlsOptions>,
        facilitators: Option<Vec<String>>,
        fixed_now: Option<u64>,
        payer_hint: Option<bool>,
    ) -> Result<Arc<Self>, VlexivoError> {
        let tls = tls.unwrap_or_default().to_config()?;
        let trust =
            TrustedFacilitators::from_env(facilitator_url.as_deref(), &facilitators.unwrap_or_default())?
                .with_https_only(tls.is_https_only());
        let auto_top_up = match auto_top_up {
            Some(a) if a.enabled => Some(a.to_core()?),
            _ => None,
        };
        let clock: Arc<dyn Clock> = match fixed_now {
            Some(n) => Arc::new(FixedClock::new(n)),
            None => Arc::new(SystemClock),
        };
        let config = PayerConfig {
            policy: policy.to_core()?,
            facilitators: trust,
            auto_top_up,
            payer_hint: payer_hint.unwrap_or(true),
        };
        Ok(Arc::new(Self {
            payer: Payer::new(wallet.inner.clone(), config, clock),
            http: Http::new(&tls)?,
            pending: Mutex::new(VecDeque::new()),
        }))
    }

    /// Pay for a 402 the app received for `method url`: returns the header for the retry.
    /// Throws `NotPaymentRequired` for any other response, `BudgetExceeded` when the policy
    /// refuses, `InsufficientFunds` with the amounts when the wallet cannot pay,
    /// `facilitator_untrusted` for a challenge naming a facilitator this client does not
    /// trust, `payment_in_doubt` when the facilitator's answer did not say whether it charged
    /// (the payment stays counted by the budget until a later call learns its fate).
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

    /// After sending the retry with a `PaymentResult`'s header, report its HTTP status: on a
    /// 5xx the API did not keep the proof, and the next `pay` for the same resource uses it
    /// again instead of paying twice. Unknown or already reported nonces are ignored.
    pub fn report_retry(&self, nonce: String, status: u16) {
        let call = {
            let mut pending = lock(&self.pending);
            let i = pending.iter().position(|(n, _)| *n == nonce);
            i.and_then(|i| pending.remove(i))
        };
        if let Some((_, mut call)) = call {
            // Only a 5xx changes anything (the proof is kept); other answers end the call.
            let _ = call.response(status, std::iter::empty(), None, None);
        }
    }

    /// Drive the payer flow step by step with the app's own HTTP for everything (the API and
    /// the facilitator): see `PaymentFlow`.
    pub fn flow(
        self: Arc<Self>,
        method: String,
        url: String,
        replayable: bool,
    ) -> Result<Arc<PaymentFlow>, VlexivoError> {
        Ok(PaymentFlow::new(self.payer.call(&method, &url, replayable)?))
    }

    /// Check a 402 against the request and the policy and sign the payment, without sending
    /// it or keeping any budget reserved. `nowSeconds` defaults to the client's clock.
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
        let q = match now_seconds {
            Some(now) => self.payer.quote_at(&pr, &method, &url, now)?,
            None => self.payer.quote(&pr, &method, &url)?,
        };
        Ok(PaymentQuote {
            price: q.price.to_string(),
            currency: q.price.currency().code().to_string(),
            nonce: q.nonce,
            resource: q.resource,
            host: q.host,
            facilitator: q.facilitator,
            pay_url: q.pay_url,
            payment_request: q.body,
            expires_at: q.expires_at,
        })
    }

    /// The wallet's balance at the facilitator (decimal string, USD).
    pub async fn balance(self: Arc<Self>) -> Result<String, VlexivoError> {
        on_runtime(async move {
            let req = self.payer.balance_request(None)?;
            let (status, body) = self.wallet_call(&req).await?;
            Ok(self.payer.read_balance(&req, status, &body)?.to_string())
        })
        .await
    }

    /// Add `amount` to the wallet (the sandbox faucet; live wallets are funded on chain).
    pub async fn top_up(self: Arc<Self>, amount: String) -> Result<TopUpResult, VlexivoError> {
        on_runtime(async move {
            let req = self.payer.top_up_request(&usd(&amount)?, None)?;
            let (status, body) = self.wallet_call(&req).await?;
            let r = self.payer.read_top_up(&req, status, &body)?;
            Ok(TopUpResult {
                amount: r.amount,
                balance: r.balance,
                currency: r.currency,
                tx_hash: Some(r.tx_hash),
            })
        })
        .await
    }

    /// The wallet's address.
    pub fn address(&self) -> String {
        self.payer.address().to_string()
    }

    /// The facilitator wallet operations go to: the first trusted one.
    pub fn facilitator_url(&self) -> Option<String> {
        Some(self.payer.trusted().primary().to_string())
    }

    /// The facilitators this client pays through.
    pub fn facilitators(&self) -> Vec<String> {
        self.payer.trusted().urls().to_vec()
    }

    /// What this client has paid so far (its budget's committed spend).
    pub fn spent_total(&self) -> String {
        self.payer.spent_total().to_string()
    }

    /// Reserved by payments in flight or in doubt.
    pub fn reserved_total(&self) -> String {
        self.payer.reserved_total().to_string()
    }

    /// Payments whose fate the facilitator has not told yet (counted as spent meanwhile).
    pub fn in_doubt_total(&self) -> String {
        self.payer.in_doubt_total().to_string()
    }
}
