//! Live auto top-up: a funding wallet the payer configures moves the token to the payer's
//! wallet on chain before a payment would leave it short, then the payment goes on. Sandbox
//! top-ups ask the facilitator's faucet; live ones cannot (the facilitator never holds funds),
//! so the funding wallet sends an ERC-20 `transfer(payer, amount)` it signs itself and pays gas
//! for (a legacy EIP-155 transaction, which every EVM node accepts).
//!
//! Sans I/O, like the rest of the flow: each step is an HTTP POST of JSON-RPC to the chain's node,
//! carried by the executors as any other [`FacilitatorRequest`], and fed back here:
//!
//! 1. **Prepare** (one batch): chain id, the funding wallet's pending nonce, gas price, its gas
//!    and token balances, and a gas estimate of the transfer. A funding wallet short of the
//!    token or of gas is `funding_insufficient` (with `required` and `balance`), nothing sent;
//!    another chain than the challenge's is `config_invalid`.
//! 2. **Send** `eth_sendRawTransaction`; a node that already knows it is fine.
//! 3. **Wait**: poll the receipt (the same batch and the same check as a provider's
//!    [`crate::onchain`]: a successful `Transfer(funding → payer, amount)` of the token) until it
//!    is mined, or refuse after [`MINE_TIMEOUT_SECS`].
//!
//! Errors never carry the node's URL (it often holds an API key) nor the key.

use super::FacilitatorRequest;
use crate::eip3009::evm_chain_id;
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::onchain::Expected;
use crate::wallet::{Address, Wallet, keccak256};
use alloy_primitives::U256;
use serde_json::{Value, json};
use std::fmt;

/// How long a sent funding transfer may take to be mined before the top-up is given up.
pub const MINE_TIMEOUT_SECS: u64 = 60;
/// Pause between receipt polls.
pub const POLL_MILLIS: u64 = 200;

/// A funding wallet and the chain node it sends through.
#[derive(Clone)]
pub struct Funding {
    wallet: Wallet,
    rpc_url: String,
}

/// Neither the key nor the URL (it may hold an API key).
impl fmt::Debug for Funding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Funding").field("address", &self.wallet.address()).finish_non_exhaustive()
    }
}

impl Funding {
    /// `key`: the funding wallet's secp256k1 key (`0x` + 64 hex digits); `rpc_url`: the chain's
    /// JSON-RPC URL (`http`/`https`).
    pub fn new(key: &str, rpc_url: &str) -> Result<Self> {
        let wallet = Wallet::from_hex(key.trim())?;
        let rpc_url = rpc_url.trim();
        if !(rpc_url.starts_with("http://") || rpc_url.starts_with("https://")) {
            return Err(Error::Config("the funding wallet's RPC URL must be http(s)".into()));
        }
        Ok(Self { wallet, rpc_url: rpc_url.to_string() })
    }

    /// The funding wallet an auto top-up configuration names, in every binding: none without a
    /// key; a key without the chain's RPC URL is `config_invalid` (`rpc_option`: that option's
    /// name in the binding's own spelling, for the message).
    pub fn from_options(key: Option<&str>, rpc_url: Option<&str>, rpc_option: &str) -> Result<Option<Self>> {
        match (key, rpc_url) {
            (None, _) => Ok(None),
            (Some(key), Some(url)) => Self::new(key, url).map(Some),
            (Some(_), None) => Err(Error::Config(format!(
                "auto top-up's funding wallet needs {rpc_option} (or VLX_RPC_URL): the chain's JSON-RPC URL"
            ))),
        }
    }

    pub fn address(&self) -> Address {
        self.wallet.address()
    }
}

/// What a live top-up step needs next.
#[derive(Debug)]
pub(super) enum Next {
    Request(FacilitatorRequest),
    Wait(u64),
    /// Mined: the transaction hash.
    Done(String),
}

#[derive(Debug)]
enum Stage {
    Prepare,
    Send { hash: String },
    Poll { hash: String },
}

