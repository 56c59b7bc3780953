//! Reconciliation: a facilitator's settlement records against what the chain holds, its
//! receipts and the token's `Transfer` logs. Every difference is named, with a stable kind.
//!
//! What is compared: a `confirmed` record must have a successful receipt in the block (and
//! block hash) it recorded, carrying the token's `Transfer(payer → pay_to, amount)`; a `failed`
//! record must not have settled after all; a pending one is reported once mined (the follower
//! is behind); and every `Transfer` to a payout address in the scanned blocks, sent by one of
//! the records' relayers, must have a record. A reorg shows up as a confirmed record whose
//! transaction is gone from the chain or sits in another block.

use crate::chain::{core_address, evm, hex32, parse_hash, rpc_down, transfer_logs};
use crate::contracts::IEip3009Token;
use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolEvent;
use serde::Serialize;
use std::collections::HashSet;
use vlexivo_core::Result;
use vlexivo_core::wallet::Address;

/// A record's state, as far as reconciliation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Signed or submitted: the facilitator is still following it.
    Pending,
    Confirmed,
    Failed,
}

/// One settlement record of the facilitator.
#[derive(Debug, Clone)]
pub struct Record {
    pub account: String,
    pub nonce: String,
    pub tx_hash: String,
    pub state: RecordState,
    pub payer: Address,
    pub pay_to: Address,
    /// Atomic units.
    pub amount: u64,
    pub relayer: Address,
    pub block: Option<u64>,
    pub block_hash: Option<String>,
    /// The EIP-3009 authorization nonce it relayed: the receipt must carry the token's
    /// `AuthorizationUsed(payer, nonce)` too, which tells apart two equal payments in one
    /// batched transaction when only one of them settled.
    pub authorization: Option<alloy::primitives::B256>,
}

/// What kind of difference: stable snake_case names (the CLI's JSON and exit status use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Recorded confirmed; the chain has no such transaction (reorged out, or never mined).
    MissingOnChain,
    /// Recorded confirmed in one block; the chain has it in another (re-mined after a reorg).
    BlockChanged,
    /// Recorded confirmed; the chain's receipt says it reverted.
    RevertedOnChain,
    /// Mined and successful, but without the recorded `Transfer(payer → pay_to, amount)`.
    TransferMismatch,
    /// Recorded failed; the chain has it settled.
    SettledButRecordedFailed,
    /// Recorded pending; the chain has it mined (the follower is behind or stopped).
    MinedButRecordedPending,
    /// A `Transfer` to a payout address sent by a relayer of the records, with no record.
    UnrecordedTransfer,
}

impl DifferenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingOnChain => "missing_on_chain",
            Self::BlockChanged => "block_changed",
            Self::RevertedOnChain => "reverted_on_chain",
            Self::TransferMismatch => "transfer_mismatch",
            Self::SettledButRecordedFailed => "settled_but_recorded_failed",
            Self::MinedButRecordedPending => "mined_but_recorded_pending",
            Self::UnrecordedTransfer => "unrecorded_transfer",
        }
    }
}

/// One difference between the records and the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub tx_hash: String,
    /// The record's provider account and challenge nonce (none for an unrecorded transfer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub detail: String,
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub token: String,
    /// The blocks whose `Transfer` logs were scanned.
    pub from_block: u64,
    pub to_block: u64,
    pub records: usize,
    pub confirmed: usize,
    pub pending: usize,
    pub failed: usize,
    /// `Transfer` logs to payout addresses in the scanned blocks.
    pub transfers: usize,
    /// Of those, sent by someone other than the records' relayers (not this facilitator's).
    pub other_transfers: usize,
    pub differences: Vec<Difference>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compare `records` with the chain behind `provider` for `token`. `payouts` are the payout
