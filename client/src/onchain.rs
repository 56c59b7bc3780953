//! A live payment checked on chain by the provider, without the facilitator: one JSON-RPC batch
//! (the receipt and the head block) to the chain's node; core decides
//! ([`vlexivo_core::onchain`]).
//!
//! ```no_run
//! # async fn f() -> Result<(), vlexivo_core::Error> {
//! use vlexivo_client::onchain::{Expected, verify_payment};
//! let expected = Expected::parse(
//!     "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", // VLX_ASSET
//!     "0x52908400098527886E0F7030069857D2E4169EE7", // who paid (the proof's sub)
//!     "0x8617E340B3D01FA5F11F306F4090FD50E238070D", // VLX_PAY_TO
//!     "0.001",
//!     1,
//!     None,
//! )?;
//! let paid = verify_payment("https://rpc.example", "0x…", expected).await?;
//! println!("block {} ({} deep)", paid.block, paid.confirmations);
//! # Ok(()) }
//! ```

use crate::tls;
use std::time::Duration;
use vlexivo_core::Error;
pub use vlexivo_core::onchain::{Expected, PaymentCheck, Verified};

/// Time allowed for the node's answer.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read (a batched relay's receipt carries a log per payment).
pub const MAX_RPC_ANSWER: usize = 8 * 1024 * 1024;

/// Check `tx_hash` against `expected` at the node `rpc_url`, with an HTTP client built from
/// the environment's TLS settings (`VLX_CA_FILE`, `VLX_TLS_ROOTS`).
pub async fn verify_payment(rpc_url: &str, tx_hash: &str, expected: Expected) -> Result<Verified, Error> {
    let http = tls::TlsConfig::from_env()?.client()?;
    verify_payment_with(&http, rpc_url, tx_hash, expected).await
}

/// [`verify_payment`] with the caller's HTTP client.
pub async fn verify_payment_with(
    http: &reqwest::Client,
    rpc_url: &str,
    tx_hash: &str,
    expected: Expected,
) -> Result<Verified, Error> {
    let check = PaymentCheck::new(tx_hash, expected)?;
    // No error names the URL: a node's URL often carries its API key.
    let down = |e: reqwest::Error| check.unreachable(&tls::describe(&e.without_url()));
    let mut res = http
        .post(rpc_url)
        .header("content-type", "application/json")
        .body(check.request())
        .timeout(RPC_TIMEOUT)
        .send()
        .await
        .map_err(down)?;
    let status = res.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(down)? {
        if body.len() + chunk.len() > MAX_RPC_ANSWER {
            return Err(
                check.unreachable(&format!("the node's answer is larger than {MAX_RPC_ANSWER} bytes"))
            );
        }
        body.extend_from_slice(&chunk);
    }
    check.answer(status, &body)
}
