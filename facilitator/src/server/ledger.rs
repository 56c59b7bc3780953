//! The sandbox ledger: double entry in SQLite, one writer thread, group commit, and a hash chain
//! over every transaction.
//!
//! Every write (onboarding, top-up, payment) is an [`Op`] sent to one dedicated thread that owns
//! the read-write connection. It takes whatever ops are queued (up to [`MAX_BATCH`]) and runs
//! them in one `BEGIN IMMEDIATE` transaction (group commit). Each op checks everything before
//! its first write, so a refusal (insufficient funds, faucet cap, conflict) writes nothing; a
//! failed write rolls the whole batch back and fails its ops. Concurrency questions (the same
//! challenge paid twice, 100 payments racing for a balance of 60) are answered by plain
//! sequential code.
//!
//! Durability: the writer commits each batch with SQLite's own `synchronous=FULL` (the commit
//! fsyncs the WAL), and answers the batch's ops only after its COMMIT returned: an acknowledged
//! payment survives `kill -9`, an OS crash and power loss. Ops that arrive during one commit's
//! fsync queue up and share the next one. If a commit fails with an I/O error (a failed fsync
//! above all), what is on disk is unknown: that batch's successes are answered as in doubt (a
//! re-sent payment is answered idempotently once the facilitator restarts) and the ledger is
//! fenced: no later batch is written or acknowledged until the process restarts and SQLite
//! recovers from what the disk really holds. (After a failed fsync Linux may drop the error and
//! the dirty pages, so a later fsync that succeeds proves nothing about the earlier writes.)
//!
//! Hash chain: `tx_hash = "0x" + hex(SHA-256(prev_tx_hash ‖ record))` where `record` is the
//! transaction's canonical JSON ([`Record`]), stored verbatim; the first transaction's
//! `prev_tx_hash` is [`GENESIS_HASH`]. [`verify_ledger`] recomputes the chain and checks every
//! entry, payment row and balance against the records.

use super::db::db_err;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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

/// Most ops per SQLite transaction. Large enough to amortize the fsync under load, small enough
/// that one batch's latency stays in the low milliseconds.
pub const MAX_BATCH: usize = 512;
/// Queue depth in front of the writer: beyond it, handlers wait (backpressure).
const QUEUE: usize = 8192;
/// `prev_hash` of the first transaction.
pub const GENESIS_HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";
pub const FAUCET: &str = "faucet";

pub fn wallet_id(a: &Address) -> String {
    format!("wallet:{}", a.to_checksum())
}

pub fn provider_id(account: &str) -> String {
    format!("provider:{account}")
}

/// The proof-token algorithm a provider chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlg {
    Hs256,
    EdDsa,
}

impl TokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlg::Hs256 => "HS256",
            TokenAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("HS256") {
            Ok(TokenAlg::Hs256)
        } else if s.eq_ignore_ascii_case("EdDSA") {
            Ok(TokenAlg::EdDsa)
        } else {
            Err(Error::TokenAlgorithm(s.chars().take(24).collect()))
        }
    }
}

/// A provider as the payment path needs it (cached in memory, keys derived at onboarding).
pub struct Provider {
    pub account: String,
    pub mode: Mode,
    pub token_alg: TokenAlg,
    pub name: Option<String>,
    pub challenge_mac: [u8; 32],
    pub token_hs256: [u8; 32],
    pub auth_digest: [u8; 32],
    pub created_at: u64,
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

enum Answer {
    Provider(oneshot::Sender<Result<()>>, Result<()>),
    TopUp(oneshot::Sender<Result<TopUpDone>>, Result<TopUpDone>),
    Pay(oneshot::Sender<Result<PayDone>>, Result<PayDone>),
}

impl Answer {
    fn fail(self, e: &Error) -> Self {
        match self {
            Answer::Provider(s, _) => Answer::Provider(s, Err(e.clone())),
            Answer::TopUp(s, _) => Answer::TopUp(s, Err(e.clone())),
            Answer::Pay(s, _) => Answer::Pay(s, Err(e.clone())),
        }
    }

    /// Replace a success by `e` (its writes were rolled back); keep refusals as they are.
    fn fail_if_ok(self, e: &Error) -> Self {
        let ok = match &self {
            Answer::Provider(_, r) => r.is_ok(),
            Answer::TopUp(_, r) => r.is_ok(),
            Answer::Pay(_, r) => r.is_ok(),
        };
        if ok { self.fail(e) } else { self }
    }

