//! The payer: one sans-I/O flow that every client executes (Node, Python sync and async, the
//! Rust client, Kotlin and Swift through uniffi). The clients only do I/O: they send what a
//! [`Step`] asks for and feed back what came of it; every decision is made here.
//!
//! ```text
//! let mut call = payer.call("POST", url, replayable)?;
//! let mut step = call.start();
//! loop {
//!     step = match step {
//!         Step::Send { url, headers }  => send the request (+ headers), then call.response(…)?
//!         Step::ReadBody { limit }     => read ≤ limit bytes of that response, call.response(…, Some(body))?
//!         Step::Facilitator(req)       => HTTP to the facilitator (no redirects), then call.answer(status, body)?
//!                                         or call.transport_error(sent, why)?
//!         Step::Paid(event)            => run the app's hook, then call.resume()?
//!         Step::Wait { millis }        => sleep, then call.resume()?
//!         Step::Return                 => return the last response to the caller
//!     }
//! }
//! ```
//!
//! The rules the flow holds, in the order it applies them to a 402: the challenge must be for
//! the request made (method, path, origin, and this payer when it names one) and unexpired; its
//! facilitator must be trusted ([`TrustedFacilitators`]) before anything is signed or queried; a
//! proof paid for this resource whose call failed with a 5xx is reused rather than paid again;
//! payments left in doubt at this facilitator are re-sent first (the same signed payment is
//! idempotent and tells its fate); the budget reserves the price (a refused call moves no money, not even a
//! top-up); auto top-up tops the wallet up, capped by what the budget could still spend; the
//! payment is sent, and sent once more if the answer is unclear; the request is retried once
//! with the proof. A payment counts as spent from the moment it is reserved until a clear
//! answer says it was not made: an unclear one leaves it counted, in doubt.

mod flow;
mod funding;
mod trust;
#[cfg(feature = "testing")]
pub mod vectors;
mod wire;

pub use flow::{Call, FacilitatorRequest, PaymentEvent, Step};
pub use funding::{Funding, MINE_TIMEOUT_SECS};
pub use trust::{Target, TrustedFacilitators, normalize_base_url};
pub use wire::{
    MAX_RESPONSE_BODY, PayAnswer, PaymentRequired, challenge_header, classify_pay_answer, error_from_body,
    parse_payment_required, proof_header,
};

use crate::env::Clock;
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::payment::{CHALLENGE_LEEWAY_SECS, TopUpReceipt};
use crate::policy::{Budget, Reservation, SpendingPolicy};
use crate::wallet::Wallet;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Scheme+authority and path of an absolute URL ("http://h:1/a?b" → ("h:1", "/a")).
pub fn split_url(url: &str) -> Result<(String, String)> {
    let t = Target::parse(url)?;
    Ok((t.authority().to_string(), t.path().to_string()))
}

/// When and how much to top up a wallet before paying, and from where: the facilitator's
/// faucet (sandbox), or in live mode a funding wallet's on-chain transfer ([`Funding`]).
#[derive(Debug, Clone)]
pub struct AutoTopUp {
    pub enabled: bool,
    pub trigger_balance: Money,
    pub top_up_amount: Money,
    /// The most auto top-up may add over the payer's lifetime: a top-up past it is refused
    /// (`top_up_refused`), unless the balance still covers the price.
    pub max_total: Option<Money>,
    /// Live mode: where top-ups come from. Without it a live payer's top-up asks the
    /// facilitator, which has no faucet in live mode and refuses.
    pub funding: Option<Funding>,
}

impl AutoTopUp {
    pub fn new(trigger_balance: &str, top_up_amount: &str) -> Result<Self> {
        Ok(Self::of(
            Money::parse(trigger_balance, Currency::Usd)?,
            Money::parse(top_up_amount, Currency::Usd)?.positive()?,
        ))
    }

    /// From amounts already parsed (`top_up_amount` positive), without a cap or funding wallet.
    pub fn of(trigger_balance: Money, top_up_amount: Money) -> Self {
        Self { enabled: true, trigger_balance, top_up_amount, max_total: None, funding: None }
    }

    /// Cap what auto top-up adds over the payer's lifetime.
    pub fn with_max_total(mut self, max_total: &str) -> Result<Self> {
        self.max_total = Some(Money::parse(max_total, Currency::Usd)?);
        Ok(self)
    }

    /// Live mode: top up by on-chain transfers from this funding wallet.
    pub fn with_funding(mut self, funding: Funding) -> Self {
        self.funding = Some(funding);
        self
    }

