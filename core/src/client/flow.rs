//! One paid request, as a state machine: fed with what happened, it returns the next [`Step`].

use super::funding::{LiveTopUp, Next};
use super::wire::{
    PayAnswer, PaymentRequired, challenge_header, classify_pay_answer, parse_payment_required,
};
use super::{InDoubt, MAX_RESPONSE_BODY, Payer, Proof, Target, top_up_request};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::payment::PaymentReceipt;
use crate::policy::Reservation;

/// In-doubt payments re-sent at most per call (each may take a facilitator timeout).
const MAX_RECONCILE_PER_CALL: usize = 3;
/// How long to sleep while another call tops the wallet up.
const WAIT_MILLIS: u64 = 25;

/// An HTTP request the flow needs: to the facilitator, or (a live top-up) JSON-RPC to the
/// chain's node, whose `url` may carry an API key (the flow never puts it in an error).
/// Executors send it without following redirects and read at most [`MAX_RESPONSE_BODY`] bytes
/// of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilitatorRequest {
    /// "GET" or "POST".
    pub method: &'static str,
    pub url: String,
    /// JSON, sent with `content-type: application/json`.
    pub body: Option<String>,
    /// The facilitator's base URL.
    pub facilitator: String,
}

impl FacilitatorRequest {
    pub(super) fn get(url: String, facilitator: String) -> Self {
        Self { method: "GET", url, body: None, facilitator }
    }
    pub(super) fn post(url: String, body: String, facilitator: String) -> Self {
        Self { method: "POST", url, body: Some(body), facilitator }
    }
}

/// A payment made, for the app's hook (`onPayment`, `on_payment`).
#[derive(Debug, Clone)]
pub struct PaymentEvent {
    pub method: String,
    pub url: String,
    /// The per-host budget key.
    pub host: String,
    /// "METHOD /path".
    pub resource: String,
    pub facilitator: String,
    /// What the challenge asked.
    pub price: Money,
    pub receipt: PaymentReceipt,
    /// Added to the wallet by auto top-up before this payment.
    pub topped_up: Option<Money>,
    /// That top-up's receipt.
    pub top_up: Option<crate::payment::TopUpReceipt>,
    /// A payment left in doubt by an earlier call, found paid when re-sent.
    pub reconciled: bool,
}

