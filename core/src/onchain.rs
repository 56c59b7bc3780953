//! A live payment checked on chain, without the facilitator: anyone holding a payment's
//! transaction hash (a proof token's `txh`, a receipt's `tx_hash`) asks a JSON-RPC node for the
//! transaction's receipt and the head block, and this module decides whether that transaction
//! pays what is expected. Sans I/O: [`PaymentCheck::request`] is the JSON-RPC batch to POST,
//! [`PaymentCheck::answer`] reads what came back (or [`PaymentCheck::unreachable`] when nothing
//! did); the Rust client, the CLI and the Node and Python bindings only carry the bytes.
//!
//! The rule (`docs/protocol.md` §6.1): the receipt must be successful (`settlement_failed`
//! otherwise), carry the token contract's `Transfer(payer, payee, amount)` (`transfer_mismatch`
//! naming the first field that differs) and be at least `confirmations` deep
//! (`confirmations_pending`); no mined transaction is `transaction_not_found`, a node that
//! cannot be reached or answers garbage is `chain_unavailable`. A transaction that settles
//! several payments (a batched relay) carries several `Transfer` logs: the one that matches is
//! picked and [`Verified::transfers`] says how many there were. When the expected authorization
//! nonce is given, the match is pinned to the `Transfer` the token emitted for that very
//! authorization (its `AuthorizationUsed(payer, nonce)` log comes right before it), so two
//! identical payments in one batch cannot both be claimed with the same hash.

use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::wallet::{Address, keccak256};
use alloy_primitives::U256;
use serde_json::Value;

/// Longest node message kept in a `chain_unavailable` reason.
const MAX_REASON: usize = 120;

/// What a payment should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The EIP-3009 token contract (the challenge's `asset`).
    pub token: Address,
    /// Who paid (the proof token's `sub`).
    pub payer: Address,
    /// Who was paid (the provider's payout address, `pay_to`).
    pub payee: Address,
    /// Atomic units of the token (6 decimals: 1000 = $0.001).
    pub amount: u64,
    /// Least depth: 1 = mined (0 is taken as 1: a receipt exists only for a mined transaction).
    pub confirmations: u64,
    /// The EIP-3009 authorization nonce of this payment
    /// ([`crate::eip3009::authorization_nonce`] of the provider's account and the challenge
    /// nonce), to pin the match to this payment's own `Transfer` in a batched transaction.
    pub authorization_nonce: Option<[u8; 32]>,
}

impl Expected {
    /// From the strings a binding or the CLI holds: addresses `0x…`, `amount` a decimal usd
    /// amount (`"0.001"`), `authorization_nonce` `0x` + 64 hex digits.
    pub fn parse(
        token: &str,
        payer: &str,
        payee: &str,
        amount: &str,
        confirmations: u64,
        authorization_nonce: Option<&str>,
    ) -> Result<Self> {
        let amount = Money::parse(amount, Currency::Usd)?.positive()?;
        let authorization_nonce = authorization_nonce
            .map(|n| {
                parse_b256(n).ok_or_else(|| malformed("the authorization nonce is not 0x and 64 hex digits"))
            })
            .transpose()?;
        Ok(Self {
            token: Address::parse(token)?,
            payer: Address::parse(payer)?,
            payee: Address::parse(payee)?,
            amount: amount.to_atomic(),
            confirmations,
            authorization_nonce,
        })
    }
}

/// A transaction that pays as expected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Lower-case `0x` + 64 hex digits.
    pub tx_hash: String,
    pub block: u64,
    /// How deep the block is: 1 = the head block.
    pub confirmations: u64,
    pub gas_used: u64,
    /// The matching `Transfer` log's index in its block.
    pub log_index: u64,
    /// The token's `Transfer` logs in the transaction: more than 1 when it settled several
    /// payments (a batched relay).
    pub transfers: usize,
    /// How many of them are this very transfer (payer, payee and amount): more than 1 means
    /// the hash alone cannot tell those payments apart (give the authorization nonce).
    pub matching: usize,
    /// Whether the match was pinned by the authorization nonce.
    pub authorization_checked: bool,
    pub token: String,
    pub payer: String,
    pub payee: String,
    /// Decimal usd (`"0.001"`).
    pub amount: String,
}

/// One payment to check: the JSON-RPC request to send and the reading of its answer.
#[derive(Debug, Clone)]
pub struct PaymentCheck {
    tx_hash: [u8; 32],
    expected: Expected,
}

/// The JSON-RPC ids of the batch's two calls.
const ID_RECEIPT: u64 = 1;
const ID_HEAD: u64 = 2;

impl PaymentCheck {
    /// `tx_hash`: `0x` + 64 hex digits (any case), else `request_malformed`.
    pub fn new(tx_hash: &str, expected: Expected) -> Result<Self> {
        let tx_hash = parse_b256(tx_hash)
            .ok_or_else(|| malformed("the transaction hash is not 0x and 64 hex digits"))?;
        Ok(Self { tx_hash, expected })
    }

