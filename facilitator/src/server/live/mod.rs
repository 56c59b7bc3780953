//! Live mode: the facilitator settles each payment on chain with the payer's EIP-3009
//! authorization, non-custodially (payer → provider's payout address), paying the gas.
//!
//! A payment: core's off-chain checks ([`payment::verify_live`]: MAC, window, terms,
//! signature); then, under the payer's lock (this process's, and on PostgreSQL an advisory lock
//! every facilitator on the database takes), the chain's: the authorization unused, the balance
//! at the latest block minus what the ledger holds for the payer (reservations, and settlements
//! not yet in that balance), and a simulation; the amount is then reserved in the ledger and
//! the lock released. The relay is signed,
//! recorded (state `signed`, with the token naming its hash), broadcast (`submitted`) and,
//! depending on `confirmations`, answered at once (0: the amount stays reserved and the
//! follower takes it to `confirmed` or `failed`) or after N blocks. With batching on, the
//! payments admitted within a short window go out together in one Multicall3 `aggregate3`
//! transaction, each call allowed to fail alone: every record of the batch names its hash and
//! its call, and the receipt's `AuthorizationUsed` events tell which calls settled.
//!
//! The follower also picks up what a previous process left pending after a crash and
//! re-broadcasts the same signed bytes when the node lost them (a payment is never signed
//! twice), and re-checks recent confirmations for reorgs: a record whose block is no longer the
//! chain's goes back to `submitted` (counted in `reorgs`) and is followed again.

mod payer_locks;
pub mod reconcile;
pub mod store;

use alloy::primitives::B256;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use store::{Held, LiveStore, Reservation, Settlement, Update, Which};
use tokio::sync::{mpsc, oneshot};
use vlexivo_core::env::Clock;
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment::{self, PaymentReceipt, PaymentRequest, VerifiedTransfer};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};
use vlexivo_live::chain::{hex32, parse_hash};
use vlexivo_live::{Broadcast, Chain, ChainConfig, Mined, Signed};

use super::ledger::Provider;

/// Takes a relay out of [`Live::in_hand`] when the payment request is done with it.
struct InHand<'a> {
    live: &'a Live,
    tx: String,
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.live.in_hand.lock().remove(&self.tx);
    }
}

/// Scheme name of the records this module writes.
pub const SCHEME: &str = "eip3009";

/// How far back (in blocks) the follower re-checks confirmed records for reorgs.
pub const REORG_DEPTH: u64 = 64;

/// How live mode settles.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub chain: ChainConfig,
    /// 0: answer once the node accepted the relay; N ≥ 1: once it is N blocks deep.
    pub confirmations: u64,
    /// Longest a payment request waits for its confirmations before it is answered
    /// `facilitator_unavailable` (the record stays pending and is followed).
    pub confirm_timeout: Duration,
    /// Relay payments in batches (`None`: one transaction per payment).
    pub batch: Option<BatchConfig>,
}

/// Batched relays: the payments admitted within `window` of the first of a batch (at most
/// `max`) go out in one `aggregate3` transaction of the Multicall3 at `multicall`.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub multicall: Address,
    pub window: Duration,
    pub max: usize,
}

/// A payment ready to relay: checked, reserved, and what its token needs.
struct Ready {
    provider: Arc<Provider>,
    t: VerifiedTransfer,
    issuer: String,
    now: u64,
    /// The simulation's gas (a relay of its own).
    gas: u64,
}

/// What relaying a payment gave it.
#[derive(Debug, Clone)]
struct Relayed {
    tx_hash: B256,
    token: String,
    claims_at: (u64, u64),
    outcome: Broadcast,
}

/// A payment waiting for its batch.
struct Job {
    ready: Ready,
    reply: oneshot::Sender<Result<Relayed>>,
}

pub struct Live {
    pub chain: Chain,
    pub store: LiveStore,
    confirmations: u64,
    confirm_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Per payer: this process's lock the balance check and the reservation are made under
    /// (on PostgreSQL the admission also takes the payer's advisory lock, across processes).
    payers: payer_locks::PayerLocks,
    payouts: Mutex<HashMap<String, Address>>,
    /// Relays this process is signing and broadcasting right now: the follower leaves them to
    /// the payment request (it would otherwise race it to broadcast the same bytes).
    in_hand: Mutex<std::collections::HashSet<String>>,
    /// The batcher's queue, when batching.
    batches: Option<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("chain", &self.chain)
            .field("confirmations", &self.confirmations)
            .field("batching", &self.batches.is_some())
            .finish()
    }
}