    fn send(self) {
        // A receiver that went away (client disconnected) is fine: the op is committed anyway.
        match self {
            Answer::Provider(s, r) => drop(s.send(r)),
            Answer::TopUp(s, r) => drop(s.send(r)),
            Answer::Pay(s, r) => drop(s.send(r)),
        }
    }
}

/// Cloneable handle to the writer thread.
#[derive(Clone, Debug)]
pub struct Ledger {
    tx: mpsc::Sender<Op>,
    fenced: Arc<AtomicBool>,
}

fn writer_gone() -> Error {
    Error::Internal("ledger writer stopped".into())
}

/// The answer to every write once the ledger is fenced.
fn fenced_error() -> Error {
    Error::Internal(
        "the ledger stopped writing after a disk I/O error; the facilitator must be restarted".into(),
    )
}

/// WAL size at which the checkpointer runs a passive checkpoint (the writer never waits for it).
const CHECKPOINT_WAL_BYTES: u64 = 4 << 20;
/// Fallback: past this many WAL pages the writer checkpoints itself (only if the passive
/// checkpoints cannot keep up).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16384;

impl Ledger {
    /// Start the writer (and its checkpointer) on their own threads. `conn` must be the database
    /// at `db_path`, opened by [`super::db::open_rw`]. `faucet_cap` is the most a wallet may ever
    /// receive from the faucet; `issuer_url` goes into tokens as `iss`.
    pub fn start(
        conn: Connection,
        db_path: &std::path::Path,
        faucet_cap: u64,
        issuer_url: String,
        durability: Durability,
    ) -> Result<(Ledger, std::thread::JoinHandle<()>)> {
        conn.pragma_update(None, "synchronous", durability.synchronous()).map_err(db_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES).map_err(db_err)?;
        let head = load_head(&conn)?;
        let checkpointer = Checkpointer::new(db_path)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        // One pending tick is enough: the checkpointer looks at the WAL's size when it wakes.
        let (tick, ticks) = std::sync::mpsc::sync_channel(1);
        let fenced = Arc::new(AtomicBool::new(false));
        let mut w =
            Writer { conn, head, faucet_cap, issuer_url, poisoned: false, tick, fenced: fenced.clone() };
        let ckpt_handle = std::thread::Builder::new()
            .name("vlexivo-checkpoint".into())
            .spawn(move || checkpointer.run(ticks))
            .map_err(|e| Error::Internal(format!("cannot start the checkpoint thread: {e}")))?;
        let handle = std::thread::Builder::new()
            .name("vlexivo-ledger".into())
            .spawn(move || {
                w.run(rx);
                // Dropping the writer closes the tick channel: the checkpointer stops.
                drop(w);
                let _ = ckpt_handle.join();
            })
            .map_err(|e| Error::Internal(format!("cannot start the ledger thread: {e}")))?;
        Ok((Ledger { tx, fenced }, handle))
    }

    /// True once a commit failed with an I/O error: every later write is refused until the
    /// process restarts (health checks report it).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub async fn create_provider(&self, p: Arc<Provider>) -> Result<()> {
        let (s, r) = oneshot::channel();
        self.tx.send(Op::CreateProvider(p, s)).await.map_err(|_| writer_gone())?;
        r.await.map_err(|_| writer_gone())?
    }

    pub async fn top_up(&self, address: Address, amount: u64, now: u64) -> Result<TopUpDone> {
        let (reply, r) = oneshot::channel();
        self.tx.send(Op::TopUp { address, amount, now, reply }).await.map_err(|_| writer_gone())?;
        r.await.map_err(|_| writer_gone())?
    }

    pub async fn pay(&self, op: PayOp) -> Result<PayDone> {
        let (s, r) = oneshot::channel();
        self.tx.send(Op::Pay(Box::new(op), s)).await.map_err(|_| writer_gone())?;
        r.await.map_err(|_| writer_gone())?
    }

    /// Ask the writer to finish what is queued and stop.
    pub async fn stop(&self) {
        let _ = self.tx.send(Op::Stop).await;
    }
}

#[derive(Clone)]
struct Head {
    seq: i64,
    hash: String,
}

fn load_head(conn: &Connection) -> Result<Head> {
    let row: Option<(i64, String)> = conn
        .query_row("SELECT seq, tx_hash FROM transactions ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db_err)?;
    Ok(match row {
        Some((seq, hash)) => Head { seq, hash },
        None => Head { seq: 0, hash: GENESIS_HASH.to_string() },
    })
}

/// When an answer may leave the facilitator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the batch's commit fsynced the WAL (`synchronous=FULL`): an acknowledged payment
    /// survives `kill -9`, an OS crash and power loss. Costs one fsync of latency per batch.
    #[default]
    Full,
    /// After the commit reached the OS (`synchronous=NORMAL`): survives `kill -9` (the test
    /// suite checks it), but an OS crash or power loss may lose the last acknowledged payments.
    Normal,
}