/// What the executor does next.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send the caller's request (same method, headers and body) to `url`, adding `headers`;
    /// then feed [`Call::response`].
    Send { url: String, headers: Vec<(&'static str, String)> },
    /// Read at most `limit` bytes of the last response's body; feed [`Call::response`] again
    /// with it.
    ReadBody { limit: usize },
    /// Call the facilitator; feed [`Call::answer`] or [`Call::transport_error`].
    Facilitator(FacilitatorRequest),
    /// A payment was made: run the app's hook, then [`Call::resume`].
    Paid(Box<PaymentEvent>),
    /// Another call is topping the wallet up: sleep, then [`Call::resume`].
    Wait { millis: u64 },
    /// Hand the last response to the caller.
    Return,
}

#[derive(Debug)]
enum State {
    New,
    /// The unpaid request is out.
    Sent,
    /// The paid retry is out.
    Retried {
        proof: Proof,
        reused: bool,
    },
    Reconciling(Box<InDoubt>),
    Balance,
    TopUp {
        amount: Money,
        balance: Money,
    },
    /// A live top-up from the funding wallet; `waiting`: between two receipt polls.
    LiveTopUp {
        top_up: Box<LiveTopUp>,
        balance: Money,
        waiting: bool,
    },
    Paying {
        resent: bool,
    },
    /// `Paid` was returned; `resume` retries (or, after a reconciled payment, goes on).
    Paid {
        proof: Option<Proof>,
    },
    Waiting,
    Done,
}

/// One request through the payer flow. Dropping it mid-way is safe: a payment in flight is
/// kept in doubt (counted by the budget), anything merely reserved is released.
#[derive(Debug)]
pub struct Call {
    payer: Payer,
    method: String,
    target: Target,
    replayable: bool,
    state: State,
    pr: Option<PaymentRequired>,
    facilitator: String,
    reservation: Option<Reservation>,
    /// The signed payment request (JSON): the same bytes are re-sent.
    signed: Option<String>,
    lease: Option<u64>,
    /// A top-up after `insufficient_funds` was tried already.
    forced: bool,
    /// A reused proof was refused: pay instead.
    reuse_off: bool,
    /// Nonces of in-doubt payments this call re-sent already.
    reconciled: Vec<String>,
    topped_up: Option<Money>,
    top_up: Option<crate::payment::TopUpReceipt>,
    receipt: Option<PaymentReceipt>,
}

impl Call {
    pub(super) fn new(payer: Payer, method: String, target: Target, replayable: bool) -> Self {
        Self {
            payer,
            method,
            target,
            replayable,
            state: State::New,
            pr: None,
            facilitator: String::new(),
            reservation: None,
            signed: None,
            lease: None,
            forced: false,
            reuse_off: false,
            reconciled: Vec::new(),
            topped_up: None,
            top_up: None,
            receipt: None,
        }
    }

    /// The first step: send the request unpaid.
    pub fn start(&mut self) -> Step {
        self.state = State::Sent;
        let mut headers = Vec::new();
        if self.payer.sends_payer_hint() {
            headers.push((crate::headers::PAYER, self.payer.address().to_string()));
        }
        Step::Send { url: self.target.url().to_string(), headers }
    }

    /// Enter the flow at a 402 the caller already received and decoded, to pay it: for
    /// callers that send the requests themselves and want a receipt, so no proof kept from
    /// another call is offered instead.
    pub fn challenge(&mut self, pr: PaymentRequired) -> Result<Step> {
        self.state = State::Sent;
        self.reuse_off = true;
        self.guard(|c| c.on_challenge(pr))
    }

    /// The URL the request goes to (after redirects, where it ended up).
    pub fn url(&self) -> &str {
        self.target.url()
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// The price of the challenge being paid, once a 402 was read.
    pub fn price(&self) -> Option<Money> {
        self.pr.as_ref().map(|p| p.price)
    }

    /// The receipt of the payment made by this call, if one was.
    pub fn receipt(&self) -> Option<&PaymentReceipt> {
        self.receipt.as_ref()
    }

    pub fn topped_up(&self) -> Option<Money> {
        self.topped_up
    }

    /// The receipt of the proof the last [`Step::Send`] carries: this call's payment, or a
    /// proof an earlier call paid for and could not use.
    pub fn proof(&self) -> Option<&PaymentReceipt> {
        match &self.state {
            State::Retried { proof, .. } => Some(&proof.receipt),
            _ => None,
        }
    }

    /// Whether that proof is reused (paid by an earlier call) rather than paid by this one.
    pub fn proof_reused(&self) -> bool {
        matches!(self.state, State::Retried { reused: true, .. })
    }

    /// The API answered. `body`: `None` until a [`Step::ReadBody`] asked for it. `final_url`:
    /// where the request ended up when the HTTP client followed redirects.
    pub fn response<'a>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Option<&[u8]>,
        final_url: Option<&str>,
    ) -> Result<Step> {
        self.guard(|c| c.on_response(status, headers, body, final_url))
    }

    /// The facilitator answered the last [`Step::Facilitator`] (`body`: at most
    /// [`MAX_RESPONSE_BODY`] bytes).
    pub fn answer(&mut self, status: u16, body: &[u8]) -> Result<Step> {
        self.guard(|c| c.on_answer(status, body))
    }

    /// The last [`Step::Facilitator`] failed without an answer. `sent`: the request may have
    /// reached the facilitator (anything but a failure to connect); `reason` for errors.
    pub fn transport_error(&mut self, sent: bool, reason: &str) -> Result<Step> {
        self.guard(|c| c.on_transport_error(sent, reason))
    }

    /// Go on after [`Step::Paid`] or [`Step::Wait`].
    pub fn resume(&mut self) -> Result<Step> {
        self.guard(|c| match std::mem::replace(&mut c.state, State::Done) {
            State::Paid { proof: Some(proof) } => Ok(c.send_proof(proof, false)),
            State::Paid { proof: None } => c.reconcile_or_pay(),
            State::Waiting => c.fund(),
            State::LiveTopUp { top_up, balance, waiting: true } => {
                let req = top_up.resume();
                c.state = State::LiveTopUp { top_up, balance, waiting: false };
                Ok(Step::Facilitator(req))
            }
            other => {
                c.state = other;
                Err(Error::Internal("resume out of order".into()))
            }
        })
    }

    /// Sending the API request failed (the executor rethrows its own error). A paid retry
    /// that may not have reached the API keeps its proof for the next call.
    pub fn request_failed(&mut self) {
        if let State::Retried { proof, .. } = std::mem::replace(&mut self.state, State::Done) {
            self.payer.keep_unused(self.key(), proof);
        }
    }

    /// Any error ends the call (what it held is settled by `Drop`).
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> Result<Step>) -> Result<Step> {
        let r = f(self);
        if r.is_err() {
            self.finish();
        }
        r
    }

    fn key(&self) -> String {
        format!("{} {} {}", self.target.origin(), self.method, self.target.path())
    }

    fn pr(&self) -> &PaymentRequired {
        self.pr.as_ref().expect("a challenge was read")
    }

    fn price_(&self) -> Money {
        self.pr().price
    }

    fn now(&self) -> u64 {
        self.payer.now()
    }

    // --- the API's answers ---

    fn on_response<'a>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Option<&[u8]>,
        final_url: Option<&str>,
    ) -> Result<Step> {
        match &self.state {
            State::Sent => {
                if let Some(t) =
                    final_url.filter(|u| *u != self.target.url()).and_then(|u| Target::parse(u).ok())
                {
                    self.target = t;
                }
                if status != 402 {
                    return Ok(self.done());
                }
                self.on_402(headers, body)
            }
            State::Retried { reused, .. } => {
                let reused = *reused;
                if status >= 500 {
                    // The provider released the nonce: the proof buys this resource again.
                    if let State::Retried { proof, .. } = std::mem::replace(&mut self.state, State::Done) {
                        self.payer.keep_unused(self.key(), proof);
                    }
                    return Ok(self.done());
                }
                if reused && (status == 402 || status == 409) {
                    // The reused proof no longer buys it (expired, or spent: 409): pay the
                    // fresh challenge a 402 carries, or ask for one.
                    self.reuse_off = true;
                    if status == 402 {
                        return self.on_402(headers, body);
                    }
                    return Ok(self.start());
                }
                Ok(self.done())
            }
            _ => Err(Error::Internal("response out of order".into())),
        }
    }

    fn on_402<'a>(
        &mut self,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Option<&[u8]>,
    ) -> Result<Step> {
        let headers: Vec<(&str, &str)> = headers.into_iter().collect();
        if body.is_none() && challenge_header(headers.iter().copied()).is_none() {
            return Ok(Step::ReadBody { limit: MAX_RESPONSE_BODY });
        }
        match parse_payment_required(402, headers, body.unwrap_or_default()) {
            // Another scheme's 402: the caller's to handle.
            Err(Error::NotPaymentRequired) => Ok(self.done()),
            Err(e) => Err(e),
            Ok(pr) => self.on_challenge(pr),
        }
    }

    fn on_challenge(&mut self, pr: PaymentRequired) -> Result<Step> {
        let pr = self.pr.insert(pr);
        if !self.replayable {
            return Err(Error::BodyNotReplayable);
        }
        self.facilitator = self.payer.check(pr, &self.method, &self.target, self.payer.now())?;
        self.reconcile_or_pay()
    }

    fn send_proof(&mut self, proof: Proof, reused: bool) -> Step {
        let header = super::proof_header(&proof.receipt.token);
        self.state = State::Retried { proof, reused };
        Step::Send { url: self.target.url().to_string(), headers: vec![header] }
    }

    // --- paying ---

    /// Reuse a proof paid for this resource and not served; else settle payments left in
    /// doubt at this facilitator (their fate changes what the budget allows, and may leave a
    /// proof for this resource); then reserve and pay.
    fn reconcile_or_pay(&mut self) -> Result<Step> {
        let now = self.now();
        if !self.reuse_off
            && self.reservation.is_none()
            && let Some(proof) = self.payer.take_unused(&self.key(), self.pr(), now)
        {
            return Ok(self.send_proof(proof, true));
        }
        if self.reconciled.len() < MAX_RECONCILE_PER_CALL
            && let Some(d) = self.payer.take_in_doubt(&self.facilitator, now, &self.reconciled)
        {
            self.reconciled.push(d.nonce.clone());
            let req = d.request.clone();
            self.state = State::Reconciling(Box::new(d));
            return Ok(Step::Facilitator(req));
        }
        if self.reservation.is_none() {
            let price = self.price_();
            self.reservation = Some(self.payer.budget().reserve(self.target.authority(), &price, now)?);
        }
        if self.payer.auto_top_up().is_some() { self.fund() } else { self.pay() }
    }

    /// Auto top-up: decide from the balance estimate; one call at a time queries and tops up.
    fn fund(&mut self) -> Result<Step> {
        let rule = self.payer.auto_top_up().expect("auto top-up is on").clone();
        let price = self.price_();
        let now = self.now();
        let mut st = self.payer.inner.state.lock();
        let next_id = st.next_lease;
        let f = st.funds.entry(self.facilitator.clone()).or_default();
        if !self.forced
            && let Some(est) = f.estimate
            && rule.amount_before(&est, &price)?.is_none()
        {
            f.spend(&price);
            drop(st);
            return self.pay();
        }
        if self.lease.is_none() {
            if f.lease.is_some_and(|(_, until)| until > now) {
                self.state = State::Waiting;
                return Ok(Step::Wait { millis: WAIT_MILLIS });
            }
            f.lease = Some((next_id, now + super::LEASE_SECS));
            self.lease = Some(next_id);
            st.next_lease += 1;
        }
        let estimate = st.funds.get(&self.facilitator).and_then(|f| f.estimate);
        drop(st);
        match estimate {
            Some(balance) => self.top_up_from(balance),
            None => {
                self.state = State::Balance;
                Ok(Step::Facilitator(self.payer.balance_request(Some(&self.facilitator))?))
            }
        }
    }

    /// With the lease held and the balance known: top up what the rule says (capped by what
    /// the budget could still spend), or pay.
    fn top_up_from(&mut self, balance: Money) -> Result<Step> {
        let rule = self.payer.auto_top_up().expect("auto top-up is on").clone();
        let price = self.price_();
        let mut amount = rule.amount_before(&balance, &price)?;
        if amount.is_none() && self.forced {
            amount = Some(rule.top_up_amount);
        }
        let Some(mut amount) = amount else {
            self.release_lease(|f| f.spend(&price));
            return self.pay();
        };
        if let Some(room) = self.payer.budget().headroom(self.target.authority(), self.now()) {
            // `room` already counts this call's reservation as spent.
            let cap = price.checked_add(&room)?;
            if amount.amount() > cap.amount() {
                amount = cap;
            }
        }
        if let Some(max) = rule.max_total {
            let used = self.payer.topped_up_total();
            let room = max.checked_sub(&used).unwrap_or(Money::zero(max.currency()));
            if amount.amount() > room.amount() {
                amount = room;
            }
            if amount.is_zero() || balance.amount() + amount.amount() < price.amount() {
                let e = Error::TopUpRefused(format!(
                    "auto top-up is capped at {max} and has added {used}: {price} cannot be covered"
                ));
                return self.topped(Err(e), amount, balance);
            }
        }
        let c = &self.pr().challenge;
        if let (Some(funding), "live") = (rule.funding, c.mode.as_str()) {
            let (network, asset) = (c.network.clone(), c.asset.clone().unwrap_or_default());
            let started = LiveTopUp::start(
                funding,
                &network,
                &asset,
                self.payer.address(),
                amount,
                self.facilitator.clone(),
                self.now(),
            );
            return match started {
                Ok((top_up, req)) => {
                    self.state = State::LiveTopUp { top_up: Box::new(top_up), balance, waiting: false };
                    Ok(Step::Facilitator(req))
                }
                Err(e) => self.topped(Err(e), amount, balance),
            };
        }
        self.state = State::TopUp { amount, balance };
        Ok(Step::Facilitator(top_up_request(&self.facilitator, self.payer.address(), &amount)))
    }

    fn release_lease(&mut self, then: impl FnOnce(&mut super::Funds)) {
        let mut st = self.payer.inner.state.lock();
        let f = st.funds.entry(self.facilitator.clone()).or_default();
        if let Some(id) = self.lease.take()
            && f.lease.is_some_and(|(l, _)| l == id)
        {
            f.lease = None;
        }
        then(f);
    }

    fn pay(&mut self) -> Result<Step> {
        let signed = match &self.signed {
            Some(s) => s.clone(),
            None => {
                let pr = self.pr();
                let req = crate::payment::sign(&pr.challenge, &pr.encoded, self.payer.wallet())?;
                let s = serde_json::to_string(&req).expect("serializes");
                self.signed = Some(s.clone());
                s
            }
        };
        self.state = State::Paying { resent: false };
        Ok(Step::Facilitator(self.pay_request(signed)))
    }

    fn pay_request(&self, signed: String) -> FacilitatorRequest {
        FacilitatorRequest::post(
            format!("{}/v1/payments", self.facilitator),
            signed,
            self.facilitator.clone(),
        )
    }

    // --- the facilitator's answers ---

    fn on_answer(&mut self, status: u16, body: &[u8]) -> Result<Step> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Balance => match super::wallet_balance(status, body) {
                Ok(b) => {
                    self.release_lease_keep(|f| f.estimate = Some(b));
                    self.top_up_from(b)
                }
                Err(e) => Err(e),
            },
            State::TopUp { amount, balance } => {
                self.topped(super::top_up_receipt(status, body), amount, balance)
            }
            State::LiveTopUp { mut top_up, balance, .. } => {
                let next = top_up.answer(status, body, self.now());
                self.live_top_up(top_up, balance, next)
            }
            State::Paying { resent } => {
                let nonce = self.pr().challenge.nonce.clone();
                match classify_pay_answer(status, body, &nonce, resent) {
                    PayAnswer::Receipt(r) => Ok(self.paid(r)),
                    PayAnswer::Refused(e) => self.refused(e),
                    PayAnswer::Unclear(why) => self.unclear(resent, why),
                }
            }
            State::Reconciling(d) => {
                let answer = classify_pay_answer(status, body, &d.nonce, true);
                self.reconciled_answer(*d, answer)
            }
            other => {
                self.state = other;
                Err(Error::Internal("answer out of order".into()))
            }
        }
    }

    fn on_transport_error(&mut self, sent: bool, reason: &str) -> Result<Step> {
        let unavailable = || Error::FacilitatorUnavailable(format!("{}: {reason}", self.facilitator));
        match std::mem::replace(&mut self.state, State::Done) {
            State::Balance => Err(unavailable()),
            State::TopUp { amount, balance } => self.topped(Err(unavailable()), amount, balance),
            State::LiveTopUp { mut top_up, balance, .. } => {
                let next = top_up.transport_error(sent, self.now());
                self.live_top_up(top_up, balance, next)
            }
            // Nothing reached the facilitator, and nothing did before: not charged.
            State::Paying { resent: false } if !sent => Err(unavailable()),
            State::Paying { resent } => self.unclear(resent, reason.to_string()),
            State::Reconciling(d) => self.reconciled_answer(*d, PayAnswer::Unclear(reason.to_string())),
            other => {
                self.state = other;
                Err(Error::Internal("transport error out of order".into()))
            }
        }
    }

    /// Keeps the lease (the caller goes on to a top-up decision under it).
    fn release_lease_keep(&mut self, then: impl FnOnce(&mut super::Funds)) {
        let mut st = self.payer.inner.state.lock();
        then(st.funds.entry(self.facilitator.clone()).or_default());
    }

    /// Where a live top-up goes next: another JSON-RPC request, a pause between receipt polls,
    /// or its end (mined: the payment goes on; refused: as a faucet's refusal).
    fn live_top_up(&mut self, top_up: Box<LiveTopUp>, balance: Money, next: Result<Next>) -> Result<Step> {
        let amount = top_up.amount();
        match next {
            Ok(Next::Request(req)) => {
                self.state = State::LiveTopUp { top_up, balance, waiting: false };
                Ok(Step::Facilitator(req))
            }
            Ok(Next::Wait(millis)) => {
                self.state = State::LiveTopUp { top_up, balance, waiting: true };
                Ok(Step::Wait { millis })
            }
            Ok(Next::Done(tx_hash)) => {
                let receipt = crate::payment::TopUpReceipt {
                    address: self.payer.address().to_string(),
                    amount: amount.to_string(),
                    balance: balance.checked_add(&amount)?.to_string(),
                    currency: amount.currency().code().to_string(),
                    tx_hash,
                };
                self.topped(Ok(receipt), amount, balance)
            }
            Err(e) => {
                if top_up.in_doubt() {
                    // It may still land: count it against the top-up cap, as a payment in
                    // doubt counts against the budget.
                    self.payer.add_topped_up(&amount);
                }
                self.topped(Err(e), amount, balance)
            }
        }
    }

    fn topped(
        &mut self,
        r: Result<crate::payment::TopUpReceipt>,
        amount: Money,
        balance: Money,
    ) -> Result<Step> {
        let price = self.price_();
        match r {
            Ok(receipt) => {
                let after = Money::parse(&receipt.balance, Currency::Usd).ok();
                self.payer.add_topped_up(&amount);
                self.topped_up = Some(amount);
                self.top_up = Some(receipt);
                self.release_lease(|f| {
                    f.estimate = after;
                    f.spend(&price);
                });
                self.pay()
            }
            // Refused (a faucet cap) while the balance still covers this call: pay anyway.
            Err(_) if balance.amount() >= price.amount() => {
                self.release_lease(|f| {
                    f.estimate = Some(balance);
                    f.spend(&price);
                });
                self.pay()
            }
            Err(e) => {
                self.release_lease(|f| f.estimate = None);
                Err(e)
            }
        }
    }

    fn paid(&mut self, r: PaymentReceipt) -> Step {
        if let Some(res) = self.reservation.take() {
            res.commit();
        }
        let pr = self.pr();
        let proof = Proof {
            receipt: r.clone(),
            amount: pr.price,
            account: pr.challenge.account.clone(),
            body_sha256: pr.challenge.body_sha256.clone(),
        };
        let event = PaymentEvent {
            method: self.method.clone(),
            url: self.target.url().to_string(),
            host: self.target.authority().to_string(),
            resource: pr.challenge.resource(),
            facilitator: self.facilitator.clone(),
            price: pr.price,
            receipt: r.clone(),
            topped_up: self.topped_up,
            top_up: self.top_up.clone(),
            reconciled: false,
        };
        self.receipt = Some(r);
        self.state = State::Paid { proof: Some(proof) };
        Step::Paid(Box::new(event))
    }

    fn refused(&mut self, e: Error) -> Result<Step> {
        if let (Error::InsufficientFunds { balance, .. }, Some(_), false) =
            (&e, self.payer.auto_top_up(), self.forced)
        {
            // The estimate was stale (the wallet is spent elsewhere too): top up from what
            // the facilitator says, and pay the same signed payment once more.
            self.forced = true;
            let b = Money::parse(balance, Currency::Usd).ok();
            self.release_lease_keep(|f| f.estimate = b);
            return self.fund();
        }
        if self.payer.auto_top_up().is_some() {
            self.release_lease_keep(|f| f.estimate = None);
        }
        Err(e)
    }

    /// No clear answer: send the same signed payment once more; if that says nothing
    /// either, keep the payment in doubt (counted) and say so.
    fn unclear(&mut self, resent: bool, why: String) -> Result<Step> {
        if !resent {
            self.state = State::Paying { resent: true };
            let signed = self.signed.clone().expect("signed before sending");
            return Ok(Step::Facilitator(self.pay_request(signed)));
        }
        Err(self.keep_in_doubt(why))
    }

    fn keep_in_doubt(&mut self, why: String) -> Error {
        let pr = self.pr.as_ref().expect("a challenge was read");
        let err = Error::PaymentInDoubt {
            facilitator: self.facilitator.clone(),
            nonce: pr.challenge.nonce.clone(),
            amount: pr.price.to_string(),
            reason: why,
        };
        if let (Some(reservation), Some(signed)) = (self.reservation.take(), self.signed.clone()) {
            let d = InDoubt {
                request: self.pay_request(signed),
                nonce: pr.challenge.nonce.clone(),
                price: pr.price,
                exp: pr.challenge.exp,
                key: self.key(),
                account: pr.challenge.account.clone(),
                body_sha256: pr.challenge.body_sha256.clone(),
                method: self.method.clone(),
                url: self.target.url().to_string(),
                host: self.target.authority().to_string(),
                resource: pr.challenge.resource(),
                reservation,
            };
            self.payer.put_in_doubt(d);
        }
        if self.payer.auto_top_up().is_some() {
            self.release_lease_keep(|f| f.estimate = None);
        }
        err
    }

    fn reconciled_answer(&mut self, d: InDoubt, answer: PayAnswer) -> Result<Step> {
        match answer {
            PayAnswer::Receipt(r) => {
                let proof = Proof {
                    receipt: r.clone(),
                    amount: d.price,
                    account: d.account.clone(),
                    body_sha256: d.body_sha256.clone(),
                };
                // Paid, never served: the proof buys that resource (this call's, perhaps).
                self.payer.keep_unused(d.key.clone(), proof);
                let event = PaymentEvent {
                    method: d.method.clone(),
                    url: d.url.clone(),
                    host: d.host.clone(),
                    resource: d.resource.clone(),
                    facilitator: d.request.facilitator.clone(),
                    price: d.price,
                    receipt: r,
                    topped_up: None,
                    top_up: None,
                    reconciled: true,
                };
                d.reservation.commit();
                self.state = State::Paid { proof: None };
                Ok(Step::Paid(Box::new(event)))
            }
            // Not charged: the reservation goes back (dropped with `d`).
            PayAnswer::Refused(_) => self.reconcile_or_pay(),
            PayAnswer::Unclear(_) => {
                self.payer.put_in_doubt(d);
                self.reconcile_or_pay()
            }
        }
    }

    fn done(&mut self) -> Step {
        self.finish();
        Step::Return
    }

    /// Settle what the call holds: a payment in flight goes in doubt, a reservation is
    /// released, the lease is given back.
    fn finish(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Paying { .. } => {
                self.keep_in_doubt("the call ended while the payment was in flight".into());
            }
            State::Reconciling(d) => self.payer.put_in_doubt(*d),
            _ => {}
        }
        if self.lease.is_some() {
            self.release_lease(|_| {});
        }
        self.reservation = None;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}
