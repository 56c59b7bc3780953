//! One EVM chain and one EIP-3009 token, as the facilitator's settlement backend sees them:
//! read what only the chain knows (balances, authorization state), simulate, sign the relay
//! transaction locally (so its hash is known, and recorded, before it is broadcast), broadcast,
//! and follow it to its receipt. All RPC goes through alloy.

use crate::contracts::IEip3009Token;
use alloy::consensus::Transaction as _;
use alloy::eips::BlockId;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use std::time::Duration;
use vlexivo_core::eip3009::{LiveTerms, TransferAuthorization};
use vlexivo_core::payment::VerifiedTransfer;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

/// Gas headroom over the estimate: state may move between the estimate and the block.
const GAS_HEADROOM_PERCENT: u64 = 20;

pub fn evm(a: &Address) -> EvmAddress {
    EvmAddress::from(a.0)
}

pub fn core_address(a: &EvmAddress) -> Address {
    Address(a.0.0)
}

pub fn hex32(b: &B256) -> String {
    format!("{b:#x}")
}

/// A 32-byte hash from `0x` + 64 hex digits.
pub fn parse_hash(s: &str) -> Result<B256> {
    s.parse::<B256>().map_err(|_| Error::RequestMalformed("a transaction hash is 0x + 64 hex digits".into()))
}

/// Atomic units as a usd amount (`0.001 usd`); the bare number where it is out of range.
pub fn atomic_usd(v: U256) -> String {
    use vlexivo_core::money::{Currency, Money};
    u64::try_from(v)
        .ok()
        .and_then(|a| Money::from_atomic(a, Currency::Usd).ok())
        .map(|m| format!("{m} usd"))
        .unwrap_or_else(|| format!("{v} atomic units"))
}

/// The chain cannot be asked: `facilitator_unavailable`, without the RPC URL (it may carry an
/// API key) or the node's whole answer.
pub(crate) fn rpc_down(what: &str, e: impl std::fmt::Display) -> Error {
    let mut why = e.to_string();
    why.truncate(160);
    tracing::warn!(error = %why, "chain RPC: {what} failed");
    Error::FacilitatorUnavailable(format!("the chain's RPC did not answer ({what})"))
}

/// Where a chain is and how to pay for relaying on it.
#[derive(Clone)]
pub struct ChainConfig {
    /// JSON-RPC URL (http or https).
    pub rpc_url: String,
    /// The EIP-3009 token contract.
    pub token: Address,
    /// The relayer's private key (pays gas; never holds the payments).
    pub relayer_key: String,
    /// How often to poll for receipts and blocks.
    pub poll: Duration,
}

impl std::fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainConfig").field("token", &self.token).finish_non_exhaustive()
    }
}

/// A relay transaction, signed and not yet broadcast.
#[derive(Debug, Clone)]
pub struct Signed {
    pub tx_hash: B256,
    /// EIP-2718 bytes, re-broadcast as they are (the same transaction, never a second one).
    pub raw: Vec<u8>,
    pub relayer_nonce: u64,
    pub gas_limit: u64,
}

/// What became of a broadcast.
#[derive(Debug, Clone)]
pub enum Broadcast {
    /// The node took it.
    Accepted,
    /// The node refused it (nothing will be mined): the reason, and whether the relayer could not
    /// pay for gas.
    Rejected { reason: String, out_of_gas: bool },
    /// No clear answer (the RPC failed mid-way): it may be in a mempool.
    Unknown(String),
}

/// A mined transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mined {
    pub block: u64,
    pub block_hash: B256,
    pub gas_used: u64,
    pub success: bool,
    /// The token's `AuthorizationUsed(authorizer, nonce)` events in it: the authorizations it
    /// carried out (in a batch, the calls that succeeded).
    pub authorizations: Vec<(Address, B256)>,
}

impl Mined {
    /// Did this transaction carry out `from`'s authorization `nonce`?
    pub fn used(&self, from: Address, nonce: B256) -> bool {
        self.success && self.authorizations.contains(&(from, nonce))
    }
}