    /// How much to add before paying `price` from `balance`, if anything: when the balance
    /// after this payment would fall below the trigger (or cannot cover it), add
    /// `top_up_amount`, or more if that alone would not cover the price.
    pub fn amount_before(&self, balance: &Money, price: &Money) -> Result<Option<Money>> {
        if !self.enabled {
            return Ok(None);
        }
        let after = balance.amount() - price.amount();
        if after >= self.trigger_balance.amount() {
            return Ok(None);
        }
        let shortfall = Money::new((-after).max(rust_decimal::Decimal::ZERO), price.currency())?;
        Ok(Some(if shortfall.amount() > self.top_up_amount.amount() {
            shortfall
        } else {
            self.top_up_amount
        }))
    }
}

/// How a payer pays: its caps, the facilitators it trusts, auto top-up.
#[derive(Debug, Clone)]
pub struct PayerConfig {
    pub policy: SpendingPolicy,
    pub facilitators: TrustedFacilitators,
    pub auto_top_up: Option<AutoTopUp>,
    /// Send the wallet's address on the unpaid request (`Vlexivo-Payer`), so an API that
    /// prices by payer (usage-based discounts) can quote this wallet's price. On by default;
    /// off for privacy: the API then learns the payer only from a paid request's proof.
    pub payer_hint: bool,
}

impl PayerConfig {
    pub fn new(facilitators: TrustedFacilitators) -> Self {
        Self { policy: SpendingPolicy::default(), facilitators, auto_top_up: None, payer_hint: true }
    }
}

/// The payer: a wallet, a budget, the trusted facilitators, and what calls share (balance
/// estimates, proofs paid but not served, payments in doubt). Cheap to clone; clones share all.
#[derive(Clone, Debug)]
pub struct Payer {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    wallet: Wallet,
    address: String,
    budget: Budget,
    trust: TrustedFacilitators,
    auto_top_up: Option<AutoTopUp>,
    payer_hint: bool,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Proofs kept for reuse at most (the oldest are dropped beyond it).
const MAX_UNUSED_PROOFS: usize = 256;
/// A proof is reused only while it has at least this long left (the retry must reach the API).
const REUSE_MARGIN_SECS: u64 = 5;

#[derive(Debug, Default)]
struct State {
    /// Per facilitator: what its wallet balance is believed to be, and who may top it up.
    funds: HashMap<String, Funds>,
    /// By resource (`origin METHOD path`): a proof paid for it whose call failed with a 5xx.
    unused: HashMap<String, Proof>,
    in_doubt: Vec<InDoubt>,
    next_lease: u64,
    /// What auto top-up added so far (atomic units), for [`AutoTopUp::max_total`].
    topped_up: u64,
}

#[derive(Debug, Default)]
struct Funds {
    /// The last balance the facilitator reported, less what was paid since. Only a guess:
    /// an `insufficient_funds` answer corrects it.
    estimate: Option<Money>,
    /// `(id, until)`: the call allowed to query the balance and top up, so concurrent calls
    /// top up once rather than each.
    lease: Option<(u64, u64)>,
}

/// Seconds after which a top-up lease is considered abandoned.
const LEASE_SECS: u64 = 60;

impl Funds {
    fn spend(&mut self, price: &Money) {
        if let Some(e) = self.estimate {
            self.estimate = Some(e.checked_sub(price).unwrap_or_else(|_| Money::zero(e.currency())));
        }
    }
}

/// A proof token and what it buys: kept for reuse when the API failed after payment.
#[derive(Debug, Clone)]
struct Proof {
    /// The payment's receipt (its `token` is the proof).
    receipt: crate::payment::PaymentReceipt,
    /// What was paid (the challenge's price).
    amount: Money,
    account: String,
    body_sha256: Option<String>,
}

/// A payment whose fate is unknown: its reservation stays counted until a clear answer.
#[derive(Debug)]
struct InDoubt {
    request: FacilitatorRequest,
    nonce: String,
    price: Money,
    /// Challenge expiry: after it (and the facilitator's leeway) re-sending cannot tell.
    exp: u64,
    key: String,
    account: String,
    body_sha256: Option<String>,
    method: String,
    url: String,
    host: String,
    resource: String,
    reservation: Reservation,
}

/// What [`Payer::quote`] found: the payment that paying would send, unsent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub price: Money,
    pub nonce: String,
    pub resource: String,
    /// The per-host budget key (`host[:port]`, lower case).
    pub host: String,
    pub facilitator: String,
    /// `{facilitator}/v1/payments`.
    pub pay_url: String,
    /// The signed payment request (JSON) that would be POSTed there.
    pub body: String,
    pub expires_at: u64,
}

