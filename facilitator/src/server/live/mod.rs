//! Live mode: the facilitator settles each payment on chain with the payer's EIP-3009
//! authorization, non-custodially (payer → provider's payout address), paying the gas.
//!
//! A payment: core's off-chain checks ([`payment::verify_live`]: MAC, window, terms,
//! signature); then, under the payer's lock, the chain's: the authorization unused, the balance
//! at the latest block minus this facilitator's in-flight reservations for the payer, and a
//! simulation; then the relay is signed, recorded (state `signed`, with the token naming its
//! hash), broadcast (`submitted`) and, depending on `confirmations`, answered at once (0: the
//! amount stays reserved and the follower takes it to `confirmed` or `failed`) or after N
//! blocks. The follower also picks up what a previous process left pending after a crash and
//! re-broadcasts the same signed bytes when the node lost them: a payment is never signed twice.

pub mod reconcile;
pub mod store;

use alloy::primitives::B256;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::{LiveStore, Settlement, Update};
use vlexivo_core::env::Clock;
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment::{self, PaymentReceipt, PaymentRequest, VerifiedTransfer};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};
use vlexivo_live::chain::{hex32, parse_hash};
use vlexivo_live::{Broadcast, Chain, ChainConfig, Mined};

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

/// How live mode settles.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub chain: ChainConfig,
    /// 0: answer once the node accepted the relay; N ≥ 1: once it is N blocks deep.
    pub confirmations: u64,
    /// Longest a payment request waits for its confirmations before it is answered
    /// `facilitator_unavailable` (the record stays pending and is followed).
    pub confirm_timeout: Duration,
}

/// A relay of this facilitator not yet known to be in a block at or below the block balances
/// were read at.
#[derive(Debug, Clone)]
struct InFlight {
    tx_hash: B256,
    value: u64,
    /// The block it was mined in, once known.
    mined: Option<u64>,
}