fn usd(atomic: u64) -> String {
    Money::from_atomic(atomic, Currency::Usd).map(|m| m.to_string()).unwrap_or_else(|_| atomic.to_string())
}

fn to_u64(v: alloy::primitives::U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Did the relay `m` carry out the record `s`? A relay of its own: it succeeded. A batch's call:
/// the token's `AuthorizationUsed` for its payer and nonce is in the receipt.
fn carried(s: &Settlement, m: &Mined) -> Result<bool> {
    if s.call_index.is_none() {
        return Ok(m.success);
    }
    Ok(m.used(Address::parse(&s.payer)?, parse_hash(&s.auth_nonce)?))
}

/// Why `m` did not carry out `s`.
fn not_carried(s: &Settlement, m: &Mined) -> String {
    match (m.success, s.call_index) {
        (false, _) => "the transfer reverted on chain".into(),
        (true, Some(i)) => {
            format!("call {i} of the batched relay failed: the token did not carry out the authorization")
        }
        (true, None) => "the token did not carry out the authorization".into(),
    }
}

impl Live {
    pub async fn start(cfg: &LiveConfig, store: LiveStore, clock: Arc<dyn Clock>) -> Result<Arc<Self>> {
        let chain = Chain::connect(&cfg.chain).await?;
        let batch = match &cfg.batch {
            Some(b) if b.max >= 2 => {
                if !chain.has_code(b.multicall).await? {
                    return Err(Error::Config(format!(
                        "batched relays need a Multicall3: there is no contract at {}",
                        b.multicall
                    )));
                }
                Some(b.clone())
            }
            _ => None,
        };
        let (tx, rx) = match batch {
            Some(_) => {
                let (tx, rx) = mpsc::channel(4096);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let live = Arc::new(Self {
            chain,
            store,
            confirmations: cfg.confirmations,
            confirm_timeout: cfg.confirm_timeout,
            clock,
            payers: payer_locks::PayerLocks::default(),
            payouts: Mutex::new(HashMap::new()),
            in_hand: Mutex::new(std::collections::HashSet::new()),
            batches: tx,
        });
        if let (Some(b), Some(rx)) = (batch, rx) {
            // The batcher ends when the last handle on `live` (and so its queue) is dropped.
            tokio::spawn(batcher(Arc::downgrade(&live), rx, b));
        }
        tracing::info!(
            network = %live.chain.network(),
            token = %live.chain.token(),
            relayer = %live.chain.relayer(),
            confirmations = cfg.confirmations,
            batching = live.batches.is_some(),
            "live settlement ready"
        );
        Ok(live)
    }

    /// Follow pending records until `stop` fires: every `poll`, each pending relay is checked
    /// once (mined → confirmed or failed; unknown to the node → re-broadcast, or failed once its
    /// authorizations have expired), and recent confirmations are re-checked for reorgs.
    pub fn spawn_follower(self: &Arc<Self>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.follow_once().await {
                    tracing::debug!(error = %e, "live: follow pass failed; retrying");
                }
                tokio::time::sleep(poll).await;
            }
        })
    }

    /// One pass: the reorg check, then the pending records, a relay (and so a batch) at a time.
    pub async fn follow_once(&self) -> Result<usize> {
        self.recheck_reorgs().await?;
        self.store.drop_expired_reservations(self.clock.now()).await?;
        let pending = self.store.pending().await?;
        let n = pending.len();
        let mut relays: Vec<Vec<Settlement>> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for s in pending {
            if self.in_hand.lock().contains(&s.tx_hash) {
                continue;
            }
            let i = *at.entry(s.tx_hash.clone()).or_insert_with(|| {
                relays.push(Vec::new());
                relays.len() - 1
            });
            relays[i].push(s);
        }
        for records in relays {
            self.follow(&records).await?;
        }
        Ok(n)
    }

    /// One relay's pending records (one, or a batch's).
    async fn follow(&self, records: &[Settlement]) -> Result<()> {
        let Some(first) = records.first() else { return Ok(()) };
        let hash = parse_hash(&first.tx_hash)?;
        let now = self.clock.now();
        match self.chain.mined(hash).await? {
            Some(m) => {
                let deep = self.confirmations.max(1);
                if !m.success || self.chain.block_number().await? + 1 >= m.block + deep {
                    for s in records {
                        self.settled(s, &m, now).await?;
                    }
                }
            }
            None => {
                if self.chain.known(hash).await? {
                    if records.iter().any(|s| s.state == "signed") {
                        self.store.update(Which::Tx(&first.tx_hash), Update::Submitted, now).await?;
                    }
                } else if records.iter().all(|s| (s.valid_before as u64) <= now) {
                    // Never mined and every authorization in it is void: it never can be.
                    for s in records {
                        self.failed(
                            s,
                            "dropped before it was mined; the authorization has expired".into(),
                            None,
                            now,
                        )
                        .await?;
                    }
                } else {
                    // The signed bytes (a batch keeps them on its call 0, maybe not pending).
                    let raw = match records.iter().find(|s| !s.raw_tx.is_empty()) {
                        Some(s) => s.raw_tx.clone(),
                        None => match self.store.by_tx(&first.tx_hash).await? {
                            Some(s) => s.raw_tx,
                            None => return Err(Error::Internal("a relay without its signed bytes".into())),
                        },
                    };
                    match self.chain.broadcast(&raw).await {
                        Broadcast::Accepted => {
                            tracing::info!(tx = %first.tx_hash, "live: re-broadcast a relay the node did not have");
                            self.store.update(Which::Tx(&first.tx_hash), Update::Submitted, now).await?;
                        }
                        Broadcast::Rejected { reason, .. } => {
                            // A nonce the relayer already used otherwise means it can never be mined.
                            if reason.to_ascii_lowercase().contains("nonce too low") {
                                for s in records {
                                    self.failed(
                                        s,
                                        "replaced: the relayer's nonce was used by another transaction"
                                            .into(),
                                        None,
                                        now,
                                    )
                                    .await?;
                                }
                            } else {
                                tracing::warn!(tx = %first.tx_hash, %reason, "live: re-broadcast refused; will retry");
                            }
                        }
                        Broadcast::Unknown(why) => {
                            tracing::debug!(%why, "live: re-broadcast without an answer")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Confirmed records in the last [`REORG_DEPTH`] blocks whose block is no longer the
    /// chain's go back to `submitted` (held against their payers again) and are followed anew (re-mined
    /// elsewhere: confirmed in their new block; gone: re-broadcast, the same bytes). Blocks are
    /// checked newest first and the check stops at the first one unchanged: block hashes chain,
    /// so everything older is unchanged too.
    async fn recheck_reorgs(&self) -> Result<()> {
        let head = self.chain.block_number().await?;
        for (block, hash) in self.store.confirmed_blocks_from(head.saturating_sub(REORG_DEPTH)).await? {
            let now_there = self.chain.block_hash(block as u64).await?.map(|h| hex32(&h));
            if now_there.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&hash)) {
                break;
            }
            tracing::warn!(block, %hash, "live: a block holding confirmed settlements was reorged out");
            let reason = format!("reorg: block {block} ({hash}) is no longer the chain's; followed again");
            self.store
                .update(Which::Block(block, &hash), Update::Reorged { reason }, self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// `s`'s relay is mined (and deep enough): confirmed when it carried `s` out, else failed.
    async fn settled(&self, s: &Settlement, m: &Mined, now: u64) -> Result<()> {
        if carried(s, m)? {
            self.store
                .update(
                    Which::Record(&s.account, &s.nonce),
                    Update::Confirmed {
                        block: m.block as i64,
                        block_hash: hex32(&m.block_hash),
                        gas_used: m.gas_used as i64,
                    },
                    now,
                )
                .await?;
            tracing::info!(tx = %s.tx_hash, call = ?s.call_index, block = m.block, gas = m.gas_used, "live: settled");
            Ok(())
        } else {
            self.failed(s, not_carried(s, m), Some(m), now).await
        }
    }

    async fn failed(&self, s: &Settlement, reason: String, m: Option<&Mined>, now: u64) -> Result<()> {
        tracing::warn!(tx = %s.tx_hash, call = ?s.call_index, account = %s.account, %reason, "live: settlement failed");
        self.store
            .update(
                Which::Record(&s.account, &s.nonce),
                Update::Failed {
                    reason,
                    block: m.map(|m| m.block as i64),
                    gas_used: m.map(|m| m.gas_used as i64),
                },
                now,
            )
            .await?;
        Ok(())
    }

    /// A provider's payout address.
    pub async fn payout(&self, account: &str) -> Result<Address> {
        if let Some(a) = self.payouts.lock().get(account) {
            return Ok(*a);
        }
        let a = self
            .store
            .payout(account)
            .await?
            .ok_or_else(|| Error::Config(format!("live provider {account} has no payout address")))?;
        let a = Address::parse(&a)?;
        self.payouts.lock().insert(account.to_string(), a);
        Ok(a)
    }

    /// The terms a provider's challenges must carry.
    pub async fn terms(&self, account: &str) -> Result<vlexivo_core::eip3009::LiveTerms> {
        Ok(self.chain.terms(self.payout(account).await?))
    }

    /// What `payer` can still spend: its balance at the latest block, and what the ledger holds
    /// for it that this balance does not show yet (reservations; settlements pending, or mined
    /// after that block). Inside the payer's admission `adm` when admitting.
    async fn spendable(
        &self,
        payer: Address,
        adm: Option<&store::Admission>,
    ) -> Result<(u64, u64, Vec<Held>)> {
        let block = self.chain.block_number().await?;
        let held = self.store.held(adm, &payer.to_checksum(), self.clock.now(), block).await?;
        let balance = to_u64(self.chain.balance_at(payer, block).await?);
        let mut receipts: HashMap<String, Option<Mined>> = HashMap::new();
        let mut reserved = 0u64;
        for h in &held {
            let counts = match (&h.tx_hash, h.block) {
                // Reserved, not relayed yet; or confirmed after the balance's block.
                (None, _) | (Some(_), Some(_)) => true,
                (Some(tx), None) => {
                    if !receipts.contains_key(tx) {
                        receipts.insert(tx.clone(), self.chain.mined(parse_hash(tx)?).await?);
                    }
                    match &receipts[tx] {
                        None => true,
                        Some(m) => {
                            let moved = if h.call_index.is_some() {
                                m.used(payer, parse_hash(&h.auth_nonce)?)
                            } else {
                                m.success
                            };
                            // Not yet in the balance read; a relay that did not carry it out
                            // moved nothing and holds nothing.
                            moved && m.block > block
                        }
                    }
                }
            };
            if counts {
                reserved += h.amount as u64;
            }
        }
        Ok((balance, reserved, held))
    }

    /// The on-chain balance of `payer` less what the ledger holds for it, in atomic units.
    pub async fn balance(&self, payer: Address) -> Result<u64> {
        let (balance, reserved, _) = self.spendable(payer, None).await?;
        Ok(balance.saturating_sub(reserved))
    }

    /// Settle a live payment request for `provider`.
    pub async fn pay(
        &self,
        provider: Arc<Provider>,
        req: &PaymentRequest,
        issuer: &str,
    ) -> Result<PaymentReceipt> {
        let challenge = payment::decode(req)?;
        let now = self.clock.now();
        let expected = self.terms(&provider.account).await?;
        let t = payment::verify_live(req, challenge, &provider.challenge_mac, &expected, now)?;
        let account = provider.account.clone();
        let nonce = t.payment.challenge.nonce.clone();
        if let Some(s) = self.store.get(&account, &nonce).await? {
            return self.replay(s, &t).await;
        }
        let payer = t.payment.payer;
        let value = t.authorization.value;
        let price = t.payment.price;
        let guard = self.payers.lock(payer).await;
        // The same challenge paid concurrently: recorded already (checked before the admission,
        // which holds a database connection of its own), or reserved by the first admission and
        // being relayed (then this one answers as a replay once recorded).
        if let Some(s) = self.store.get(&account, &nonce).await? {
            drop(guard);
            return self.replay(s, &t).await;
        }
        let adm = self.store.admit(&payer.to_checksum()).await?;
        let admitted = async {
            if self.chain.authorization_used(payer, t.authorization.nonce).await? {
                return Err(Error::AuthorizationUsed);
            }
            let (balance, reserved, held) = self.spendable(payer, Some(&adm)).await?;
            if held.iter().any(|h| h.account == account && h.nonce == nonce) {
                return Err(Error::PaymentConflict);
            }
            let available = balance.saturating_sub(reserved);
            if available < value {
                return Err(Error::InsufficientFunds {
                    required: price.to_string(),
                    balance: usd(available),
                    currency: price.currency().code().into(),
                });
            }
            let gas = self.chain.simulate(&t).await?;
            Ok((available, gas))
        }
        .await;
        let (available, gas) = match admitted {
            Ok(ok) => ok,
            Err(Error::AuthorizationUsed) => {
                adm.abandon().await;
                drop(guard);
                // Used by this very payment, relayed by another facilitator meanwhile?
                return match self.store.get(&account, &nonce).await? {
                    Some(s) => self.replay(s, &t).await,
                    None => Err(Error::AuthorizationUsed),
                };
            }
            Err(Error::PaymentConflict) => {
                adm.abandon().await;
                drop(guard);
                return self.replay_when_recorded(&account, &nonce, &t).await;
            }
            Err(e) => {
                adm.abandon().await;
                return Err(e);
            }
        };
        // Reserved in the ledger: the payer's next admission, here or at another facilitator on
        // the same database, counts it while this one is relayed.
        let reservation = Reservation {
            account: account.clone(),
            nonce: nonce.clone(),
            payer: payer.to_checksum(),
            amount: value as i64,
            auth_nonce: format!("0x{}", hex::encode(t.authorization.nonce)),
            valid_before: t.authorization.valid_before as i64,
            created_at: now as i64,
        };
        match self.store.reserve(adm, reservation).await {
            Ok(()) => {}
            Err(Error::PaymentConflict) => {
                drop(guard);
                return self.replay_when_recorded(&account, &nonce, &t).await;
            }
            Err(e) => return Err(e),
        }
        drop(guard);
        let ready = Ready { provider, t, issuer: issuer.to_string(), now, gas };
        let relayed = match &self.batches {
            None => self.relay(vec![ready], None).await.map(|mut r| r.remove(0)),
            Some(queue) => {
                let (reply, answer) = oneshot::channel();
                match queue.send(Job { ready, reply }).await {
                    Ok(()) => answer.await.unwrap_or_else(|_| {
                        Err(Error::FacilitatorUnavailable("the facilitator is shutting down".into()))
                    }),
                    Err(_) => Err(Error::FacilitatorUnavailable("the facilitator is shutting down".into())),
                }
            }
        };
        let r = relayed?;
        let tx = hex32(&r.tx_hash);
        match r.outcome {
            Broadcast::Accepted => {}
            Broadcast::Rejected { reason, out_of_gas } => {
                return Err(if out_of_gas {
                    tracing::error!(relayer = %self.chain.relayer(), "live: the relayer cannot pay for gas");
                    Error::FacilitatorUnavailable(
                        "the facilitator's relayer cannot pay for gas right now".into(),
                    )
                } else {
                    Error::SettlementFailed(reason)
                });
            }
            Broadcast::Unknown(_) => {
                return Err(Error::FacilitatorUnavailable(
                    "the chain's RPC did not confirm the broadcast; the payment is followed and re-sending it tells its fate"
                        .into(),
                ));
            }
        }
        let receipt = PaymentReceipt {
            token: r.token,
            tx_hash: tx.clone(),
            payer: payer.to_checksum(),
            amount: price.to_string(),
            currency: price.currency().code().into(),
            balance: usd(available - value),
            nonce: nonce.clone(),
            paid_at: r.claims_at.0,
            expires_at: r.claims_at.1,
            replayed: false,
        };
        if self.confirmations == 0 {
            return Ok(receipt);
        }
        self.await_confirmations(&account, &nonce, r.tx_hash).await?;
        Ok(receipt)
    }

    /// Sign, record and broadcast `ready`: one payment in a relay of its own (`multicall`
    /// `None`), or several in one `aggregate3` call of the Multicall3 at `multicall`. Every
    /// record is stored before the broadcast; the answers are in `ready`'s order.
    async fn relay(&self, ready: Vec<Ready>, multicall: Option<Address>) -> Result<Vec<Relayed>> {
        let mut issued: Vec<(String, (u64, u64))> = Vec::new();
        let mut held = None;
        let record = |signed: Signed| {
            let tx = hex32(&signed.tx_hash);
            let batched = multicall.is_some();
            let records = ready
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let claims = payment::claims(&r.t.payment, &tx, &r.issuer, r.now);
                    let token = r.provider.issuer.issue(&claims)?;
                    issued.push((token.clone(), (claims.iat, claims.exp)));
                    // A batch keeps its signed bytes once, on call 0.
                    let raw = if i == 0 { signed.raw.clone() } else { Vec::new() };
                    Ok(self.record(
                        &r.provider.account,
                        &r.t,
                        &signed,
                        raw,
                        batched.then_some(i as i64),
                        token,
                        claims.iat,
                        claims.exp,
                    ))
                })
                .collect::<Result<Vec<_>>>();
            if records.is_ok() {
                self.in_hand.lock().insert(tx.clone());
                held = Some(tx);
            }
            // The records replace the payments' reservations in the same transaction.
            async move { self.store.insert(records?).await }
        };
        let submitted = match multicall {
            None => self.chain.submit(&ready[0].t, ready[0].gas, record).await,
            Some(m) => {
                let transfers: Vec<&VerifiedTransfer> = ready.iter().map(|r| &r.t).collect();
                self.chain.submit_batch(m, &transfers, record).await
            }
        };
        let _released = held.map(|tx| InHand { live: self, tx });
        let (signed, outcome) = match submitted {
            Ok(s) => s,
            Err(e) => {
                // Nothing was recorded or sent: the reservations go.
                let keys =
                    ready.iter().map(|r| (r.provider.account.clone(), r.t.payment.challenge.nonce.clone()));
                if let Err(u) = self.store.unreserve(keys.collect()).await {
                    tracing::warn!(error = %u, "live: reservations kept until their authorizations expire");
                }
                return Err(e);
            }
        };
        let tx = hex32(&signed.tx_hash);
        let now = self.clock.now();
        match &outcome {
            Broadcast::Accepted => self.store.update(Which::Tx(&tx), Update::Submitted, now).await?,
            Broadcast::Rejected { reason, .. } => {
                self.store
                    .update(
                        Which::Tx(&tx),
                        Update::Failed { reason: reason.clone(), block: None, gas_used: None },
                        now,
                    )
                    .await?
            }
            Broadcast::Unknown(_) => {}
        }
        Ok(issued
            .into_iter()
            .map(|(token, claims_at)| Relayed {
                tx_hash: signed.tx_hash,
                token,
                claims_at,
                outcome: outcome.clone(),
            })
            .collect())
    }

    /// Relay a batch's payments and answer each (one alone goes in a relay of its own).
    async fn relay_batch(&self, jobs: Vec<Job>, multicall: Address) {
        let (ready, replies): (Vec<Ready>, Vec<_>) = jobs.into_iter().map(|j| (j.ready, j.reply)).unzip();
        let n = ready.len();
        let via = (n > 1).then_some(multicall);
        match self.relay(ready, via).await {
            Ok(relayed) => {
                if let Some(r) = relayed.first() {
                    tracing::debug!(tx = %hex32(&r.tx_hash), payments = n, "live: batched relay");
                }
                for (reply, r) in replies.into_iter().zip(relayed) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Wait until the relay of the record `(account, nonce)` is `confirmations` deep: a relay
    /// that did not carry it out is `settlement_failed` (recorded).
    async fn await_confirmations(&self, account: &str, nonce: &str, hash: B256) -> Result<()> {
        match self.chain.wait(hash, self.confirmations, self.confirm_timeout).await? {
            Some(m) => {
                let s = self
                    .store
                    .get(account, nonce)
                    .await?
                    .ok_or_else(|| Error::Internal("record vanished".into()))?;
                let now = self.clock.now();
                self.settled(&s, &m, now).await?;
                if carried(&s, &m)? { Ok(()) } else { Err(Error::SettlementFailed(not_carried(&s, &m))) }
            }
            None => Err(Error::FacilitatorUnavailable(format!(
                "the settlement {} is not {} blocks deep yet; re-sending the payment tells its fate",
                hex32(&hash),
                self.confirmations
            ))),
        }
    }

    /// The same challenge paid while its first payment is being relayed: that payment's answer
    /// once it is recorded (it is recorded before its broadcast, or not at all).
    async fn replay_when_recorded(
        &self,
        account: &str,
        nonce: &str,
        t: &VerifiedTransfer,
    ) -> Result<PaymentReceipt> {
        let end = tokio::time::Instant::now() + self.confirm_timeout.min(Duration::from_secs(30));
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if let Some(s) = self.store.get(account, nonce).await? {
                return self.replay(s, t).await;
            }
            if !self.store.is_reserved(account, nonce).await? {
                break;
            }
        }
        match self.store.get(account, nonce).await? {
            Some(s) => self.replay(s, t).await,
            None => Err(Error::FacilitatorUnavailable(
                "this payment was not relayed; a new challenge pays it".into(),
            )),
        }
    }

    /// The same challenge paid again: its first answer, to the same payer only.
    async fn replay(&self, s: Settlement, t: &VerifiedTransfer) -> Result<PaymentReceipt> {
        let payer = t.payment.payer.to_checksum();
        if s.payer != payer {
            return Err(Error::PaymentConflict);
        }
        if s.state == "failed" {
            return Err(Error::SettlementFailed(s.failure.unwrap_or_else(|| "failed".into())));
        }
        if s.state == "signed" {
            return Err(Error::FacilitatorUnavailable(
                "this payment's broadcast is not confirmed yet; it is followed, re-send later".into(),
            ));
        }
        if self.confirmations > 0 && s.state != "confirmed" {
            self.await_confirmations(&s.account, &s.nonce, parse_hash(&s.tx_hash)?).await?;
        }
        let balance = self.balance(t.payment.payer).await.map(usd).unwrap_or_default();
        Ok(PaymentReceipt {
            token: s.token,
            tx_hash: s.tx_hash,
            payer,
            amount: usd(s.amount as u64),
            currency: s.currency,
            balance,
            nonce: s.nonce,
            paid_at: s.paid_at as u64,
            expires_at: s.expires_at as u64,
            replayed: true,
        })
    }

    /// The record of a relay for `account` (the provider's account, which a rotated secret's
    /// challenges pay into): `raw` its signed bytes (empty on a batch's later calls), `call` its
    /// call in a batch.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        account: &str,
        t: &VerifiedTransfer,
        signed: &Signed,
        raw: Vec<u8>,
        call: Option<i64>,
        token: String,
        iat: u64,
        exp: u64,
    ) -> Settlement {
        let c = &t.payment.challenge;
        Settlement {
            account: account.to_string(),
            nonce: c.nonce.clone(),
            scheme: SCHEME.into(),
            network: c.network.clone(),
            asset: self.chain.token().to_checksum(),
            payer: t.payment.payer.to_checksum(),
            pay_to: t.authorization.to.to_checksum(),
            amount: t.authorization.value as i64,
            currency: c.currency.clone(),
            resource: c.resource(),
            auth_nonce: format!("0x{}", hex::encode(t.authorization.nonce)),
            valid_before: t.authorization.valid_before as i64,
            tx_hash: hex32(&signed.tx_hash),
            raw_tx: raw,
            relayer: self.chain.relayer().to_checksum(),
            relayer_nonce: signed.relayer_nonce as i64,
            state: "signed".into(),
            block_number: None,
            block_hash: None,
            gas_used: None,
            failure: None,
            token,
            paid_at: iat as i64,
            expires_at: exp as i64,
            updated_at: iat as i64,
            call_index: call,
            reorgs: 0,
        }
    }
}

/// Collect payments into batches: the first waits up to `window` for others (at most `max` in
/// all), then they are relayed together. Ends when the queue's sender (the [`Live`]) is gone.
async fn batcher(live: Weak<Live>, mut queue: mpsc::Receiver<Job>, cfg: BatchConfig) {
    while let Some(first) = queue.recv().await {
        let deadline = tokio::time::Instant::now() + cfg.window;
        let mut jobs = vec![first];
        while jobs.len() < cfg.max {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                _ => break,
            }
        }
        let Some(live) = live.upgrade() else { return };
        live.relay_batch(jobs, cfg.multicall).await;
    }
}
