//! The sandbox ledger: double entry, group commit, a hash chain over every transaction, on
//! SQLite (the embedded default, one facilitator process) or PostgreSQL (several facilitator
//! processes on one database).
//!
//! Every write (onboarding, top-up, payment) is an [`Op`] sent through one [`Ledger`] handle to
//! the engine's writer, which takes whatever ops are queued (up to [`MAX_BATCH`]) and runs them
//! in one database transaction (group commit). The rules — who may pay, idempotent payments,
//! faucet caps, what each transaction writes — live once, in [`rules`], over a [`rules::Book`]
//! each engine implements; each op checks everything before its first write, so a refusal
//! writes nothing.
//!
//! Hash chain: `tx_hash = "0x" + hex(SHA-256(prev_tx_hash ‖ record))` where `record` is the
//! transaction's canonical JSON ([`Record`]), stored verbatim; a chain starts at
//! [`GENESIS_HASH`]. SQLite has one chain. On PostgreSQL every writer appends to a chain of its
//! own, a *stream*, which it holds with a session advisory lock for as long as its connection
//! lives (see [`postgres`] for why). [`verify`] recomputes every chain and checks every entry,
//! payment row and balance against the records, on both engines.

pub mod postgres;
pub mod rules;
pub mod sqlite;
pub mod verify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};
use vlexivo_core::keys::Mode;
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment::{PaymentReceipt, VerifiedPayment};
use vlexivo_core::token::TokenIssuer;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

pub use sqlite::Durability;
pub use verify::{VerifyError, VerifyOptions, VerifySummary};

/// Most ops per transaction. Large enough to amortize the commit under load, small enough that
/// one batch's latency stays in the low milliseconds.
pub const MAX_BATCH: usize = 512;
/// Queue depth in front of the writer: beyond it, handlers wait (backpressure).
const QUEUE: usize = 8192;
/// `prev_hash` of the first transaction of a chain.
pub const GENESIS_HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";
pub const FAUCET: &str = "faucet";

pub fn wallet_id(a: &Address) -> String {
    format!("wallet:{}", a.to_checksum())
}

pub fn provider_id(account: &str) -> String {
    format!("provider:{account}")
}

pub use vlexivo_core::token::TokenAlg;

/// A provider as the payment path needs it (cached in memory, keys derived at onboarding).
pub struct Provider {
    /// The account payments go to.
    pub account: String,
    /// The account id its secret derives, which challenges name: `account` itself, or for a
    /// rotated secret another id that pays into `account`.
    pub key_account: String,
    /// When this secret stops being accepted (after a rotation's overlap window).
    pub retire_at: Option<u64>,
    /// On the row a rotation creates: when the account's other secrets stop being accepted.
    pub retire_others_at: Option<u64>,
    pub mode: Mode,
    pub token_alg: TokenAlg,
    pub name: Option<String>,
    pub challenge_mac: [u8; 32],
    pub token_hs256: [u8; 32],
    pub auth_digest: [u8; 32],
    pub created_at: u64,
    /// `challenge_mac` and `token_hs256` as stored: sealed under the master key, or plain
    /// without one (`server::at_rest`).
    pub stored_keys: [Vec<u8>; 2],
    /// HS256 under `token_hs256`, or the facilitator's shared EdDSA issuer.
    pub issuer: Arc<TokenIssuer>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("token_alg", &self.token_alg)
            .finish_non_exhaustive()
    }
}

/// The canonical record of a transaction: what the hash chain covers. Field order is fixed by
/// the struct; serde_json's output for it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The chain (PostgreSQL stream) the transaction belongs to; absent on SQLite's one chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<i64>,
    pub seq: i64,
    pub kind: String,
    pub at: u64,
    pub from: String,
    pub to: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

pub fn chain_hash(prev: &str, record: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(record.as_bytes());
    format!("0x{}", hex::encode(h.finalize()))
}

/// The end of one chain: its last sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    pub fn genesis() -> Self {
        Head { seq: 0, hash: GENESIS_HASH.to_string() }
    }
}

// ---------------------------------------------------------------------------------------------
// Ops

#[derive(Debug)]
pub struct TopUpDone {
    pub address: String,
    pub amount: u64,
    pub balance: u64,
    pub tx_hash: String,
}

#[derive(Debug)]
pub struct PayDone {
    pub receipt: PaymentReceipt,
    pub amount: u64,
}

pub struct PayOp {
    pub provider: Arc<Provider>,
    pub verified: VerifiedPayment,
    pub now: u64,
}

pub(crate) enum Op {
    CreateProvider(Arc<Provider>, oneshot::Sender<Result<()>>),
    TopUp { address: Address, amount: u64, now: u64, reply: oneshot::Sender<Result<TopUpDone>> },
    Pay(Box<PayOp>, oneshot::Sender<Result<PayDone>>),
    Stop,
}