/// One top-up in flight.
#[derive(Debug)]
pub(super) struct LiveTopUp {
    funding: Funding,
    token: Address,
    chain_id: u64,
    payer: Address,
    amount: Money,
    /// The facilitator the call pays through (the requests' label; the URL is the node's).
    facilitator: String,
    stage: Stage,
    deadline: u64,
    /// The transfer was handed to the node and its fate is unknown (not mined by the deadline,
    /// or the connection lost after sending): it may still move the tokens, so the top-up cap
    /// counts it.
    in_doubt: bool,
}

const ID_CHAIN: u64 = 1;
const ID_NONCE: u64 = 2;
const ID_GAS_PRICE: u64 = 3;
const ID_GAS_BALANCE: u64 = 4;
const ID_TOKEN_BALANCE: u64 = 5;
const ID_ESTIMATE: u64 = 6;

impl LiveTopUp {
    /// Start topping `payer` up by `amount` of the live challenge's token (`network`, `asset`).
    pub(super) fn start(
        funding: Funding,
        network: &str,
        asset: &str,
        payer: &str,
        amount: Money,
        facilitator: String,
        now: u64,
    ) -> Result<(Self, FacilitatorRequest)> {
        let t = Self {
            chain_id: evm_chain_id(network)?,
            token: Address::parse(asset)?,
            payer: Address::parse(payer)?,
            funding,
            amount,
            facilitator,
            stage: Stage::Prepare,
            in_doubt: false,
            deadline: now + MINE_TIMEOUT_SECS,
        };
        let from = t.funding.address().to_checksum();
        let call = |data: String| json!({ "from": from, "to": t.token.to_checksum(), "data": data });
        let body = json!([
            rpc(ID_CHAIN, "eth_chainId", json!([])),
            rpc(ID_NONCE, "eth_getTransactionCount", json!([from, "pending"])),
            rpc(ID_GAS_PRICE, "eth_gasPrice", json!([])),
            rpc(ID_GAS_BALANCE, "eth_getBalance", json!([from, "latest"])),
            rpc(ID_TOKEN_BALANCE, "eth_call", json!([call(balance_of(&t.funding.address())), "latest"])),
            rpc(ID_ESTIMATE, "eth_estimateGas", json!([call(t.transfer_data())])),
        ]);
        let req = t.request(body);
        Ok((t, req))
    }

    pub(super) fn amount(&self) -> Money {
        self.amount
    }

    fn request(&self, body: Value) -> FacilitatorRequest {
        FacilitatorRequest::post(self.funding.rpc_url.clone(), body.to_string(), self.facilitator.clone())
    }

    fn transfer_data(&self) -> String {
        // transfer(address,uint256)
        let mut d = keccak256(b"transfer(address,uint256)")[..4].to_vec();
        d.extend_from_slice(&word_of_address(&self.payer));
        d.extend_from_slice(&U256::from(self.amount.to_atomic()).to_be_bytes::<32>());
        format!("0x{}", hex::encode(d))
    }

    fn poll_request(&self, hash: &str) -> FacilitatorRequest {
        self.request(json!([
            rpc(1, "eth_getTransactionReceipt", json!([hash])),
            rpc(2, "eth_blockNumber", json!([])),
        ]))
    }

    /// The node answered the last request.
    pub(super) fn answer(&mut self, status: u16, body: &[u8], now: u64) -> Result<Next> {
        match std::mem::replace(&mut self.stage, Stage::Prepare) {
            Stage::Prepare => self.prepared(status, body),
            Stage::Send { hash } => {
                let v = rpc_answer(status, body)?;
                match (v.get("result").and_then(Value::as_str), v.get("error")) {
                    (Some(h), _) if h.eq_ignore_ascii_case(&hash) => {}
                    (Some(_), _) => {
                        return Err(Error::ChainUnavailable(
                            "the node answered another hash for the funding transfer".into(),
                        ));
                    }
                    // The node has it already (an earlier send whose answer was lost).
                    (None, Some(e)) if rpc_message(e).to_ascii_lowercase().contains("known") => {}
                    (None, Some(e)) => {
                        return Err(Error::TopUpRefused(format!(
                            "the node refused the funding transfer: {}",
                            rpc_message(e)
                        )));
                    }
                    (None, None) => {
                        return Err(Error::ChainUnavailable("the node's answer has no result".into()));
                    }
                }
                self.polled(hash, Err(Error::TransactionNotFound), now)
            }
            Stage::Poll { hash } => {
                let check = crate::onchain::PaymentCheck::new(&hash, self.expected())?;
                let r = check.answer(status, body);
                self.polled(hash, r.map(|_| ()), now)
            }
        }
    }