/// A `Transfer` of the token, from the chain's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLog {
    pub tx_hash: B256,
    pub block: u64,
    pub from: Address,
    pub to: Address,
    pub value: U256,
}

/// The chain and token the facilitator settles on.
pub struct Chain {
    provider: DynProvider,
    token: EvmAddress,
    chain_id: u64,
    name: String,
    version: String,
    relayer: EvmAddress,
    wallet: EthereumWallet,
    /// The relayer's next nonce, held while a transaction is signed, recorded and broadcast:
    /// relays are numbered in the order they reach the node.
    next_nonce: tokio::sync::Mutex<Option<u64>>,
    poll: Duration,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("chain_id", &self.chain_id)
            .field("token", &self.token)
            .field("relayer", &self.relayer)
            .finish_non_exhaustive()
    }
}

/// The provider for an RPC URL (no fillers: relays are filled and signed here).
pub fn connect(rpc_url: &str) -> Result<DynProvider> {
    let url = rpc_url.parse().map_err(|_| Error::Config("the RPC URL is not a URL".into()))?;
    Ok(ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased())
}

impl Chain {
    /// Connect, read the chain id and the token's EIP-712 domain (name, version) and check that
    /// it has 6 decimals (one atomic unit = $0.000001, as everywhere in Vlexivo).
    pub async fn connect(cfg: &ChainConfig) -> Result<Self> {
        let signer: PrivateKeySigner = cfg
            .relayer_key
            .trim()
            .trim_start_matches("0x")
            .parse()
            .map_err(|_| Error::Config("the relayer key is not a secp256k1 private key".into()))?;
        let relayer = signer.address();
        let provider = connect(&cfg.rpc_url)?;
        let chain_id = provider.get_chain_id().await.map_err(|e| rpc_down("chain id", e))?;
        let token = evm(&cfg.token);
        let t = IEip3009Token::new(token, &provider);
        let name = t.name().call().await.map_err(|e| rpc_down("token name", e))?;
        let version = t.version().call().await.map_err(|e| rpc_down("token version", e))?;
        let decimals = t.decimals().call().await.map_err(|e| rpc_down("token decimals", e))?;
        if decimals != 6 {
            return Err(Error::Config(format!(
                "the token has {decimals} decimals; live mode settles 6-decimal usd"
            )));
        }
        Ok(Self {
            provider,
            token,
            chain_id,
            name,
            version,
            relayer,
            wallet: EthereumWallet::from(signer),
            next_nonce: tokio::sync::Mutex::new(None),
            poll: cfg.poll,
        })
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub fn network(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    pub fn token(&self) -> Address {
        core_address(&self.token)
    }

    pub fn relayer(&self) -> Address {
        core_address(&self.relayer)
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The terms a provider paid at `pay_to` publishes in its challenges.
    pub fn terms(&self, pay_to: Address) -> LiveTerms {
        LiveTerms {
            network: self.network(),
            asset: self.token(),
            asset_name: self.name.clone(),
            asset_version: self.version.clone(),
            pay_to,
        }
    }

    pub async fn block_number(&self) -> Result<u64> {
        self.provider.get_block_number().await.map_err(|e| rpc_down("block number", e))
    }

    /// The token balance of `who` at `block`, in atomic units.
    pub async fn balance_at(&self, who: Address, block: u64) -> Result<U256> {
        IEip3009Token::new(self.token, &self.provider)
            .balanceOf(evm(&who))
            .block(BlockId::number(block))
            .call()
            .await
            .map_err(|e| rpc_down("balance", e))
    }

    pub async fn balance(&self, who: Address) -> Result<U256> {
        IEip3009Token::new(self.token, &self.provider)
            .balanceOf(evm(&who))
            .call()
            .await
            .map_err(|e| rpc_down("balance", e))
    }

    /// True when the token has this authorization nonce used or cancelled.
    pub async fn authorization_used(&self, from: Address, nonce: [u8; 32]) -> Result<bool> {
        IEip3009Token::new(self.token, &self.provider)
            .authorizationState(evm(&from), B256::from(nonce))
            .call()
            .await
            .map_err(|e| rpc_down("authorization state", e))
    }

    /// The relayer's balance in wei.
    pub async fn relayer_gas_balance(&self) -> Result<U256> {
        self.provider.get_balance(self.relayer).await.map_err(|e| rpc_down("relayer balance", e))
    }

    fn calldata(auth: &TransferAuthorization, signature: &str) -> Result<Bytes> {
        let sig = hex::decode(signature.trim_start_matches("0x")).map_err(|_| Error::SignatureInvalid)?;
        let call = IEip3009Token::transferWithAuthorizationCall {
            from: evm(&auth.from),
            to: evm(&auth.to),
            value: U256::from(auth.value),
            validAfter: U256::from(auth.valid_after),
            validBefore: U256::from(auth.valid_before),
            nonce: B256::from(auth.nonce),
            signature: sig.into(),
        };
        Ok(call.abi_encode().into())
    }

    fn relay_request(&self, data: Bytes) -> TransactionRequest {
        TransactionRequest::default().with_from(self.relayer).with_to(self.token).with_input(data)
    }

    /// Simulate the relay (`eth_estimateGas` runs it against the latest state): the gas it
    /// needs, or the token's refusal as an error.
    pub async fn simulate(&self, t: &VerifiedTransfer) -> Result<u64> {
        let data = Self::calldata(&t.authorization, &t.signature)?;
        self.estimate(data, t.payment.price.to_string()).await
    }

    async fn estimate(&self, data: Bytes, price: String) -> Result<u64> {
        self.estimate_call(self.relay_request(data), |why| refusal(why, &price)).await
    }

    /// `eth_estimateGas` of `req`: the gas, or the node's refusal through `refused` (a relayer
    /// that cannot pay for gas is the facilitator's trouble, never the payment's).
    async fn estimate_call(
        &self,
        req: TransactionRequest,
        refused: impl FnOnce(&str) -> Error,
    ) -> Result<u64> {
        match self.provider.estimate_gas(req).await {
            Ok(g) => Ok(g),
            // The node will not run it because the relayer cannot pay for the gas: the
            // facilitator's own trouble, not the payment's.
            Err(e) if e.as_error_resp().is_some() && relayer_cannot_pay(&e.to_string()) => {
                tracing::error!(relayer = %self.relayer, "live: the relayer cannot pay for gas");
                Err(Error::FacilitatorUnavailable(
                    "the facilitator's relayer cannot pay for gas right now".into(),
                ))
            }
            Err(e) if e.as_error_resp().is_some() => Err(refused(&e.to_string())),
            Err(e) => Err(rpc_down("simulation", e)),
        }
    }

    /// Sign the relay of `t` with the relayer's next nonce, hand it to `record` (which must
    /// store it durably: after a crash the same bytes are re-broadcast, never re-signed), then
    /// broadcast it. A `record` error stops before anything is sent.
    pub async fn submit<F, Fut>(
        &self,
        t: &VerifiedTransfer,
        gas: u64,
        record: F,
    ) -> Result<(Signed, Broadcast)>
    where
        F: FnOnce(Signed) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let data = Self::calldata(&t.authorization, &t.signature)?;
        self.submit_call(self.token, data, gas, record).await
    }

    /// The calldata of one Multicall3 `aggregate3` that relays every transfer of `batch` to the
    /// token, each allowed to fail alone (a payer who drained its balance does not sink the
    /// others: its `Transfer` is simply missing from the receipt).
    pub fn batch_calldata(&self, batch: &[&VerifiedTransfer]) -> Result<Bytes> {
        use crate::contracts::IMulticall3;
        let calls = batch
            .iter()
            .map(|t| {
                Ok(IMulticall3::Call3 {
                    target: self.token,
                    allowFailure: true,
                    callData: Self::calldata(&t.authorization, &t.signature)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(IMulticall3::aggregate3Call { calls }.abi_encode().into())
    }

    /// Batched settlement: relay every transfer of `batch` in one transaction through the
    /// Multicall3 at `multicall` (recorded, then broadcast, as [`Chain::submit`]). The gas is
    /// estimated here.
    pub async fn submit_batch<F, Fut>(
        &self,
        multicall: Address,
        batch: &[&VerifiedTransfer],
        record: F,
    ) -> Result<(Signed, Broadcast)>
    where
        F: FnOnce(Signed) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let data = self.batch_calldata(batch)?;
        let to = evm(&multicall);
        let req = TransactionRequest::default().with_from(self.relayer).with_to(to).with_input(data.clone());
        let gas =
            self.estimate_call(req, |why| Error::SettlementFailed(why.chars().take(200).collect())).await?;
        self.submit_call(to, data, gas, record).await
    }

    async fn submit_call<F, Fut>(
        &self,
        to: EvmAddress,
        data: Bytes,
        gas: u64,
        record: F,
    ) -> Result<(Signed, Broadcast)>
    where
        F: FnOnce(Signed) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut next = self.next_nonce.lock().await;
        let nonce = match *next {
            Some(n) => n,
            None => self
                .provider
                .get_transaction_count(self.relayer)
                .pending()
                .await
                .map_err(|e| rpc_down("relayer nonce", e))?,
        };
        let fees = self.provider.estimate_eip1559_fees().await.map_err(|e| rpc_down("fees", e))?;
        let tx = TransactionRequest::default()
            .with_from(self.relayer)
            .with_to(to)
            .with_input(data)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas + gas * GAS_HEADROOM_PERCENT / 100)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = tx
            .build(&self.wallet)
            .await
            .map_err(|e| Error::Internal(format!("cannot sign the relay: {e}")))?;
        let signed = Signed {
            tx_hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718(),
            relayer_nonce: nonce,
            gas_limit: envelope.gas_limit(),
        };
        record(signed.clone()).await?;
        let outcome = self.broadcast(&signed.raw).await;
        *next = match outcome {
            Broadcast::Accepted => Some(nonce + 1),
            // The nonce may or may not be taken: ask the node next time.
            _ => None,
        };
        Ok((signed, outcome))
    }

    /// Send signed bytes. A node that already has them (`already known`, or the nonce is used
    /// because these bytes were mined) counts as accepted: re-broadcasting is idempotent.
    pub async fn broadcast(&self, raw: &[u8]) -> Broadcast {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Broadcast::Accepted,
            Err(e) => {
                let msg = e.to_string();
                let lower = msg.to_ascii_lowercase();
                if e.as_error_resp().is_none() {
                    return Broadcast::Unknown(msg);
                }
                if lower.contains("already known") || lower.contains("already imported") {
                    return Broadcast::Accepted;
                }
                // Its nonce is used: by this very transaction (an earlier broadcast of the same
                // bytes was mined) or by another one (then it can never be mined).
                if lower.contains("nonce too low") {
                    let hash = alloy::primitives::keccak256(raw);
                    if let Ok(Some(_)) = self.provider.get_transaction_by_hash(hash).await {
                        return Broadcast::Accepted;
                    }
                }
                let out_of_gas = relayer_cannot_pay(&lower);
                Broadcast::Rejected { reason: msg.chars().take(200).collect(), out_of_gas }
            }
        }
    }

    /// The receipt of `tx_hash`, if mined.
    pub async fn mined(&self, tx_hash: B256) -> Result<Option<Mined>> {
        use alloy::sol_types::SolEvent;
        let r = self.provider.get_transaction_receipt(tx_hash).await.map_err(|e| rpc_down("receipt", e))?;
        Ok(r.and_then(|r| {
            let authorizations = r
                .inner
                .logs()
                .iter()
                .filter(|l| l.address() == self.token)
                .filter_map(|l| IEip3009Token::AuthorizationUsed::decode_log(&l.inner).ok())
                .map(|e| (core_address(&e.authorizer), e.nonce))
                .collect();
            Some(Mined {
                block: r.block_number?,
                block_hash: r.block_hash?,
                gas_used: r.gas_used,
                success: r.status(),
                authorizations,
            })
        }))
    }

    /// True when there is contract code at `at` (a Multicall3 to batch through, say).
    pub async fn has_code(&self, at: Address) -> Result<bool> {
        let code = self.provider.get_code_at(evm(&at)).await.map_err(|e| rpc_down("code", e))?;
        Ok(!code.is_empty())
    }

    /// The hash of block `number`, if the chain has it.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>> {
        let b = self.provider.get_block_by_number(number.into()).await.map_err(|e| rpc_down("block", e))?;
        Ok(b.map(|b| b.header.hash))
    }

    /// True when the node knows the transaction (pending or mined).
    pub async fn known(&self, tx_hash: B256) -> Result<bool> {
        let t =
            self.provider.get_transaction_by_hash(tx_hash).await.map_err(|e| rpc_down("transaction", e))?;
        Ok(t.is_some())
    }

    /// Wait until `tx_hash` is mined and `confirmations` blocks deep (1 = in a block), polling;
    /// `None` when `deadline` passes first.
    pub async fn wait(&self, tx_hash: B256, confirmations: u64, deadline: Duration) -> Result<Option<Mined>> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(m) = self.mined(tx_hash).await?
                && (!m.success
                    || confirmations <= 1
                    || self.block_number().await? + 1 >= m.block + confirmations)
            {
                return Ok(Some(m));
            }
            if tokio::time::Instant::now() >= end {
                return Ok(None);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The token's `Transfer` logs in `[from_block, to_block]`, to any of `to` (all when empty).
    pub async fn transfers(
        &self,
        from_block: u64,
        to_block: u64,
        to: &[Address],
    ) -> Result<Vec<TransferLog>> {
        transfer_logs(&self.provider, core_address(&self.token), from_block, to_block, to).await
    }
}

/// `token`'s `Transfer` logs in `[from_block, to_block]`, to any of `to` (all when empty), in
/// chain order.
pub async fn transfer_logs(
    provider: &DynProvider,
    token: Address,
    from_block: u64,
    to_block: u64,
    to: &[Address],
) -> Result<Vec<TransferLog>> {
    use alloy::rpc::types::Filter;
    use alloy::sol_types::SolEvent;
    let mut filter = Filter::new()
        .address(evm(&token))
        .event_signature(IEip3009Token::Transfer::SIGNATURE_HASH)
        .from_block(from_block)
        .to_block(to_block);
    if !to.is_empty() {
        filter = filter.topic2(to.iter().map(|a| evm(a).into_word()).collect::<Vec<_>>());
    }
    let logs = provider.get_logs(&filter).await.map_err(|e| rpc_down("logs", e))?;
    Ok(logs
        .into_iter()
        .filter_map(|l| {
            let tx_hash = l.transaction_hash?;
            let block = l.block_number?;
            let ev = IEip3009Token::Transfer::decode_log(&l.inner).ok()?;
            Some(TransferLog {
                tx_hash,
                block,
                from: core_address(&ev.from),
                to: core_address(&ev.to),
                value: ev.value,
            })
        })
        .collect())
}

/// The node's answer when the sender cannot pay for gas (geth's and anvil's wording).
fn relayer_cannot_pay(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("insufficient funds") || m.contains("gas * price") || m.contains("lack of funds")
}

/// A token's refusal, by its revert reason (FiatToken's texts; other tokens' fall through).
fn refusal(msg: &str, price: &str) -> Error {
    let m = msg.to_ascii_lowercase();
    if m.contains("authorization is used") || m.contains("authorization is used or canceled") {
        Error::AuthorizationUsed
    } else if m.contains("exceeds balance") || m.contains("insufficient balance") {
        Error::InsufficientFunds {
            required: price.to_string(),
            balance: String::new(),
            currency: "usd".into(),
        }
    } else if m.contains("authorization is expired") {
        Error::AuthorizationInvalid("expired on chain")
    } else if m.contains("authorization is not yet valid") {
        Error::AuthorizationInvalid("not yet valid on chain")
    } else if m.contains("invalid signature") {
        Error::SignatureInvalid
    } else {
        let mut why = msg.to_string();
        why.truncate(200);
        Error::SettlementFailed(why)
    }
}