impl Durability {
    fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Keeps the WAL short with passive checkpoints on its own connection, so the writer's commits
/// never wait for one.
struct Checkpointer {
    wal: std::path::PathBuf,
    conn: Connection,
}

impl Checkpointer {
    fn new(db_path: &std::path::Path) -> Result<Self> {
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let conn = Connection::open(db_path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
        // Checkpoints sync the WAL before and the database after copying.
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        Ok(Self { wal: wal.into(), conn })
    }

    fn run(self, ticks: std::sync::mpsc::Receiver<()>) {
        while ticks.recv().is_ok() {
            let big = std::fs::metadata(&self.wal).map(|m| m.len() >= CHECKPOINT_WAL_BYTES).unwrap_or(false);
            if big {
                if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "ledger: checkpoint failed");
                }
            }
        }
    }
}

struct Writer {
    conn: Connection,
    head: Head,
    faucet_cap: u64,
    issuer_url: String,
    /// A write failed in the current batch: it must be rolled back as a whole.
    poisoned: bool,
    /// Wakes the checkpointer after each commit.
    tick: std::sync::mpsc::SyncSender<()>,
    /// Set once a commit failed with an I/O error; never cleared.
    fenced: Arc<AtomicBool>,
}

/// Answer every op with `e` (nothing of theirs was written); returns true if one was `Stop`.
fn refuse_all(ops: &mut Vec<Op>, e: &Error) -> bool {
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

/// An I/O error from SQLite's OS layer (`SQLITE_IOERR_*`: a failed write, fsync, …).
fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure)
}