pub(crate) enum Answer {
    Provider(oneshot::Sender<Result<()>>, Result<()>),
    TopUp(oneshot::Sender<Result<TopUpDone>>, Result<TopUpDone>),
    Pay(oneshot::Sender<Result<PayDone>>, Result<PayDone>),
}

impl Answer {
    pub fn fail(self, e: &Error) -> Self {
        match self {
            Answer::Provider(s, _) => Answer::Provider(s, Err(e.clone())),
            Answer::TopUp(s, _) => Answer::TopUp(s, Err(e.clone())),
            Answer::Pay(s, _) => Answer::Pay(s, Err(e.clone())),
        }
    }

    /// Replace a success by `e` (its writes were rolled back); keep refusals as they are.
    pub fn fail_if_ok(self, e: &Error) -> Self {
        let ok = match &self {
            Answer::Provider(_, r) => r.is_ok(),
            Answer::TopUp(_, r) => r.is_ok(),
            Answer::Pay(_, r) => r.is_ok(),
        };
        if ok { self.fail(e) } else { self }
    }

    pub fn send(self) {
        // A receiver that went away (client disconnected) is fine: the op is committed anyway.
        match self {
            Answer::Provider(s, r) => drop(s.send(r)),
            Answer::TopUp(s, r) => drop(s.send(r)),
            Answer::Pay(s, r) => drop(s.send(r)),
        }
    }
}

/// Answer every op with `e` (nothing of theirs was written); returns true if one was `Stop`.
pub(crate) fn refuse_all(ops: &mut Vec<Op>, e: &Error) -> bool {
    let mut stop = false;
    for op in ops.drain(..) {
        match op {
            Op::CreateProvider(_, s) => drop(s.send(Err(e.clone()))),
            Op::TopUp { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Pay(_, s) => drop(s.send(Err(e.clone()))),
            Op::Stop => stop = true,
        }
    }
    stop
}

pub(crate) fn usd(atomic: u64) -> String {
    Money::from_atomic(atomic, Currency::Usd).map(|m| m.to_string()).unwrap_or_else(|_| atomic.to_string())
}

/// Cloneable handle to the ledger's writer (a SQLite committer or a PostgreSQL task).
#[derive(Clone, Debug)]
pub struct Ledger {
    sink: Sink,
    fenced: Arc<AtomicBool>,
}

/// Where a [`Ledger`] handle's ops go.
#[derive(Clone, Debug)]
enum Sink {
    /// A queue a writer task reads (PostgreSQL).
    Queue(mpsc::Sender<Op>),
    /// SQLite: queued, and committed by the submitting task itself when no other commit runs
    /// ([`sqlite::Committer`]).
    Inline(Arc<sqlite::Committer>),
}

pub(crate) fn writer_gone() -> Error {
    Error::Internal("ledger writer stopped".into())
}

impl Ledger {
    /// A handle and the queue its writer reads.
    pub(crate) fn channel() -> (Ledger, mpsc::Receiver<Op>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let fenced = Arc::new(AtomicBool::new(false));
        (Ledger { sink: Sink::Queue(tx), fenced: fenced.clone() }, rx, fenced)
    }

    /// A handle whose ops the submitting tasks commit (SQLite).
    pub(crate) fn inline(committer: Arc<sqlite::Committer>, fenced: Arc<AtomicBool>) -> Ledger {
        Ledger { sink: Sink::Inline(committer), fenced }
    }

    /// True once the writer refuses every write until the process restarts (SQLite after a
    /// disk I/O error on commit; health checks report it).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// False once the writer has gone (stopped, or failed to start over).
    pub fn is_running(&self) -> bool {
        match &self.sink {
            Sink::Queue(tx) => !tx.is_closed(),
            Sink::Inline(c) => c.is_running(),
        }
    }

    async fn submit(&self, op: Op) -> Result<()> {
        match &self.sink {
            Sink::Queue(tx) => tx.send(op).await.map_err(|_| writer_gone()),
            Sink::Inline(c) => c.submit(op),
        }
    }

    pub async fn create_provider(&self, p: Arc<Provider>) -> Result<()> {
        let (s, r) = oneshot::channel();
        self.submit(Op::CreateProvider(p, s)).await?;
        r.await.map_err(|_| writer_gone())?
    }

    pub async fn top_up(&self, address: Address, amount: u64, now: u64) -> Result<TopUpDone> {
        let (reply, r) = oneshot::channel();
        self.submit(Op::TopUp { address, amount, now, reply }).await?;
        r.await.map_err(|_| writer_gone())?
    }

    pub async fn pay(&self, op: PayOp) -> Result<PayDone> {
        let (s, r) = oneshot::channel();
        self.submit(Op::Pay(Box::new(op), s)).await?;
        r.await.map_err(|_| writer_gone())?
    }

    /// Ask the writer to finish what is queued and stop.
    pub async fn stop(&self) {
        let _ = self.submit(Op::Stop).await;
    }
}