/// addresses whose incoming transfers are scanned (the records' own are added); the scan runs
/// from `from_block` (default: the earliest recorded block, else 0) to the head.
pub async fn reconcile(
    provider: &DynProvider,
    token: Address,
    records: &[Record],
    payouts: &[Address],
    from_block: Option<u64>,
) -> Result<Reconciliation> {
    let head = provider.get_block_number().await.map_err(|e| rpc_down("block number", e))?;
    let from = from_block.unwrap_or_else(|| records.iter().filter_map(|r| r.block).min().unwrap_or(0));
    let mut out = Reconciliation {
        token: token.to_checksum(),
        from_block: from,
        to_block: head,
        records: records.len(),
        confirmed: 0,
        pending: 0,
        failed: 0,
        transfers: 0,
        other_transfers: 0,
        differences: Vec::new(),
    };
    for r in records {
        match r.state {
            RecordState::Pending => out.pending += 1,
            RecordState::Confirmed => out.confirmed += 1,
            RecordState::Failed => out.failed += 1,
        }
        if let Some((kind, detail)) = check(provider, token, r).await? {
            out.differences.push(Difference {
                kind,
                tx_hash: r.tx_hash.clone(),
                account: Some(r.account.clone()),
                nonce: Some(r.nonce.clone()),
                detail,
            });
        }
    }

    let recorded: HashSet<String> = records.iter().map(|r| r.tx_hash.to_ascii_lowercase()).collect();
    let relayers: HashSet<Address> = records.iter().map(|r| r.relayer).collect();
    let mut payees: Vec<Address> = payouts.iter().copied().chain(records.iter().map(|r| r.pay_to)).collect();
    payees.sort_by_key(|a| a.0);
    payees.dedup();
    if payees.is_empty() || from > head {
        return Ok(out);
    }
    let logs = transfer_logs(provider, token, from, head, &payees).await?;
    out.transfers = logs.len();
    for l in logs {
        let hash = hex32(&l.tx_hash);
        if recorded.contains(&hash) {
            continue;
        }
        let sender = provider
            .get_transaction_receipt(l.tx_hash)
            .await
            .map_err(|e| rpc_down("receipt", e))?
            .map(|r| core_address(&r.from));
        match sender {
            Some(s) if relayers.contains(&s) => out.differences.push(Difference {
                kind: DifferenceKind::UnrecordedTransfer,
                tx_hash: hash,
                account: None,
                nonce: None,
                detail: format!(
                    "block {}: {} from {} to {}, relayed by {s}, has no settlement record",
                    l.block,
                    crate::chain::atomic_usd(l.value),
                    l.from,
                    l.to
                ),
            }),
            _ => out.other_transfers += 1,
        }
    }
    Ok(out)
}

/// One record against its transaction's receipt: the difference, if any.
async fn check(
    provider: &DynProvider,
    token: Address,
    r: &Record,
) -> Result<Option<(DifferenceKind, String)>> {
    use DifferenceKind::*;
    let hash = parse_hash(&r.tx_hash)?;
    let receipt = provider.get_transaction_receipt(hash).await.map_err(|e| rpc_down("receipt", e))?;
    let mined = receipt.as_ref().and_then(|rc| Some((rc.block_number?, rc.block_hash?, rc.status())));
    let pays = |rc: &alloy::rpc::types::TransactionReceipt| {
        let logs = || rc.inner.logs().iter().filter(|l| l.address() == evm(&token));
        let transfer = logs().any(|l| {
            IEip3009Token::Transfer::decode_log(&l.inner).is_ok_and(|e| {
                core_address(&e.from) == r.payer
                    && core_address(&e.to) == r.pay_to
                    && e.value == U256::from(r.amount)
            })
        });
        let used = r.authorization.is_none_or(|nonce| {
            logs().any(|l| {
                IEip3009Token::AuthorizationUsed::decode_log(&l.inner)
                    .is_ok_and(|e| core_address(&e.authorizer) == r.payer && e.nonce == nonce)
            })
        });
        transfer && used
    };
    let recorded_at = || match (r.block, &r.block_hash) {
        (Some(b), Some(h)) => format!("block {b} ({h})"),
        (Some(b), None) => format!("block {b}"),
        _ => "no block".into(),
    };
    Ok(match (r.state, receipt.as_ref(), mined) {
        (RecordState::Confirmed, _, None) => Some((
            MissingOnChain,
            format!(
                "recorded confirmed in {}; the chain has no such mined transaction (reorged out or never mined)",
                recorded_at()
            ),
        )),
        (RecordState::Confirmed, _, Some((b, _, false))) => {
            Some((RevertedOnChain, format!("recorded confirmed; the transaction reverted in block {b}")))
        }
        (RecordState::Confirmed, Some(rc), Some((b, h, true))) => {
            let moved = r.block.is_some_and(|rb| rb != b)
                || r.block_hash.as_deref().is_some_and(|rh| !rh.eq_ignore_ascii_case(&hex32(&h)));
            if moved {
                Some((
                    BlockChanged,
                    format!("recorded in {}; the chain has it in block {b} ({})", recorded_at(), hex32(&h)),
                ))
            } else if !pays(rc) {
                Some((
                    TransferMismatch,
                    format!(
                        "no Transfer of {} from {} to {} in the transaction",
                        crate::chain::atomic_usd(U256::from(r.amount)),
                        r.payer,
                        r.pay_to
                    ),
                ))
            } else {
                None
            }
        }
        (RecordState::Failed, Some(rc), Some((b, _, true))) if pays(rc) => {
            Some((SettledButRecordedFailed, format!("recorded failed; the chain settled it in block {b}")))
        }
        (RecordState::Pending, _, Some((b, _, ok))) => Some((
            MinedButRecordedPending,
            format!(
                "recorded pending; the chain has it mined in block {b} ({})",
                if ok { "successful" } else { "reverted" }
            ),
        )),
        _ => None,
    })
}
