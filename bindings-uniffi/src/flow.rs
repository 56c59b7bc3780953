//! `PaymentFlow`: core's payer flow for apps that do all the HTTP themselves (their own client
//! for the facilitator too). Feed it what happened, do the `FlowStep` it returns.

use crate::{HttpHeader, VlexivoError, header_pairs};
use std::sync::{Arc, Mutex, PoisonError};
use vlexivo_core::client::{Call, Step};

/// A request to the facilitator: send it without following redirects, with
/// `content-type: application/json` when it has a body; read at most `maxResponseBody()` bytes
/// of the answer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FacilitatorCall {
    /// "GET" or "POST".
    pub method: String,
    pub url: String,
    pub body: Option<String>,
}

/// A payment made.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentEvent {
    pub method: String,
    pub url: String,
    pub resource: String,
    pub facilitator: String,
    /// What the challenge asked.
    pub price: String,
    pub currency: String,
    pub tx_hash: String,
    pub nonce: String,
    pub balance_after: String,
    pub replayed: bool,
    /// Added by auto top-up before this payment.
    pub topped_up: Option<String>,
    /// A payment an earlier call left in doubt, found paid.
    pub reconciled: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum FlowStep {
    /// Send the request (same method, headers and body) to `url`, adding `headers`; then
    /// `response(…)`.
    Send { url: String, headers: Vec<HttpHeader> },
    /// Read at most `limit` bytes of the last response's body, then `response(…)` with it.
    ReadBody { limit: u32 },
    /// Call the facilitator; then `answer(status, body)` or `transportError(sent, reason)`.
    Facilitator { call: FacilitatorCall },
    /// A payment was made (for the app's records); then `resume()`.
    Paid { event: PaymentEvent },
    /// Another call is topping the wallet up: wait `millis`, then `resume()`.
    Wait { millis: u64 },
    /// Hand the last response to the app.
    Return,
}

impl From<Step> for FlowStep {
    fn from(s: Step) -> Self {
        match s {
            Step::Send { url, headers } => FlowStep::Send {
                url,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| HttpHeader { name: name.to_string(), value })
                    .collect(),
            },
            Step::ReadBody { limit } => {
                FlowStep::ReadBody { limit: u32::try_from(limit).unwrap_or(u32::MAX) }
            }
            Step::Facilitator(r) => FlowStep::Facilitator {
                call: FacilitatorCall { method: r.method.to_string(), url: r.url, body: r.body },
            },
            Step::Paid(e) => FlowStep::Paid {
                event: PaymentEvent {
                    method: e.method,
                    url: e.url,
                    resource: e.resource,
                    facilitator: e.facilitator,
                    price: e.price.to_string(),
                    currency: e.receipt.currency,
                    tx_hash: e.receipt.tx_hash,
                    nonce: e.receipt.nonce,
                    balance_after: e.receipt.balance,
                    replayed: e.receipt.replayed,
                    topped_up: e.topped_up.map(|t| t.to_string()),
                    reconciled: e.reconciled,
                },
            },
            Step::Wait { millis } => FlowStep::Wait { millis },
            Step::Return => FlowStep::Return,
        }
    }
}

/// One request through the payer flow (`VlexivoPayments.flow(method, url, replayable)`).
#[derive(Debug, uniffi::Object)]
pub struct PaymentFlow {
    call: Mutex<Call>,
}

impl PaymentFlow {
    pub(crate) fn new(call: Call) -> Arc<Self> {
        Arc::new(Self { call: Mutex::new(call) })
    }

    fn with(
        &self,
        f: impl FnOnce(&mut Call) -> vlexivo_core::Result<Step>,
    ) -> Result<FlowStep, VlexivoError> {
        let mut call = self.call.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(f(&mut call)?.into())
    }
}

#[uniffi::export]
impl PaymentFlow {
    /// The first step: send the request unpaid.
    pub fn start(&self) -> Result<FlowStep, VlexivoError> {
        self.with(|c| Ok(c.start()))
    }

    /// The API answered (`body`: only once a `ReadBody` step asked for it; `url`: where the
    /// request ended up after redirects).
    #[uniffi::method(default(body = None, url = None))]
    pub fn response(
        &self,
        status: u16,
        headers: Vec<HttpHeader>,
        body: Option<Vec<u8>>,
        url: Option<String>,
    ) -> Result<FlowStep, VlexivoError> {
        self.with(|c| c.response(status, header_pairs(&headers), body.as_deref(), url.as_deref()))
    }

    /// The facilitator answered the last `Facilitator` step.
    pub fn answer(&self, status: u16, body: Vec<u8>) -> Result<FlowStep, VlexivoError> {
        self.with(|c| c.answer(status, &body))
    }

    /// The last `Facilitator` step failed without an answer (`sent`: anything but a failure
    /// to connect).
    pub fn transport_error(&self, sent: bool, reason: String) -> Result<FlowStep, VlexivoError> {
        self.with(|c| c.transport_error(sent, &reason))
    }

    /// Go on after `Paid` or `Wait`.
    pub fn resume(&self) -> Result<FlowStep, VlexivoError> {
        self.with(|c| c.resume())
    }

    /// Sending the API request failed.
    pub fn request_failed(&self) {
        self.call.lock().unwrap_or_else(PoisonError::into_inner).request_failed();
    }
}

/// Largest facilitator answer (or 402 body) the payer reads.
#[uniffi::export]
pub fn max_response_body() -> u32 {
    vlexivo_core::client::MAX_RESPONSE_BODY as u32
}
