//! Provider-side verification: does a transaction hash really pay what a proof token claims?
//! The receipt must be successful and carry the token's `Transfer(from = payer, to = payee,
//! value = amount)`, from the token contract itself, at the depth asked for.

use crate::chain::{core_address, evm};
use crate::contracts::IEip3009Token;
use alloy::primitives::{B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolEvent;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

/// What a payment should be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub token: Address,
    pub payer: Address,
    pub payee: Address,
    /// Atomic units.
    pub amount: u64,
    /// Least depth (1 = mined).
    pub confirmations: u64,
}

/// A transaction that pays as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub block: u64,
    pub confirmations: u64,
    pub gas_used: u64,
}

/// Check `tx_hash` against `expected` over JSON-RPC. Every mismatch is `settlement_failed`
/// naming what differs; an unreachable RPC is `facilitator_unavailable`.
pub async fn verify_payment(provider: &DynProvider, tx_hash: B256, expected: &Expected) -> Result<Paid> {
    let down = |e: alloy::transports::TransportError| {
        Error::FacilitatorUnavailable(format!(
            "the chain's RPC did not answer: {}",
            e.to_string().chars().take(120).collect::<String>()
        ))
    };
    let receipt = provider
        .get_transaction_receipt(tx_hash)
        .await
        .map_err(down)?
        .ok_or_else(|| Error::SettlementFailed("no such mined transaction".into()))?;
    if !receipt.status() {
        return Err(Error::SettlementFailed("the transaction reverted".into()));
    }
    let block = receipt.block_number.ok_or_else(|| Error::SettlementFailed("not in a block yet".into()))?;
    let head = provider.get_block_number().await.map_err(down)?;
    let confirmations = (head + 1).saturating_sub(block);
    let token = evm(&expected.token);
    let transfers: Vec<(Address, Address, U256)> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == token)
        .filter_map(|l| IEip3009Token::Transfer::decode_log(&l.inner).ok())
        .map(|e| (core_address(&e.from), core_address(&e.to), e.value))
        .collect();
    if transfers.is_empty() {
        return Err(Error::SettlementFailed("no Transfer of this token in the transaction".into()));
    }
    let want = (expected.payer, expected.payee, U256::from(expected.amount));
    if !transfers.contains(&want) {
        let (f, t, v) = &transfers[0];
        return Err(Error::SettlementFailed(format!(
            "the token's Transfer is {v} from {f} to {t}, not {} from {} to {}",
            expected.amount, expected.payer, expected.payee
        )));
    }
    if confirmations < expected.confirmations {
        return Err(Error::SettlementFailed(format!(
            "{confirmations} confirmations, fewer than the {} asked for",
            expected.confirmations
        )));
    }
    Ok(Paid { block, confirmations, gas_used: receipt.gas_used })
}