impl Payer {
    pub fn new(wallet: Wallet, config: PayerConfig, clock: Arc<dyn Clock>) -> Self {
        let address = wallet.address().to_checksum();
        Self {
            inner: Arc::new(Shared {
                wallet,
                address,
                budget: Budget::new(config.policy),
                trust: config.facilitators,
                auto_top_up: config.auto_top_up.filter(|a| a.enabled),
                payer_hint: config.payer_hint,
                clock,
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub fn wallet(&self) -> &Wallet {
        &self.inner.wallet
    }

    /// The wallet's address (EIP-55).
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    pub fn trusted(&self) -> &TrustedFacilitators {
        &self.inner.trust
    }

    pub fn auto_top_up(&self) -> Option<&AutoTopUp> {
        self.inner.auto_top_up.as_ref()
    }

    /// Whether unpaid requests carry the wallet's address ([`PayerConfig::payer_hint`]).
    pub fn sends_payer_hint(&self) -> bool {
        self.inner.payer_hint
    }

    fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// Committed spend.
    pub fn spent_total(&self) -> Money {
        self.inner.budget.spent_total()
    }

    /// Spend reserved by payments in flight or in doubt.
    pub fn reserved_total(&self) -> Money {
        self.inner.budget.reserved_total()
    }

    /// What auto top-up added so far.
    pub fn topped_up_total(&self) -> Money {
        Money::from_atomic(self.inner.state.lock().topped_up, Currency::Usd)
            .unwrap_or(Money::zero(Currency::Usd))
    }

    fn add_topped_up(&self, m: &Money) {
        let mut st = self.inner.state.lock();
        st.topped_up = st.topped_up.saturating_add(m.to_atomic());
    }

    /// Payments whose fate is unknown (counted in [`Payer::reserved_total`]).
    pub fn in_doubt_total(&self) -> Money {
        let st = self.inner.state.lock();
        let currency = st.in_doubt.first().map_or(Currency::Usd, |d| d.price.currency());
        let units: u64 = st.in_doubt.iter().map(|d| d.price.to_atomic()).sum();
        Money::from_atomic(units, currency).unwrap_or(Money::zero(currency))
    }

    /// The facilitator, checked and normalized, that paying this challenge for `method url`
    /// would go through.
    fn check(&self, pr: &PaymentRequired, method: &str, target: &Target, now: u64) -> Result<String> {
        let c = &pr.challenge;
        if !c.method.eq_ignore_ascii_case(method) {
            return Err(Error::ChallengeMismatch("method"));
        }
        // A challenge for another origin: a relaying site handing over a real API's 402.
        if c.origin != target.origin() {
            return Err(Error::ChallengeMismatch("origin"));
        }
        if c.path != target.path() {
            return Err(Error::ChallengeMismatch("path"));
        }
        if now > c.exp {
            return Err(Error::ChallengeExpired);
        }
        // Priced for another wallet (a hint that was not ours): its facilitator would refuse us.
        if c.payer.as_deref().is_some_and(|p| p != self.inner.address) {
            return Err(Error::ChallengeMismatch("payer"));
        }
        self.inner.trust.check(&c.facilitator)
    }

    /// Check a 402 against the request and the policy and sign the payment, without sending
    /// it or keeping anything reserved.
    pub fn quote(&self, pr: &PaymentRequired, method: &str, url: &str) -> Result<Quote> {
        self.quote_at(pr, method, url, self.now())
    }

    /// [`Payer::quote`] at `now` rather than the payer's clock.
    pub fn quote_at(&self, pr: &PaymentRequired, method: &str, url: &str, now: u64) -> Result<Quote> {
        let target = Target::parse(url)?;
        let facilitator = self.check(pr, method, &target, now)?;
        let reservation = self.inner.budget.reserve(target.authority(), &pr.price, now)?;
        reservation.release();
        let signed = crate::payment::sign(&pr.challenge, &pr.encoded, &self.inner.wallet)?;
        Ok(Quote {
            price: pr.price,
            nonce: pr.challenge.nonce.clone(),
            resource: pr.challenge.resource(),
            host: target.authority().to_string(),
            pay_url: format!("{facilitator}/v1/payments"),
            facilitator,
            body: serde_json::to_string(&signed).expect("serializes"),
            expires_at: pr.challenge.exp,
        })
    }

    /// Start paying for one request: `replayable` says whether its body can be sent twice.
    pub fn call(&self, method: &str, url: &str, replayable: bool) -> Result<Call> {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::RequestMalformed(format!("method {method:?}")));
        }
        Ok(Call::new(self.clone(), method.to_ascii_uppercase(), Target::parse(url)?, replayable))
    }

    fn facilitator_or_primary(&self, facilitator: Option<&str>) -> Result<String> {
        match facilitator {
            Some(f) => normalize_base_url(f),
            None => Ok(self.inner.trust.primary().to_string()),
        }
    }

    /// `GET {facilitator}/v1/wallets/{address}`; the primary trusted facilitator by default.
    pub fn balance_request(&self, facilitator: Option<&str>) -> Result<FacilitatorRequest> {
        let f = self.facilitator_or_primary(facilitator)?;
        Ok(FacilitatorRequest::get(format!("{f}/v1/wallets/{}", self.address()), f))
    }

    /// Read the answer to a [`Payer::balance_request`].
    pub fn read_balance(&self, req: &FacilitatorRequest, status: u16, body: &[u8]) -> Result<Money> {
        let b = wallet_balance(status, body)?;
        self.inner.state.lock().funds.entry(req.facilitator.clone()).or_default().estimate = Some(b);
        Ok(b)
    }

    /// `POST {facilitator}/v1/wallets/{address}/topup` (the sandbox faucet).
    pub fn top_up_request(&self, amount: &Money, facilitator: Option<&str>) -> Result<FacilitatorRequest> {
        let amount = amount.positive()?;
        let f = self.facilitator_or_primary(facilitator)?;
        Ok(top_up_request(&f, self.address(), &amount))
    }

    /// Read the answer to a [`Payer::top_up_request`].
    pub fn read_top_up(&self, req: &FacilitatorRequest, status: u16, body: &[u8]) -> Result<TopUpReceipt> {
        let r = top_up_receipt(status, body)?;
        let b = Money::parse(&r.balance, Currency::Usd).ok();
        self.inner.state.lock().funds.entry(req.facilitator.clone()).or_default().estimate = b;
        Ok(r)
    }

    // --- shared state, for `Call` ---

    fn take_unused(&self, key: &str, pr: &PaymentRequired, now: u64) -> Option<Proof> {
        let p = self.inner.state.lock().unused.remove(key)?;
        let c = &pr.challenge;
        let covers = p.amount.cmp_amount(&pr.price).is_ok_and(|o| o.is_ge());
        (covers
            && p.receipt.expires_at > now.saturating_add(REUSE_MARGIN_SECS)
            && p.account == c.account
            && p.body_sha256 == c.body_sha256)
            .then_some(p)
    }

    fn keep_unused(&self, key: String, proof: Proof) {
        let now = self.now();
        let mut st = self.inner.state.lock();
        st.unused.insert(key, proof);
        if st.unused.len() > MAX_UNUSED_PROOFS {
            st.unused.retain(|_, p| p.receipt.expires_at > now);
            while st.unused.len() > MAX_UNUSED_PROOFS {
                let oldest =
                    st.unused.iter().min_by_key(|(_, p)| p.receipt.expires_at).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    st.unused.remove(&k);
                }
            }
        }
    }

    /// An in-doubt payment at `facilitator` that re-sending can still settle, other than
    /// those in `skip`.
    fn take_in_doubt(&self, facilitator: &str, now: u64, skip: &[String]) -> Option<InDoubt> {
        let mut st = self.inner.state.lock();
        let i = st.in_doubt.iter().position(|d| {
            d.request.facilitator == facilitator
                && now <= d.exp.saturating_add(CHALLENGE_LEEWAY_SECS)
                && !skip.contains(&d.nonce)
        })?;
        Some(st.in_doubt.swap_remove(i))
    }

    fn put_in_doubt(&self, d: InDoubt) {
        self.inner.state.lock().in_doubt.push(d);
    }
}

fn top_up_request(facilitator: &str, address: &str, amount: &Money) -> FacilitatorRequest {
    FacilitatorRequest::post(
        format!("{facilitator}/v1/wallets/{address}/topup"),
        serde_json::json!({ "amount": amount.to_string() }).to_string(),
        facilitator.to_string(),
    )
}

fn unexpected(status: u16, what: &str) -> Error {
    Error::FacilitatorError {
        status,
        code: "bad_response".into(),
        message: format!("facilitator answered with an unexpected {what}"),
    }
}

/// An answer that is not a success: a Vlexivo error, or `facilitator_unavailable` for a 5xx
/// without one (a proxy's "bad gateway").
fn failed_answer(status: u16, body: &[u8]) -> Error {
    match error_from_body(status, body) {
        Error::FacilitatorError { code, .. } if code == "http_error" && status >= 500 => {
            Error::FacilitatorUnavailable(format!("HTTP {status}"))
        }
        e => e,
    }
}

fn wallet_balance(status: u16, body: &[u8]) -> Result<Money> {
    #[derive(serde::Deserialize)]
    struct W {
        balance: String,
        #[serde(default)]
        currency: Option<String>,
    }
    if !(200..300).contains(&status) {
        return Err(failed_answer(status, body));
    }
    let w: W = serde_json::from_slice(body).map_err(|_| unexpected(status, "wallet"))?;
    let currency = Currency::parse(w.currency.as_deref().unwrap_or("usd"))?;
    Money::parse(&w.balance, currency)
}

fn top_up_receipt(status: u16, body: &[u8]) -> Result<TopUpReceipt> {
    if !(200..300).contains(&status) {
        return Err(failed_answer(status, body));
    }
    serde_json::from_slice(body).map_err(|_| unexpected(status, "top-up receipt"))
}

#[cfg(test)]
mod tests;
