//! A live payment checked on chain (`verifyPayment`), without the facilitator: core builds the
//! JSON-RPC batch and decides on the node's answer (`vlexivo_core::onchain`, `docs/protocol.md`
//! §6.1); `vlexivo_client::onchain` POSTs it (no error names the URL); this file converts types. A payer app can check that the transaction a receipt names moved
//! the price from its wallet to the provider's payout address.

use crate::{TlsOptions, VlexivoError};
use std::time::Duration;
use vlexivo_client::onchain::{Expected, Verified, verify_payment_with};
use vlexivo_core::Error as CoreError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the payment should be. Addresses `0x…`; `amount` a decimal usd amount (`"0.001"`).
/// From a live payment: `token` is the challenge's `asset`, `payee` its `payTo`, `payer` the
/// wallet's address, `amount` the price.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PaymentExpectation {
    /// The EIP-3009 token contract.
    pub token: String,
    pub payer: String,
    pub payee: String,
    pub amount: String,
    /// Least depth (1 = mined; the default).
    #[uniffi(default)]
    pub confirmations: Option<u64>,
    /// `0x` + 64 hex digits: pins the check to this authorization's own Transfer (a batched
    /// relay settles several payments in one transaction).
    #[uniffi(default)]
    pub authorization_nonce: Option<String>,
}

/// A transaction that pays as expected.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VerifiedPayment {
    pub tx_hash: String,
    pub block: u64,
    pub confirmations: u64,
    pub gas_used: u64,
    pub log_index: u64,
    /// The token's Transfer logs in the transaction (more than 1: a batched relay).
    pub transfers: u32,
    /// How many of them are this very transfer (more than 1: the hash alone cannot tell them
    /// apart; give the authorization nonce).
    pub matching: u32,
    pub authorization_checked: bool,
    pub token: String,
    pub payer: String,
    pub payee: String,
    pub amount: String,
}

impl From<Verified> for VerifiedPayment {
    fn from(v: Verified) -> Self {
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Self {
            tx_hash: v.tx_hash,
            block: v.block,
            confirmations: v.confirmations,
            gas_used: v.gas_used,
            log_index: v.log_index,
            transfers: n(v.transfers),
            matching: n(v.matching),
            authorization_checked: v.authorization_checked,
            token: v.token,
            payer: v.payer,
            payee: v.payee,
            amount: v.amount,
        }
    }
}

/// Check on chain that `txHash` pays what `expected` says, asking the JSON-RPC node at `rpcUrl`
/// (which may hold an API key: it never appears in an error). Throws `transfer_mismatch` (the
/// first field that differs is in the message), `settlement_failed` (reverted),
/// `transaction_not_found`, `confirmations_pending`, `chain_unavailable`, or
/// `request_malformed` / an amount code for bad input, before anything is sent.
#[uniffi::export(async_runtime = "tokio", default(tls = None))]
pub async fn verify_payment(
    tx_hash: String,
    expected: PaymentExpectation,
    rpc_url: String,
    tls: Option<TlsOptions>,
) -> Result<VerifiedPayment, VlexivoError> {
    let run = async move {
        let e = &expected;
        let expected = Expected::parse(
            &e.token,
            &e.payer,
            &e.payee,
            &e.amount,
            e.confirmations.unwrap_or(1),
            e.authorization_nonce.as_deref(),
        )?;
        let url = rpc_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CoreError::Config("rpcUrl must be an http(s) URL".into()));
        }
        let http = tls
            .unwrap_or_default()
            .to_config()?
            .client_builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CoreError::Config(format!("HTTP client: {}", vlexivo_client::tls::describe(&e))))?;
        verify_payment_with(&http, url, &tx_hash, expected).await.map(VerifiedPayment::from)
    };
    match tokio::spawn(run).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(CoreError::Internal(format!("verify task failed: {e}")).into()),
    }
}