fn usd(atomic: u64) -> String {
    Money::from_atomic(atomic, Currency::Usd).map(|m| m.to_string()).unwrap_or_else(|_| atomic.to_string())
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = rx.blocking_recv() else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let stop = self.run_batch(&mut batch);
            if stop {
                // Answer whatever raced in behind the stop, then quit.
                rx.close();
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                self.run_batch(&mut batch);
                return;
            }
        }
    }

    /// Run a batch in one transaction and answer its ops once the commit returned; returns true
    /// if it contained `Stop`.
    fn run_batch(&mut self, batch: &mut Vec<Op>) -> bool {
        if batch.is_empty() {
            return false;
        }
        if self.fenced.load(Ordering::Acquire) {
            return refuse_all(batch, &fenced_error());
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let err = db_err(e);
            tracing::error!(error = %err, "ledger: cannot begin a transaction");
            return refuse_all(batch, &err);
        }
        let mut stop = false;
        let mut answers = Vec::with_capacity(batch.len());
        let batch_start_head = self.head.clone();
        self.poisoned = false;
        let mut ops = batch.drain(..);
        for op in ops.by_ref() {
            // Ops check everything before their first write, so a refusal (insufficient
            // funds, cap, replay) writes nothing; only a failed write poisons the batch.
            let answer = match op {
                Op::CreateProvider(p, s) => Answer::Provider(s, self.create_provider(&p)),
                Op::TopUp { address, amount, now, reply } => {
                    Answer::TopUp(reply, self.top_up(&address, amount, now))
                }
                Op::Pay(p, s) => Answer::Pay(s, self.pay(&p)),
                Op::Stop => {
                    stop = true;
                    continue;
                }
            };
            answers.push(answer);
            if self.poisoned {
                break;
            }
        }
        // Ops not reached after a failed write: they wrote nothing.
        let mut rest: Vec<Op> = ops.collect();
        let committed = if self.poisoned { None } else { Some(self.conn.execute_batch("COMMIT")) };
        match committed {
            Some(Ok(())) => {
                answers.into_iter().for_each(Answer::send);
                let _ = self.tick.try_send(());
            }
            Some(Err(e)) if is_io_error(&e) => {
                // The commit record may or may not be on disk, and a later fsync that succeeds
                // would not prove it: fence (see the module docs).
                self.fenced.store(true, Ordering::Release);
                tracing::error!(error = %e, "ledger: a commit failed with an I/O error; no later write will be acknowledged: restart the facilitator");
                let _ = self.conn.execute_batch("ROLLBACK");
                let in_doubt = Error::Internal(
                    "the ledger could not make this write durable (disk I/O error); whether it was \
                     recorded is known once the facilitator has restarted: the same signed payment \
                     sent again is then answered idempotently"
                        .into(),
                );
                answers.into_iter().for_each(|a| a.fail_if_ok(&in_doubt).send());
            }
            failed => {
                let err = match failed {
                    Some(Err(e)) => db_err(e),
                    _ => Error::Internal("a ledger write failed".into()),
                };
                tracing::error!(error = %err, "ledger: the batch is rolled back");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.head = load_head(&self.conn).unwrap_or(batch_start_head);
                let opaque = Error::Internal("the ledger could not commit; nothing was charged".into());
                answers.into_iter().for_each(|a| a.fail_if_ok(&opaque).send());
                stop |= refuse_all(&mut rest, &opaque);
            }
        }
        stop
    }

    /// Record a failed write: the batch will be rolled back.
    fn written<T>(&mut self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| {
            self.poisoned = true;
            db_err(e)
        })
    }

    fn create_provider(&mut self, p: &Provider) -> Result<()> {
        let r = (|| {
            self.conn
                .prepare_cached(
                    "INSERT INTO providers (account, mode, token_alg, name, challenge_mac, token_hs256, \
                     auth_digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    p.account,
                    p.mode.as_str(),
                    p.token_alg.as_str(),
                    p.name,
                    &p.challenge_mac[..],
                    &p.token_hs256[..],
                    &p.auth_digest[..],
                    p.created_at as i64
                ])?;
            self.conn
                .prepare_cached("INSERT INTO accounts (id, kind) VALUES (?1, 'provider')")?
                .execute([provider_id(&p.account)])
        })();
        self.written(r).map(drop)
    }

    fn balance(&self, id: &str) -> Result<(i64, i64)> {
        self.conn
            .prepare_cached("SELECT balance, topped_up FROM accounts WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map(|o| o.unwrap_or((0, 0)))
            .map_err(db_err)
    }

    /// The next link of the chain for `rec` (not written yet): (record JSON, tx_hash).
    fn link(&self, rec: &mut Record) -> Result<(String, String)> {
        rec.seq = self.head.seq + 1;
        let record = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        let hash = chain_hash(&self.head.hash, &record);
        Ok((record, hash))
    }

    /// Write the transaction and its two entries (`from` −amount, `to` +amount).
    fn write_tx(&self, rec: &Record, record: &str, hash: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO transactions (seq, kind, created_at, record, prev_hash, tx_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![rec.seq, rec.kind, rec.at as i64, record, self.head.hash, hash])?;
        let mut entry =
            self.conn.prepare_cached("INSERT INTO entries (tx_seq, account, amount) VALUES (?1, ?2, ?3)")?;
        entry.execute(params![rec.seq, rec.from, -rec.amount])?;
        entry.execute(params![rec.seq, rec.to, rec.amount])?;
        Ok(())
    }

    fn top_up(&mut self, address: &Address, amount: u64, now: u64) -> Result<TopUpDone> {
        let id = wallet_id(address);
        let (balance, topped_up) = self.balance(&id)?;
        if topped_up as u64 + amount > self.faucet_cap {
            return Err(Error::TopUpRefused(format!(
                "sandbox top-ups are capped at {} usd per wallet; this wallet already received {}",
                usd(self.faucet_cap),
                usd(topped_up as u64)
            )));
        }
        let mut rec = Record {
            seq: 0,
            kind: "topup".into(),
            at: now,
            from: FAUCET.into(),
            to: id.clone(),
            amount: amount as i64,
            currency: "usd".into(),
            nonce: None,
            resource: None,
        };
        let (record, hash) = self.link(&mut rec)?;
        let r = (|| {
            self.write_tx(&rec, &record, &hash)?;
            self.conn
                .prepare_cached("UPDATE accounts SET balance = balance - ?1 WHERE id = 'faucet'")?
                .execute([amount as i64])?;
            self.conn
                .prepare_cached(
                    "INSERT INTO accounts (id, kind, balance, topped_up) VALUES (?1, 'wallet', ?2, ?2) \
                     ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance, \
                     topped_up = topped_up + excluded.topped_up",
                )?
                .execute(params![id, amount as i64])
        })();
        self.written(r)?;
        self.head = Head { seq: rec.seq, hash: hash.clone() };
        Ok(TopUpDone {
            address: address.to_checksum(),
            amount,
            balance: balance as u64 + amount,
            tx_hash: hash,
        })
    }

    fn pay(&mut self, op: &PayOp) -> Result<PayDone> {
        let v = &op.verified;
        let account = &op.provider.account;
        let nonce = &v.challenge.nonce;
        let payer = v.payer.to_checksum();
        let payer_id = format!("wallet:{payer}");
        let amount = v.price.to_atomic();
        let currency = v.price.currency();

        type Stored = (String, String, i64, String, i64, i64);
        let existing: Option<Stored> = self
            .conn
            .prepare_cached(
                "SELECT payer, tx_hash, amount, token, paid_at, expires_at FROM payments \
                 WHERE account = ?1 AND nonce = ?2",
            )
            .and_then(|mut s| {
                s.query_row([account, nonce], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let (balance, _) = self.balance(&payer_id)?;
        if let Some((stored_payer, tx_hash, amt, token, paid_at, expires_at)) = existing {
            // Paid already: the same receipt to the same payer; never the token to another one.
            if stored_payer != payer {
                return Err(Error::PaymentConflict);
            }
            return Ok(PayDone {
                receipt: PaymentReceipt {
                    token,
                    tx_hash,
                    payer,
                    amount: usd(amt as u64),
                    currency: currency.code().into(),
                    balance: usd(balance as u64),
                    nonce: nonce.clone(),
                    paid_at: paid_at as u64,
                    expires_at: expires_at as u64,
                    replayed: true,
                },
                amount: 0,
            });
        }
        if (balance as u64) < amount {
            return Err(Error::InsufficientFunds {
                required: v.price.to_string(),
                balance: usd(balance as u64),
                currency: currency.code().into(),
            });
        }
        let resource = v.challenge.resource();
        let mut rec = Record {
            seq: 0,
            kind: "payment".into(),
            at: op.now,
            from: payer_id,
            to: provider_id(account),
            amount: amount as i64,
            currency: currency.code().into(),
            nonce: Some(nonce.clone()),
            resource: Some(resource),
        };
        let (record, tx_hash) = self.link(&mut rec)?;
        // The token names the tx hash, so it is signed here, before the first write.
        let claims = vlexivo_core::payment::claims(v, &tx_hash, &self.issuer_url, op.now);
        let token = op.provider.issuer.issue(&claims)?;
        let r = (|| {
            self.write_tx(&rec, &record, &tx_hash)?;
            self.conn
                .prepare_cached("UPDATE accounts SET balance = balance - ?1 WHERE id = ?2")?
                .execute(params![amount as i64, rec.from])?;
            let credited = self
                .conn
                .prepare_cached("UPDATE accounts SET balance = balance + ?1 WHERE id = ?2")?
                .execute(params![amount as i64, rec.to])?;
            if credited != 1 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO payments (account, nonce, tx_seq, tx_hash, payer, amount, currency, \
                     resource, token, paid_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    account,
                    nonce,
                    rec.seq,
                    tx_hash,
                    payer,
                    amount as i64,
                    currency.code(),
                    rec.resource,
                    token,
                    claims.iat as i64,
                    claims.exp as i64
                ])
        })();
        self.written(r)?;
        self.head = Head { seq: rec.seq, hash: tx_hash.clone() };
        Ok(PayDone {
            receipt: PaymentReceipt {
                token,
                tx_hash,
                payer,
                amount: v.price.to_string(),
                currency: currency.code().into(),
                balance: usd(balance as u64 - amount),
                nonce: nonce.clone(),
                paid_at: claims.iat,
                expires_at: claims.exp,
                replayed: false,
            },
            amount,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Verification (`vlexivo ledger verify`)

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifySummary {
    pub transactions: u64,
    pub payments: u64,
    pub topups: u64,
    pub accounts: u64,
    /// Sum of all payments and of all top-ups, atomic units.
    pub paid_atomic: u64,
    pub topped_up_atomic: u64,
    pub head: String,
}

#[derive(Debug, Clone)]
pub enum VerifyError {
    /// The database could not be read.
    Db(Error),
    /// The first inconsistency found; `seq` names the transaction when there is one.
    Bad { seq: Option<i64>, what: String },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Db(e) => write!(f, "{e}"),
            VerifyError::Bad { seq: Some(s), what } => write!(f, "transaction {s}: {what}"),
            VerifyError::Bad { seq: None, what } => f.write_str(what),
        }
    }
}

impl std::error::Error for VerifyError {}

fn bad(seq: impl Into<Option<i64>>, what: impl Into<String>) -> VerifyError {
    VerifyError::Bad { seq: seq.into(), what: what.into() }
}

/// Recompute the hash chain, check double entry and balances. Stops at the first bad record.
pub fn verify_ledger(conn: &Connection) -> std::result::Result<VerifySummary, VerifyError> {
    let dbe = |e: rusqlite::Error| VerifyError::Db(db_err(e));
    // One read transaction: a consistent snapshot even while a facilitator is writing.
    conn.execute_batch("BEGIN").map_err(dbe)?;
    let out = verify_inner(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn verify_inner(conn: &Connection) -> std::result::Result<VerifySummary, VerifyError> {
    let dbe = |e: rusqlite::Error| VerifyError::Db(db_err(e));
    let mut sum = VerifySummary { head: GENESIS_HASH.into(), ..Default::default() };
    let mut balances: HashMap<String, i64> = HashMap::new();
    let mut topped: HashMap<String, i64> = HashMap::new();
    let mut entries_q = conn.prepare("SELECT account, amount FROM entries WHERE tx_seq = ?1").map_err(dbe)?;
    let mut pay_q = conn
        .prepare(
            "SELECT account, nonce, tx_hash, payer, amount, currency, resource, paid_at \
             FROM payments WHERE tx_seq = ?1",
        )
        .map_err(dbe)?;
    let mut txs = conn
        .prepare("SELECT seq, kind, created_at, record, prev_hash, tx_hash FROM transactions ORDER BY seq")
        .map_err(dbe)?;
    let mut rows = txs.query([]).map_err(dbe)?;
    let mut expected_seq = 1i64;
    while let Some(r) = rows.next().map_err(dbe)? {
        let seq: i64 = r.get(0).map_err(dbe)?;
        let kind: String = r.get(1).map_err(dbe)?;
        let created_at: i64 = r.get(2).map_err(dbe)?;
        let record: String = r.get(3).map_err(dbe)?;
        let prev: String = r.get(4).map_err(dbe)?;
        let hash: String = r.get(5).map_err(dbe)?;
        if seq != expected_seq {
            return Err(bad(expected_seq, format!("missing (next stored transaction is {seq})")));
        }
        expected_seq += 1;
        if prev != sum.head {
            return Err(bad(seq, "prev_hash does not match the previous transaction's hash"));
        }
        if chain_hash(&prev, &record) != hash {
            return Err(bad(seq, "tx_hash does not match its record"));
        }
        let rec: Record =
            serde_json::from_str(&record).map_err(|_| bad(seq, "record is not canonical JSON"))?;
        if serde_json::to_string(&rec).ok().as_deref() != Some(record.as_str()) {
            return Err(bad(seq, "record is not canonical JSON"));
        }
        if rec.seq != seq || rec.kind != kind || rec.at as i64 != created_at {
            return Err(bad(seq, "row does not match its record (seq, kind or time)"));
        }
        if rec.amount <= 0 {
            return Err(bad(seq, "amount is not positive"));
        }
        // Double entry: exactly from −amount and to +amount, summing to zero.
        let mut entries: BTreeMap<String, i64> = BTreeMap::new();
        let mut total = 0i64;
        let mut n = 0;
        let mut er = entries_q.query([seq]).map_err(dbe)?;
        while let Some(e) = er.next().map_err(dbe)? {
            let (acct, amt): (String, i64) = (e.get(0).map_err(dbe)?, e.get(1).map_err(dbe)?);
            total = total.checked_add(amt).ok_or_else(|| bad(seq, "entry overflow"))?;
            entries.insert(acct, amt);
            n += 1;
        }
        if total != 0 {
            return Err(bad(seq, format!("entries sum to {total}, not zero")));
        }
        if n != 2 || entries.get(&rec.from) != Some(&-rec.amount) || entries.get(&rec.to) != Some(&rec.amount)
        {
            return Err(bad(seq, "entries do not match the record"));
        }
        match rec.kind.as_str() {
            "topup" => {
                if rec.from != FAUCET || !rec.to.starts_with("wallet:") {
                    return Err(bad(seq, "top-up is not from the faucet to a wallet"));
                }
                *topped.entry(rec.to.clone()).or_default() += rec.amount;
                sum.topups += 1;
                sum.topped_up_atomic += rec.amount as u64;
            }
            "payment" => {
                type Row = (String, String, String, String, i64, String, String, i64);
                let p: Option<Row> = pay_q
                    .query_row([seq], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .optional()
                    .map_err(dbe)?;
                let Some((account, nonce, txh, payer, amount, currency, resource, _paid_at)) = p else {
                    return Err(bad(seq, "payment row is missing"));
                };
                let matches = provider_id(&account) == rec.to
                    && format!("wallet:{payer}") == rec.from
                    && Some(&nonce) == rec.nonce.as_ref()
                    && txh == hash
                    && amount == rec.amount
                    && currency == rec.currency
                    && Some(&resource) == rec.resource.as_ref();
                if !matches {
                    return Err(bad(seq, "payment row does not match its record"));
                }
                sum.payments += 1;
                sum.paid_atomic += rec.amount as u64;
            }
            other => return Err(bad(seq, format!("unknown kind {other:?}"))),
        }
        for (acct, amt) in entries {
            *balances.entry(acct).or_default() += amt;
        }
        sum.transactions += 1;
        sum.head = hash;
    }
    drop(rows);

    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(dbe);
    let n_entries = count("SELECT COUNT(*) FROM entries")?;
    if n_entries as u64 != 2 * sum.transactions {
        return Err(bad(
            None,
            format!("{n_entries} entries for {} transactions (orphan entries)", sum.transactions),
        ));
    }
    let n_payments = count("SELECT COUNT(*) FROM payments")?;
    if n_payments as u64 != sum.payments {
        return Err(bad(
            None,
            format!("{n_payments} payment rows for {} payment transactions", sum.payments),
        ));
    }

    let mut accts =
        conn.prepare("SELECT id, kind, balance, topped_up FROM accounts ORDER BY id").map_err(dbe)?;
    let mut rows = accts.query([]).map_err(dbe)?;
    let mut total = 0i64;
    while let Some(r) = rows.next().map_err(dbe)? {
        let (id, kind, balance, topped_up): (String, String, i64, i64) =
            (r.get(0).map_err(dbe)?, r.get(1).map_err(dbe)?, r.get(2).map_err(dbe)?, r.get(3).map_err(dbe)?);
        let expected = balances.remove(&id).unwrap_or(0);
        if balance != expected {
            return Err(bad(
                None,
                format!("account {id}: balance {balance} but its entries sum to {expected}"),
            ));
        }
        if balance < 0 && kind != "faucet" {
            return Err(bad(None, format!("account {id}: negative balance")));
        }
        if topped_up != topped.remove(&id).unwrap_or(0) {
            return Err(bad(None, format!("account {id}: top-up total does not match its top-ups")));
        }
        total += balance;
        sum.accounts += 1;
    }
    if let Some((id, _)) = balances.into_iter().next() {
        return Err(bad(None, format!("entries name account {id}, which does not exist")));
    }
    if total != 0 {
        return Err(bad(None, format!("balances sum to {total}, not zero")));
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlexivo_core::env::{OsEntropy, SeededEntropy};
    use vlexivo_core::wallet::Wallet;

    async fn ledger_with_history(path: &std::path::Path) -> (Ledger, std::thread::JoinHandle<()>) {
        let conn = super::super::db::open_rw(path).unwrap();
        let (ledger, h) =
            Ledger::start(conn, path, 1_000_000_000, "http://test".into(), Durability::Full).unwrap();
        for i in 0..5u64 {
            let w = Wallet::generate(&SeededEntropy::new(i));
            ledger.top_up(w.address(), 1_000 + i, 1_700_000_000 + i).await.unwrap();
        }
        (ledger, h)
    }

    #[tokio::test]
    async fn chain_verifies_and_detects_a_tampered_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let (ledger, h) = ledger_with_history(&path).await;
        ledger.stop().await;
        tokio::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();

        let conn = Connection::open(&path).unwrap();
        let s = verify_ledger(&conn).unwrap();
        assert_eq!((s.transactions, s.topups, s.accounts), (5, 5, 6));

        // Edit a record (and even re-hash it): the next link breaks.
        let rec: String =
            conn.query_row("SELECT record FROM transactions WHERE seq = 3", [], |r| r.get(0)).unwrap();
        let forged = rec.replace("\"amount\":1002", "\"amount\":9002");
        assert_ne!(rec, forged);
        conn.execute("UPDATE transactions SET record = ?1 WHERE seq = 3", [&forged]).unwrap();
        let e = verify_ledger(&conn).unwrap_err().to_string();
        assert!(e.starts_with("transaction 3:"), "{e}");
        let prev: String =
            conn.query_row("SELECT prev_hash FROM transactions WHERE seq = 3", [], |r| r.get(0)).unwrap();
        conn.execute("UPDATE transactions SET tx_hash = ?1 WHERE seq = 3", [chain_hash(&prev, &forged)])
            .unwrap();
        let e = verify_ledger(&conn).unwrap_err().to_string();
        assert!(e.starts_with("transaction 3:") || e.starts_with("transaction 4:"), "{e}");
        conn.execute(
            "UPDATE transactions SET record = ?1, tx_hash = ?2 WHERE seq = 3",
            [&rec, &chain_hash(&prev, &rec)],
        )
        .unwrap();
        verify_ledger(&conn).unwrap();

        // A balance edited behind the ledger's back.
        conn.execute(
            "UPDATE accounts SET balance = balance + 1 WHERE kind = 'wallet' AND balance = 1004",
            [],
        )
        .unwrap();
        assert!(verify_ledger(&conn).unwrap_err().to_string().contains("balance"));
        conn.execute(
            "UPDATE accounts SET balance = balance - 1 WHERE kind = 'wallet' AND balance = 1005",
            [],
        )
        .unwrap();
        verify_ledger(&conn).unwrap();

        // An entry edited: double entry no longer sums to zero.
        conn.execute("UPDATE entries SET amount = amount + 5 WHERE tx_seq = 2 AND amount > 0", []).unwrap();
        assert!(verify_ledger(&conn).unwrap_err().to_string().starts_with("transaction 2:"));
    }

    async fn stop(ledger: Ledger, h: std::thread::JoinHandle<()>) {
        ledger.stop().await;
        tokio::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn after_a_failed_fsync_no_later_write_is_acknowledged() {
        use super::super::{db, failing_fsync};
        failing_fsync::register();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let conn = db::open_rw_vfs(&path, failing_fsync::NAME).unwrap();
        let (ledger, h) =
            Ledger::start(conn, &path, 1_000_000, "http://test".into(), Durability::Full).unwrap();
        let w = Wallet::generate(&SeededEntropy::new(7));
        ledger.top_up(w.address(), 10, 1).await.unwrap();

        failing_fsync::fail(true);
        let in_doubt = ledger.top_up(w.address(), 20, 2).await;
        failing_fsync::fail(false);
        let e = in_doubt.unwrap_err();
        assert_eq!(e.code(), "internal");
        assert!(e.to_string().contains("could not make this write durable"), "{e}");

        // The disk works again, yet nothing after the failed fsync is written or acknowledged.
        let e = ledger.top_up(w.address(), 30, 3).await.unwrap_err();
        assert!(e.to_string().contains("must be restarted"), "{e}");
        let p = Wallet::generate(&SeededEntropy::new(8));
        assert!(ledger.top_up(p.address(), 1, 4).await.is_err());
        assert!(ledger.is_fenced());
        stop(ledger, h).await;

        // A restart recovers from what the disk holds: the chain verifies and writes work again.
        let conn = db::open_rw(&path).unwrap();
        let (ledger, h) =
            Ledger::start(conn, &path, 1_000_000, "http://test".into(), Durability::Full).unwrap();
        assert!(!ledger.is_fenced());
        ledger.top_up(w.address(), 40, 5).await.unwrap();
        stop(ledger, h).await;
        let s = verify_ledger(&Connection::open(&path).unwrap()).unwrap();
        // The in-doubt top-up may or may not have reached the disk; the refused ones never did.
        assert!(matches!(s.topped_up_atomic, 50 | 70), "{s:?}");
        assert_eq!(s.transactions, if s.topped_up_atomic == 50 { 2 } else { 3 });
    }

    #[tokio::test]
    async fn faucet_cap_and_restart_continue_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let conn = super::super::db::open_rw(&path).unwrap();
        let (ledger, h) = Ledger::start(conn, &path, 10, "http://test".into(), Durability::Full).unwrap();
        let w = Wallet::generate(&OsEntropy);
        ledger.top_up(w.address(), 6, 1).await.unwrap();
        let e = ledger.top_up(w.address(), 5, 2).await.unwrap_err();
        assert_eq!(e.code(), "top_up_refused");
        assert_eq!(ledger.top_up(w.address(), 4, 3).await.unwrap().balance, 10);
        ledger.stop().await;
        tokio::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();

        let conn = super::super::db::open_rw(&path).unwrap();
        let (ledger, h) = Ledger::start(conn, &path, 100, "http://test".into(), Durability::Normal).unwrap();
        ledger.top_up(w.address(), 1, 4).await.unwrap();
        ledger.stop().await;
        tokio::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();
        let s = verify_ledger(&Connection::open(&path).unwrap()).unwrap();
        assert_eq!(s.transactions, 3);
        assert_eq!(s.topped_up_atomic, 11);
    }
}
