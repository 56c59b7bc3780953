//! A live payment checked on chain (`verifyPayment` in TypeScript): core builds the JSON-RPC
//! batch and decides on the node's answer (`vlexivo_core::onchain`); TypeScript POSTs it.

use crate::errors::throw;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use vlexivo_core as vx;
use vx::onchain::{Expected, PaymentCheck, Verified};

/// What the payment should be. Addresses `0x…`; `amount` a decimal usd amount.
#[napi(object)]
pub struct PaymentExpectation {
    /// The EIP-3009 token contract.
    pub token: String,
    pub payer: String,
    pub payee: String,
    pub amount: Either<String, f64>,
    /// Least depth (1 = mined; the default).
    pub confirmations: Option<u32>,
    /// `0x` + 64 hex digits: pins the check to this authorization's own Transfer.
    pub authorization_nonce: Option<String>,
}

/// A transaction that pays as expected.
#[napi(object)]
pub struct VerifiedPayment {
    pub tx_hash: String,
    pub block: i64,
    pub confirmations: i64,
    pub gas_used: i64,
    pub log_index: i64,
    /// The token's Transfer logs in the transaction (more than 1: a batched relay).
    pub transfers: u32,
    /// How many of them are this very transfer (more than 1: the hash alone cannot tell them
    /// apart; pass the authorization nonce).
    pub matching: u32,
    pub authorization_checked: bool,
    pub token: String,
    pub payer: String,
    pub payee: String,
    pub amount: String,
}

impl From<Verified> for VerifiedPayment {
    fn from(v: Verified) -> Self {
        let n = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        Self {
            tx_hash: v.tx_hash,
            block: n(v.block),
            confirmations: n(v.confirmations),
            gas_used: n(v.gas_used),
            log_index: n(v.log_index),
            transfers: u32::try_from(v.transfers).unwrap_or(u32::MAX),
            matching: u32::try_from(v.matching).unwrap_or(u32::MAX),
            authorization_checked: v.authorization_checked,
            token: v.token,
            payer: v.payer,
            payee: v.payee,
            amount: v.amount,
        }
    }
}

fn check_of(tx_hash: &str, e: &PaymentExpectation) -> vx::Result<PaymentCheck> {
    let amount = match &e.amount {
        Either::A(s) => vx::Money::parse(s, vx::Currency::Usd)?,
        Either::B(f) => vx::Money::from_f64(*f, vx::Currency::Usd)?,
    };
    let expected = Expected::parse(
        &e.token,
        &e.payer,
        &e.payee,
        &amount.to_string(),
        e.confirmations.map_or(1, u64::from),
        e.authorization_nonce.as_deref(),
    )?;
    PaymentCheck::new(tx_hash, expected)
}

/// The JSON-RPC batch to POST to the node for `txHash` (checks every input first).
#[napi(catch_unwind)]
pub fn payment_check_request(env: Env, tx_hash: String, expected: PaymentExpectation) -> Result<String> {
    check_of(&tx_hash, &expected).map(|c| c.request()).map_err(|e| throw(&env, e))
}

/// Decide on the node's answer (`status`, `body`); `failure` instead when no answer came (a
/// reason that must not name the node's URL): throws `chain_unavailable` then.
#[napi(catch_unwind)]
pub fn payment_check_answer(
    env: Env,
    tx_hash: String,
    expected: PaymentExpectation,
    status: u32,
    body: Buffer,
    failure: Option<String>,
) -> Result<VerifiedPayment> {
    let run = || {
        let check = check_of(&tx_hash, &expected)?;
        if let Some(why) = failure {
            return Err(check.unreachable(&why));
        }
        check.answer(u16::try_from(status).unwrap_or(0), &body).map(VerifiedPayment::from)
    };
    run().map_err(|e| throw(&env, e))
}