    pub fn tx_hash(&self) -> String {
        format!("0x{}", hex::encode(self.tx_hash))
    }

    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// The body to POST to the node (`content-type: application/json`): one JSON-RPC batch of
    /// `eth_getTransactionReceipt` and `eth_blockNumber`, so one round trip.
    pub fn request(&self) -> String {
        serde_json::json!([
            { "jsonrpc": "2.0", "id": ID_RECEIPT, "method": "eth_getTransactionReceipt", "params": [self.tx_hash()] },
            { "jsonrpc": "2.0", "id": ID_HEAD, "method": "eth_blockNumber", "params": [] },
        ])
        .to_string()
    }

    /// The node answered `status` with `body`.
    pub fn answer(&self, status: u16, body: &[u8]) -> Result<Verified> {
        if !(200..300).contains(&status) {
            return Err(Error::ChainUnavailable(format!("the node answered HTTP {status}")));
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| Error::ChainUnavailable("the node's answer is not JSON".into()))?;
        let receipt = rpc_result(&v, ID_RECEIPT)?;
        let head = rpc_result(&v, ID_HEAD)?;
        let head = head
            .as_str()
            .and_then(parse_quantity)
            .ok_or_else(|| Error::ChainUnavailable("eth_blockNumber did not answer a block number".into()))?;
        check_receipt(&self.tx_hash(), receipt, head, &self.expected)
    }

    /// Nothing came back (no connection, a timeout). `reason` must not carry the node's URL
    /// (it often holds an API key): say what failed, not where.
    pub fn unreachable(&self, reason: &str) -> Error {
        Error::ChainUnavailable(truncate(reason))
    }
}

