//! # vlexivo-uniffi
//!
//! The payer's side of Vlexivo (HTTP 402 per-call payments) for Kotlin (Android, JVM) and Swift
//! (iOS, macOS) apps that keep their own HTTP stack (OkHttp, URLSession):
//!
//! 1. the app sends its request; the API answers 402;
//! 2. the app hands that response to [`VlexivoPayments::pay`], which checks the challenge
//!    against the request and the spending policy, signs, tops up if configured, pays the
//!    facilitator and returns the header to attach;
//! 3. the app sends the same request again with that header.
//!
//! Every decision is `vlexivo_core::client`'s; this crate does the facilitator's HTTP (reqwest
//! on a tokio runtime, behind UniFFI's async support, so nothing blocks the caller's thread)
//! and converts types. Amounts are decimal strings everywhere.

uniffi::setup_scaffolding!();

mod error;
mod facilitator;
mod flow;
mod onchain;
mod payments;
mod tls;
mod wallet;

pub use error::{HeaderNames, VlexivoError, error_categories, error_category, error_codes, header_names};
pub use flow::{FacilitatorCall, FlowStep, PaymentEvent, PaymentFlow, max_response_body};
pub use onchain::{PaymentExpectation, VerifiedPayment, verify_payment};
pub use payments::{AutoTopUp, PaymentQuote, PaymentResult, SpendingPolicy, TopUpResult, VlexivoPayments};
pub use tls::{TlsOptions, TrustRoots};
pub use wallet::Wallet;

use vlexivo_core::challenge::Challenge;
use vlexivo_core::client::PaymentRequired;

/// One HTTP header. Names compare case-insensitively; repeated names are allowed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// A decoded 402 challenge: what a call costs and what it is bound to. Decoding does not
/// authenticate it (only the provider and the facilitator hold the MAC key); paying does.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentChallenge {
    /// Canonical decimal ("0.001").
    pub price: String,
    pub currency: String,
    /// "per-call".
    pub scope: String,
    pub method: String,
    pub path: String,
    /// "METHOD /path", as in the proof token.
    pub resource: String,
    /// The provider account being paid.
    pub account: String,
    /// The facilitator the provider names (base URL).
    pub facilitator: String,
    /// "sandbox" or "live".
    pub mode: String,
    pub network: String,
    pub nonce: String,
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
    /// Set when the challenge is bound to the request body.
    pub body_sha256: Option<String>,
    /// Live mode: the EIP-3009 token contract paid in (`null`/`nil` in sandbox).
    pub asset: Option<String>,
    /// Live mode: the provider's payout address (`null`/`nil` in sandbox).
    pub pay_to: Option<String>,
    /// The challenge exactly as received (the `Vlexivo-Challenge` header value).
    pub encoded: String,
}

impl PaymentChallenge {
    fn from_core(pr: &PaymentRequired) -> Self {
        let c = &pr.challenge;
        Self {
            price: pr.price.to_string(),
            currency: pr.price.currency().code().to_string(),
            scope: c.scope.clone(),
            method: c.method.clone(),
            path: c.path.clone(),
            resource: c.resource(),
            account: c.account.clone(),
            facilitator: c.facilitator.clone(),
            mode: c.mode.clone(),
            network: c.network.clone(),
            nonce: c.nonce.clone(),
            issued_at: c.iat,
            expires_at: c.exp,
            body_sha256: c.body_sha256.clone(),
            asset: c.asset.clone(),
            pay_to: c.pay_to.clone(),
            encoded: pr.encoded.clone(),
        }
    }
}

/// The core wants borrowed pairs; the FFI hands owned records.
pub(crate) fn header_pairs(headers: &[HttpHeader]) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().map(|h| (h.name.as_str(), h.value.as_str()))
}

pub(crate) fn parse_402(
    status: u16,
    headers: &[HttpHeader],
    body: &[u8],
) -> Result<PaymentRequired, VlexivoError> {
    Ok(vlexivo_core::client::parse_payment_required(status, header_pairs(headers), body)?)
}

/// Is this response a Vlexivo 402, and for what? `NotPaymentRequired` when it is not (another
/// status, or a 402 from another payment scheme): the app then handles it as usual.
#[uniffi::export]
pub fn parse_payment_required(
    status: u16,
    headers: Vec<HttpHeader>,
    body: Vec<u8>,
) -> Result<PaymentChallenge, VlexivoError> {
    Ok(PaymentChallenge::from_core(&parse_402(status, &headers, &body)?))
}

/// Decode a `Vlexivo-Challenge` header value (size and shape checks, no MAC check).
#[uniffi::export]
pub fn decode_challenge(encoded: String) -> Result<PaymentChallenge, VlexivoError> {
    let challenge = Challenge::decode(&encoded)?;
    let price = challenge.price()?;
    Ok(PaymentChallenge::from_core(&PaymentRequired { encoded, challenge, price }))
}

/// The header a paid retry carries the proof token in.
#[uniffi::export]
pub fn proof_header_name() -> String {
    vlexivo_core::headers::PROOF.to_string()
}