    /// No answer came back. `sent`: the request may have reached the node.
    pub(super) fn transport_error(&mut self, sent: bool, now: u64) -> Result<Next> {
        match std::mem::replace(&mut self.stage, Stage::Prepare) {
            Stage::Prepare => Err(Error::ChainUnavailable("the funding wallet's node did not answer".into())),
            Stage::Send { .. } if !sent => Err(Error::ChainUnavailable(
                "the funding wallet's node did not answer; nothing was sent".into(),
            )),
            // It may be out: look for it.
            Stage::Send { hash } | Stage::Poll { hash } => {
                self.polled(hash, Err(Error::ChainUnavailable(String::new())), now)
            }
        }
    }

    /// Whether the transfer may still move the tokens after the top-up failed.
    pub(super) fn in_doubt(&self) -> bool {
        self.in_doubt
    }

    /// After a [`Next::Wait`]: poll again.
    pub(super) fn resume(&self) -> FacilitatorRequest {
        match &self.stage {
            Stage::Poll { hash } | Stage::Send { hash } => self.poll_request(hash),
            Stage::Prepare => unreachable!("a wait follows a send"),
        }
    }

    fn expected(&self) -> Expected {
        Expected {
            token: self.token,
            payer: self.funding.address(),
            payee: self.payer,
            amount: self.amount.to_atomic(),
            confirmations: 1,
            authorization_nonce: None,
        }
    }

    fn polled(&mut self, hash: String, r: Result<()>, now: u64) -> Result<Next> {
        match r {
            Ok(()) => Ok(Next::Done(hash)),
            // Not mined yet, or the node blinked: poll again until the deadline.
            Err(Error::TransactionNotFound | Error::ChainUnavailable(_)) if now <= self.deadline => {
                self.stage = Stage::Poll { hash };
                Ok(Next::Wait(POLL_MILLIS))
            }
            Err(Error::TransactionNotFound | Error::ChainUnavailable(_)) => {
                self.in_doubt = true;
                Err(Error::TopUpRefused(format!(
                    "the funding transfer {hash} was not mined within {MINE_TIMEOUT_SECS} s (it may still be)"
                )))
            }
            Err(Error::SettlementFailed(_)) => {
                Err(Error::TopUpRefused(format!("the funding transfer {hash} reverted on chain")))
            }
            Err(e) => {
                Err(Error::TopUpRefused(format!("the funding transfer {hash} does not pay as sent: {e}")))
            }
        }
    }

