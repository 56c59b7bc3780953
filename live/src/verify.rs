//! Provider-side verification over an alloy provider: does a transaction hash really pay what
//! a proof token claims? The rule is core's ([`vlexivo_core::onchain`]: a successful receipt
//! carrying the token's `Transfer(payer, payee, amount)`, at the depth asked for); this only
//! fetches the receipt and the head block. Without alloy, `vlexivo_client::verify_payment`
//! does the same over one JSON-RPC batch, as the Node and Python packages do.

use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};
pub use vlexivo_core::onchain::{Expected, Verified};
use vlexivo_core::{Error, Result};

/// Check `tx_hash` against `expected`: `transaction_not_found`, `settlement_failed` (reverted),
/// `transfer_mismatch`, `confirmations_pending`, or `chain_unavailable` when the RPC does not
/// answer.
pub async fn verify_payment(provider: &DynProvider, tx_hash: B256, expected: &Expected) -> Result<Verified> {
    // Never the transport's text: it may carry the node's URL (and its API key).
    let down = |_| Error::ChainUnavailable("the chain's RPC did not answer".into());
    let receipt: serde_json::Value =
        provider.raw_request("eth_getTransactionReceipt".into(), (tx_hash,)).await.map_err(down)?;
    let head = provider.get_block_number().await.map_err(down)?;
    vlexivo_core::onchain::check_receipt(&format!("{tx_hash:#x}"), &receipt, head, expected)
}