pub struct Live {
    pub chain: Chain,
    pub store: LiveStore,
    confirmations: u64,
    confirm_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Per payer: the lock the balance check and the relay are made under, and the payer's
    /// relays in flight (their amounts are reserved until the balance read shows them).
    payers: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<Vec<InFlight>>>>>,
    payouts: Mutex<HashMap<String, Address>>,
    /// Relays this process is signing and broadcasting right now: the follower leaves them to
    /// the payment request (it would otherwise race it to broadcast the same bytes).
    in_hand: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("chain", &self.chain)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

fn usd(atomic: u64) -> String {
    Money::from_atomic(atomic, Currency::Usd).map(|m| m.to_string()).unwrap_or_else(|_| atomic.to_string())
}

fn to_u64(v: alloy::primitives::U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Live {
    pub async fn start(cfg: &LiveConfig, store: LiveStore, clock: Arc<dyn Clock>) -> Result<Arc<Self>> {
        let chain = Chain::connect(&cfg.chain).await?;
        let live = Arc::new(Self {
            chain,
            store,
            confirmations: cfg.confirmations,
            confirm_timeout: cfg.confirm_timeout,
            clock,
            payers: Mutex::new(HashMap::new()),
            payouts: Mutex::new(HashMap::new()),
            in_hand: Mutex::new(std::collections::HashSet::new()),
        });
        // What an earlier process left in flight is reserved again and followed.
        for s in live.store.pending().await? {
            let payer = Address::parse(&s.payer)?;
            let lock = live.payer(payer);
            lock.lock().await.push(InFlight {
                tx_hash: parse_hash(&s.tx_hash)?,
                value: s.amount as u64,
                mined: None,
            });
        }
        tracing::info!(
            network = %live.chain.network(),
            token = %live.chain.token(),
            relayer = %live.chain.relayer(),
            confirmations = cfg.confirmations,
            "live settlement ready"
        );
        Ok(live)
    }

    /// Follow pending records until `stop` fires: every `poll`, each pending relay is checked
    /// once (mined → confirmed or failed; unknown to the node → re-broadcast, or failed once its
    /// authorization has expired).
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

    /// One pass over the pending records.
    pub async fn follow_once(&self) -> Result<usize> {
        let pending = self.store.pending().await?;
        let n = pending.len();
        for s in pending {
            if self.in_hand.lock().contains(&s.tx_hash) {
                continue;
            }
            self.follow(&s).await?;
        }
        Ok(n)
    }

    async fn follow(&self, s: &Settlement) -> Result<()> {
        let hash = parse_hash(&s.tx_hash)?;
        let now = self.clock.now();
        match self.chain.mined(hash).await? {
            Some(m) => {
                let deep = self.confirmations.max(1);
                if !m.success || self.chain.block_number().await? + 1 >= m.block + deep {
                    self.settled(s, &m, now).await?;
                }
            }
            None => {
                if self.chain.known(hash).await? {
                    if s.state == "signed" {
                        self.store.update(&s.tx_hash, Update::Submitted, now).await?;
                    }
                } else if (s.valid_before as u64) <= now {
                    // Never mined and its authorization is void: it never can be.
                    self.failed(
                        s,
                        "dropped before it was mined; the authorization has expired".into(),
                        None,
                        now,
                    )
                    .await?;
                } else {
                    match self.chain.broadcast(&s.raw_tx).await {
                        Broadcast::Accepted => {
                            tracing::info!(tx = %s.tx_hash, "live: re-broadcast a relay the node did not have");
                            self.store.update(&s.tx_hash, Update::Submitted, now).await?;
                        }
                        Broadcast::Rejected { reason, .. } => {
                            // A nonce the relayer already used otherwise means it can never be mined.
                            if reason.to_ascii_lowercase().contains("nonce too low") {
                                self.failed(
                                    s,
                                    "replaced: the relayer's nonce was used by another transaction".into(),
                                    None,
                                    now,
                                )
                                .await?;
                            } else {
                                tracing::warn!(tx = %s.tx_hash, %reason, "live: re-broadcast refused; will retry");
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

    async fn settled(&self, s: &Settlement, m: &Mined, now: u64) -> Result<()> {
        if m.success {
            self.store
                .update(
                    &s.tx_hash,
                    Update::Confirmed {
                        block: m.block as i64,
                        block_hash: hex32(&m.block_hash),
                        gas_used: m.gas_used as i64,
                    },
                    now,
                )
                .await?;
            self.mark_mined(&s.payer, &s.tx_hash, m.block);
            tracing::info!(tx = %s.tx_hash, block = m.block, gas = m.gas_used, "live: settled");
            Ok(())
        } else {
            self.failed(s, "the transfer reverted on chain".into(), Some(m), now).await
        }
    }

    async fn failed(&self, s: &Settlement, reason: String, m: Option<&Mined>, now: u64) -> Result<()> {
        tracing::warn!(tx = %s.tx_hash, account = %s.account, %reason, "live: settlement failed");
        self.store
            .update(
                &s.tx_hash,
                Update::Failed {
                    reason,
                    block: m.map(|m| m.block as i64),
                    gas_used: m.map(|m| m.gas_used as i64),
                },
                now,
            )
            .await?;
        self.forget(&s.payer, &s.tx_hash);
        Ok(())
    }

    fn payer(&self, payer: Address) -> Arc<tokio::sync::Mutex<Vec<InFlight>>> {
        self.payers.lock().entry(payer).or_default().clone()
    }

    fn mark_mined(&self, payer: &str, tx_hash: &str, block: u64) {
        let (Ok(p), Ok(h)) = (Address::parse(payer), parse_hash(tx_hash)) else { return };
        let lock = self.payer(p);
        if let Ok(mut v) = lock.try_lock()
            && let Some(f) = v.iter_mut().find(|f| f.tx_hash == h)
        {
            f.mined = Some(block);
        }
    }

    fn forget(&self, payer: &str, tx_hash: &str) {
        let (Ok(p), Ok(h)) = (Address::parse(payer), parse_hash(tx_hash)) else { return };
        let lock = self.payer(p);
        tokio::spawn(async move { lock.lock().await.retain(|f| f.tx_hash != h) });
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

    /// What `payer` can still spend: the balance at the latest block minus its relays not yet
    /// in a block at or below it. Called under the payer's lock.
    async fn spendable(&self, payer: Address, in_flight: &mut Vec<InFlight>) -> Result<(u64, u64)> {
        let block = self.chain.block_number().await?;
        let balance = to_u64(self.chain.balance_at(payer, block).await?);
        for f in in_flight.iter_mut().filter(|f| f.mined.is_none()) {
            if let Some(m) = self.chain.mined(f.tx_hash).await? {
                // A reverted relay moved nothing: it reserves nothing either.
                f.mined = Some(if m.success { m.block } else { 0 });
                if !m.success {
                    f.value = 0;
                }
            }
        }
        in_flight.retain(|f| f.mined.is_none_or(|b| b > block));
        let reserved: u64 = in_flight.iter().map(|f| f.value).sum();
        Ok((balance, reserved))
    }

    /// The on-chain balance of `payer` less its in-flight relays, in atomic units.
    pub async fn balance(&self, payer: Address) -> Result<u64> {
        let lock = self.payer(payer);
        let mut in_flight = lock.lock().await;
        let (balance, reserved) = self.spendable(payer, &mut in_flight).await?;
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
        let lock = self.payer(payer);
        let mut in_flight = lock.lock().await;
        // The same challenge paid concurrently: the first one under the lock recorded it.
        if let Some(s) = self.store.get(&account, &nonce).await? {
            drop(in_flight);
            return self.replay(s, &t).await;
        }
        if self.chain.authorization_used(payer, t.authorization.nonce).await? {
            return Err(Error::AuthorizationUsed);
        }
        let (balance, reserved) = self.spendable(payer, &mut in_flight).await?;
        let available = balance.saturating_sub(reserved);
        if available < value {
            return Err(Error::InsufficientFunds {
                required: t.payment.price.to_string(),
                balance: usd(available),
                currency: t.payment.price.currency().code().into(),
            });
        }
        let gas = self.chain.simulate(&t).await?;
        let mut token = String::new();
        let mut claims_at = (0, 0);
        let mut held = None;
        let submitted = self
            .chain
            .submit(&t, gas, |signed| {
                let claims = payment::claims(&t.payment, &hex32(&signed.tx_hash), issuer, now);
                claims_at = (claims.iat, claims.exp);
                let issued = provider.issuer.issue(&claims);
                let record = issued.map(|tok| {
                    token = tok.clone();
                    self.in_hand.lock().insert(hex32(&signed.tx_hash));
                    held = Some(hex32(&signed.tx_hash));
                    self.record(&account, &t, &signed, tok, claims.iat, claims.exp)
                });
                async move { self.store.insert(record?).await }
            })
            .await;
        let _released = held.map(|tx| InHand { live: self, tx });
        let (signed, outcome) = submitted?;
        let tx = hex32(&signed.tx_hash);
        match outcome {
            Broadcast::Accepted => {
                self.store.update(&tx, Update::Submitted, now).await?;
                in_flight.push(InFlight { tx_hash: signed.tx_hash, value, mined: None });
            }
            Broadcast::Rejected { reason, out_of_gas } => {
                let s =
                    self.store.by_tx(&tx).await?.ok_or_else(|| Error::Internal("record vanished".into()))?;
                self.store
                    .update(
                        &s.tx_hash,
                        Update::Failed { reason: reason.clone(), block: None, gas_used: None },
                        now,
                    )
                    .await?;
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
                in_flight.push(InFlight { tx_hash: signed.tx_hash, value, mined: None });
                return Err(Error::FacilitatorUnavailable(
                    "the chain's RPC did not confirm the broadcast; the payment is followed and re-sending it tells its fate"
                        .into(),
                ));
            }
        }
        drop(in_flight);
        let receipt = PaymentReceipt {
            token,
            tx_hash: tx.clone(),
            payer: payer.to_checksum(),
            amount: t.payment.price.to_string(),
            currency: t.payment.price.currency().code().into(),
            balance: usd(available - value),
            nonce,
            paid_at: claims_at.0,
            expires_at: claims_at.1,
            replayed: false,
        };
        if self.confirmations == 0 {
            return Ok(receipt);
        }
        self.await_confirmations(&tx, signed.tx_hash).await?;
        Ok(receipt)
    }

    /// Wait until the relay is `confirmations` deep: a revert is `settlement_failed` (recorded).
    async fn await_confirmations(&self, tx: &str, hash: B256) -> Result<()> {
        match self.chain.wait(hash, self.confirmations, self.confirm_timeout).await? {
            Some(m) => {
                let s =
                    self.store.by_tx(tx).await?.ok_or_else(|| Error::Internal("record vanished".into()))?;
                let now = self.clock.now();
                self.settled(&s, &m, now).await?;
                if m.success {
                    Ok(())
                } else {
                    Err(Error::SettlementFailed("the transfer reverted on chain".into()))
                }
            }
            None => Err(Error::FacilitatorUnavailable(format!(
                "the settlement {tx} is not {} blocks deep yet; re-sending the payment tells its fate",
                self.confirmations
            ))),
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
            self.await_confirmations(&s.tx_hash, parse_hash(&s.tx_hash)?).await?;
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
    /// challenges pay into).
    fn record(
        &self,
        account: &str,
        t: &VerifiedTransfer,
        signed: &vlexivo_live::Signed,
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
            raw_tx: signed.raw.clone(),
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
        }
    }
}