    fn prepared(&mut self, status: u16, body: &[u8]) -> Result<Next> {
        let v = rpc_answer(status, body)?;
        let items =
            v.as_array().ok_or_else(|| Error::ChainUnavailable("the node's answer is not a batch".into()))?;
        let item = |id: u64| {
            items
                .iter()
                .find(|i| i.get("id").and_then(Value::as_u64) == Some(id))
                .ok_or_else(|| Error::ChainUnavailable("the node's answer misses a call of the batch".into()))
        };
        let result = |id: u64| -> Result<U256> {
            let i = item(id)?;
            if let Some(e) = i.get("error") {
                return Err(Error::ChainUnavailable(format!(
                    "the node answered an error: {}",
                    rpc_message(e)
                )));
            }
            i.get("result")
                .and_then(Value::as_str)
                .and_then(parse_u256)
                .ok_or_else(|| Error::ChainUnavailable("the node's answer is not a number".into()))
        };
        let chain = result(ID_CHAIN)?;
        if chain != U256::from(self.chain_id) {
            return Err(Error::Config(format!(
                "the funding wallet's node is chain {chain}, the challenge's network is eip155:{}",
                self.chain_id
            )));
        }
        let tokens = result(ID_TOKEN_BALANCE)?;
        let want = U256::from(self.amount.to_atomic());
        let from = self.funding.address().to_checksum();
        if tokens < want {
            return Err(Error::FundingInsufficient {
                address: from,
                required: self.amount.to_string(),
                balance: usd(tokens),
                currency: Currency::Usd.code().to_string(),
            });
        }
        // The token's own refusal (a paused token, a blocked address) shows in the estimate.
        let estimate = item(ID_ESTIMATE)?;
        if let Some(e) = estimate.get("error") {
            return Err(Error::TopUpRefused(format!(
                "the token refuses the funding transfer: {}",
                rpc_message(e)
            )));
        }
        let estimate = result(ID_ESTIMATE)?;
        let nonce = result(ID_NONCE)?;
        // Headroom: the price and the gas used may move between the estimate and the block.
        let gas_price = result(ID_GAS_PRICE)? * U256::from(5) / U256::from(4) + U256::from(1);
        let gas_limit = estimate * U256::from(5) / U256::from(4) + U256::from(10_000);
        let gas_needed = gas_price * gas_limit;
        let gas_balance = result(ID_GAS_BALANCE)?;
        if gas_balance < gas_needed {
            return Err(Error::FundingInsufficient {
                address: from,
                required: gas_needed.to_string(),
                balance: gas_balance.to_string(),
                currency: "wei".into(),
            });
        }
        let tx = LegacyTx {
            nonce,
            gas_price,
            gas_limit,
            to: self.token,
            value: U256::ZERO,
            data: hex::decode(self.transfer_data().trim_start_matches("0x")).expect("hex"),
            chain_id: self.chain_id,
        };
        let raw = tx.sign(&self.funding.wallet);
        let hash = format!("0x{}", hex::encode(keccak256(&raw)));
        self.stage = Stage::Send { hash };
        Ok(Next::Request(self.request(rpc(
            1,
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(raw))]),
        ))))
    }
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn rpc_answer(status: u16, body: &[u8]) -> Result<Value> {
    if !(200..300).contains(&status) {
        return Err(Error::ChainUnavailable(format!("the node answered HTTP {status}")));
    }
    serde_json::from_slice(body).map_err(|_| Error::ChainUnavailable("the node's answer is not JSON".into()))
}

fn rpc_message(e: &Value) -> String {
    let m = e.get("message").and_then(Value::as_str).unwrap_or("an error");
    m.chars().take(160).collect()
}

/// `balanceOf(address)` call data.
fn balance_of(who: &Address) -> String {
    let mut d = keccak256(b"balanceOf(address)")[..4].to_vec();
    d.extend_from_slice(&word_of_address(who));
    format!("0x{}", hex::encode(d))
}

fn word_of_address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a.0);
    w
}

/// A JSON-RPC quantity or 32-byte word (`0x…`).
fn parse_u256(s: &str) -> Option<U256> {
    let h = s.strip_prefix("0x")?;
    if h.is_empty() {
        return Some(U256::ZERO);
    }
    U256::from_str_radix(h, 16).ok()
}

fn usd(v: U256) -> String {
    u64::try_from(v)
        .ok()
        .and_then(|u| Money::from_atomic(u, Currency::Usd).ok())
        .map_or_else(|| format!("{v} atomic units"), |m| m.to_string())
}

/// A legacy transaction signed under EIP-155 (replay-protected by the chain id).
#[derive(Debug, Clone)]
pub(crate) struct LegacyTx {
    pub nonce: U256,
    pub gas_price: U256,
    pub gas_limit: U256,
    pub to: Address,
    pub value: U256,
    pub data: Vec<u8>,
    pub chain_id: u64,
}