/// Decide on a receipt (`eth_getTransactionReceipt`'s result: `null` or the receipt object)
/// with the chain's head block at `head`.
pub fn check_receipt(tx_hash: &str, receipt: &Value, head: u64, expected: &Expected) -> Result<Verified> {
    if receipt.is_null() {
        return Err(Error::TransactionNotFound);
    }
    let garbled =
        |what: &str| Error::ChainUnavailable(format!("the receipt's {what} is not what a node answers"));
    let quantity = |key: &str| receipt.get(key).and_then(Value::as_str).and_then(parse_quantity);
    if let Some(h) = receipt.get("transactionHash").and_then(Value::as_str)
        && !h.eq_ignore_ascii_case(tx_hash)
    {
        return Err(Error::ChainUnavailable("the node answered another transaction's receipt".into()));
    }
    // A receipt without a block is not mined (some nodes answer pending ones).
    let Some(block) = quantity("blockNumber") else {
        return Err(Error::TransactionNotFound);
    };
    match quantity("status") {
        Some(1) => {}
        Some(0) => return Err(Error::SettlementFailed("the transaction reverted".into())),
        _ => return Err(garbled("status")),
    }
    let gas_used = quantity("gasUsed").unwrap_or(0);
    let logs = receipt.get("logs").and_then(Value::as_array).ok_or_else(|| garbled("logs"))?;
    let logs: Vec<Log> = logs.iter().map(Log::parse).collect::<Option<_>>().ok_or_else(|| garbled("logs"))?;

    let token = expected.token;
    let transfer_topic = keccak256(b"Transfer(address,address,uint256)");
    let transfers: Vec<(usize, Transfer)> = logs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.address == token && l.topics.first() == Some(&transfer_topic))
        .filter_map(|(i, l)| l.transfer().map(|t| (i, t)))
        .collect();
    let want = Transfer { from: expected.payer, to: expected.payee, value: U256::from(expected.amount) };
    let matching = transfers.iter().filter(|(_, t)| *t == want).count();

    // The candidates: with the authorization nonce, the one Transfer the token emitted for it
    // (the first of the token's Transfers after its AuthorizationUsed log); else all of them.
    let candidates: Vec<(usize, Transfer)> = match expected.authorization_nonce {
        Some(nonce) => {
            let used_topic = keccak256(b"AuthorizationUsed(address,bytes32)");
            let payer_topic = address_topic(&expected.payer);
            let used = logs.iter().position(|l| {
                l.address == token
                    && l.topics.len() == 3
                    && l.topics[0] == used_topic
                    && l.topics[1] == payer_topic
                    && l.topics[2] == nonce
            });
            let Some(used) = used else {
                return Err(Error::TransferMismatch {
                    field: "authorization".into(),
                    expected: format!("0x{}", hex::encode(nonce)),
                    got: "no such authorization used by the payer in this transaction".into(),
                });
            };
            transfers.iter().find(|(i, _)| *i > used).cloned().into_iter().collect()
        }
        None => transfers.clone(),
    };
    if candidates.is_empty() {
        let others: Vec<String> = logs
            .iter()
            .filter(|l| l.topics.first() == Some(&transfer_topic) && l.transfer().is_some())
            .map(|l| l.address.to_checksum())
            .collect();
        return Err(Error::TransferMismatch {
            field: "token".into(),
            expected: token.to_checksum(),
            got: if others.is_empty() { "no Transfer log".into() } else { others.join(", ") },
        });
    }
    let score = |t: &Transfer| {
        u8::from(t.from == want.from) + u8::from(t.to == want.to) + u8::from(t.value == want.value)
    };
    // The best candidate: a match, else the closest (first on ties).
    let (index, best) = candidates.iter().rev().max_by_key(|(_, t)| score(t)).cloned().expect("not empty");
    if best != want {
        let (field, expected_s, got) = if best.from != want.from {
            ("payer", want.from.to_checksum(), best.from.to_checksum())
        } else if best.to != want.to {
            ("payee", want.to.to_checksum(), best.to.to_checksum())
        } else {
            ("amount", usd(want.value), usd(best.value))
        };
        return Err(Error::TransferMismatch { field: field.into(), expected: expected_s, got });
    }
    let confirmations = (head + 1).saturating_sub(block);
    let required = expected.confirmations.max(1);
    if confirmations < required {
        return Err(Error::ConfirmationsPending { confirmations, required });
    }
    Ok(Verified {
        tx_hash: tx_hash.to_ascii_lowercase(),
        block,
        confirmations,
        gas_used,
        log_index: logs[index].log_index,
        transfers: transfers.len(),
        matching,
        authorization_checked: expected.authorization_nonce.is_some(),
        token: token.to_checksum(),
        payer: want.from.to_checksum(),
        payee: want.to.to_checksum(),
        amount: usd(want.value),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    from: Address,
    to: Address,
    value: U256,
}

#[derive(Debug)]
struct Log {
    address: Address,
    topics: Vec<[u8; 32]>,
    data: Vec<u8>,
    log_index: u64,
}

impl Log {
    fn parse(v: &Value) -> Option<Log> {
        let address = Address::parse(&v.get("address")?.as_str()?.to_ascii_lowercase()).ok()?;
        let topics = v
            .get("topics")?
            .as_array()?
            .iter()
            .map(|t| t.as_str().and_then(parse_b256))
            .collect::<Option<Vec<_>>>()?;
        let data = hex::decode(v.get("data")?.as_str()?.strip_prefix("0x")?).ok()?;
        let log_index = v.get("logIndex").and_then(Value::as_str).and_then(parse_quantity).unwrap_or(0);
        Some(Log { address, topics, data, log_index })
    }

    /// `Transfer(address indexed from, address indexed to, uint256 value)`, once its first
    /// topic is known to be the event's.
    fn transfer(&self) -> Option<Transfer> {
        if self.topics.len() != 3 || self.data.len() != 32 {
            return None;
        }
        let addr = |t: &[u8; 32]| {
            t[..12].iter().all(|b| *b == 0).then(|| Address(t[12..].try_into().expect("20 bytes")))
        };
        Some(Transfer {
            from: addr(&self.topics[1])?,
            to: addr(&self.topics[2])?,
            value: U256::from_be_slice(&self.data),
        })
    }
}

fn address_topic(a: &Address) -> [u8; 32] {
    let mut t = [0u8; 32];
    t[12..].copy_from_slice(&a.0);
    t
}

/// Atomic units as decimal usd; past what a price can be, the raw units.
fn usd(v: U256) -> String {
    u64::try_from(v)
        .ok()
        .and_then(|u| Money::from_atomic(u, Currency::Usd).ok())
        .map_or_else(|| format!("{v} atomic units"), |m| m.to_string())
}

/// The `result` of the call with `id` in a JSON-RPC batch answer.
fn rpc_result(v: &Value, id: u64) -> Result<&Value> {
    let Some(items) = v.as_array() else {
        // A node that refuses batches answers one error object.
        return Err(Error::ChainUnavailable(match v.get("error") {
            Some(e) => format!("the node refused the request: {}", rpc_error(e)),
            None => "the node's answer is not a JSON-RPC batch".into(),
        }));
    };
    let item = items
        .iter()
        .find(|i| i.get("id").and_then(Value::as_u64) == Some(id))
        .ok_or_else(|| Error::ChainUnavailable("the node's answer misses a call of the batch".into()))?;
    if let Some(e) = item.get("error") {
        return Err(Error::ChainUnavailable(format!("the node answered an error: {}", rpc_error(e))));
    }
    item.get("result").ok_or_else(|| Error::ChainUnavailable("the node's answer has no result".into()))
}

fn rpc_error(e: &Value) -> String {
    let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    truncate(&format!("{code} {message}"))
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_REASON).collect()
}

fn malformed(why: &str) -> Error {
    Error::RequestMalformed(why.into())
}

/// `0x` + 64 hex digits.
fn parse_b256(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("0x")?;
    let mut out = [0u8; 32];
    (h.len() == 64).then_some(())?;
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// A JSON-RPC quantity: `0x` + hex digits, at most 64 bits.
fn parse_quantity(s: &str) -> Option<u64> {
    let h = s.strip_prefix("0x")?;
    if h.is_empty() || h.len() > 16 {
        return None;
    }
    u64::from_str_radix(h, 16).ok()
}

#[cfg(test)]
mod tests;