impl LegacyTx {
    /// keccak256(rlp([nonce, gasPrice, gasLimit, to, value, data, chainId, 0, 0])).
    pub(crate) fn signing_hash(&self) -> [u8; 32] {
        let chain = U256::from(self.chain_id);
        keccak256(&self.rlp(&chain, &U256::ZERO, &U256::ZERO))
    }

    /// rlp([nonce, gasPrice, gasLimit, to, value, data, v, r, s]) with v = recid + 35 + 2·chainId.
    pub(crate) fn sign(&self, wallet: &Wallet) -> Vec<u8> {
        let sig = wallet.sign_hash(&self.signing_hash());
        let bytes = hex::decode(sig.trim_start_matches("0x")).expect("hex");
        let r = U256::from_be_slice(&bytes[..32]);
        let s = U256::from_be_slice(&bytes[32..64]);
        let recid = u64::from(bytes[64] - 27);
        let v = U256::from(recid + 35 + 2 * self.chain_id);
        self.rlp(&v, &r, &s)
    }

    fn rlp(&self, v: &U256, r: &U256, s: &U256) -> Vec<u8> {
        use alloy_rlp::{Encodable, Header};
        let fields: [&dyn Encodable; 9] = [
            &self.nonce,
            &self.gas_price,
            &self.gas_limit,
            &self.to.0,
            &self.value,
            &self.data.as_slice(),
            v,
            r,
            s,
        ];
        let payload_length = fields.iter().map(|f| f.length()).sum();
        let mut out = Vec::with_capacity(payload_length + 3);
        Header { list: true, payload_length }.encode(&mut out);
        for f in fields {
            f.encode(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EIP-155's own example: nonce 9, 20 gwei, 21000 gas, to 0x3535…35, 1 ether, chain 1,
    /// key 0x4646…46.
    #[test]
    fn the_eip155_example_signs_to_its_published_transaction() {
        let tx = LegacyTx {
            nonce: U256::from(9),
            gas_price: U256::from(20_000_000_000u64),
            gas_limit: U256::from(21_000),
            to: Address([0x35; 20]),
            value: U256::from(1_000_000_000_000_000_000u64),
            data: vec![],
            chain_id: 1,
        };
        let chain = U256::from(1);
        assert_eq!(
            hex::encode(tx.rlp(&chain, &U256::ZERO, &U256::ZERO)),
            "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
        );
        assert_eq!(
            hex::encode(tx.signing_hash()),
            "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
        let wallet = Wallet::from_hex(&format!("0x{}", "46".repeat(32))).unwrap();
        assert_eq!(
            hex::encode(tx.sign(&wallet)),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
    }

    #[test]
    fn funding_never_shows_its_key_or_url() {
        let key = format!("0x{}", "46".repeat(32));
        let f = Funding::new(&key, "https://rpc.example/v3/s3cr3t").unwrap();
        let shown = format!("{f:?}");
        assert!(!shown.contains("4646") && !shown.contains("s3cr3t"), "{shown}");
        assert_eq!(Funding::new(&key, "ftp://x").unwrap_err().code(), "config_invalid");
        assert_eq!(Funding::new("0x12", "http://x").unwrap_err().code(), "wallet_key_invalid");
    }

    #[test]
    fn funding_from_options() {
        let key = format!("0x{}", "46".repeat(32));
        assert!(Funding::from_options(None, Some("http://x"), "rpcUrl").unwrap().is_none());
        assert!(Funding::from_options(None, None, "rpcUrl").unwrap().is_none());
        let f = Funding::from_options(Some(&key), Some("http://127.0.0.1:8545"), "rpcUrl").unwrap().unwrap();
        assert_eq!(f.address(), Wallet::from_hex(&key).unwrap().address());
        let e = Funding::from_options(Some(&key), None, "rpcUrl").unwrap_err();
        assert_eq!(e.code(), "config_invalid");
        assert!(e.to_string().contains("rpcUrl") && !e.to_string().contains("4646"), "{e}");
        assert_eq!(
            Funding::from_options(Some("0x12"), Some("http://x"), "rpcUrl").unwrap_err().code(),
            "wallet_key_invalid"
        );
    }
}
