//! The SQLite engine: one writer owns the read-write connection and runs each batch in one
//! `BEGIN IMMEDIATE` transaction; SQLite's one writer at a time makes every rule plain
//! sequential code, and the chain is one sequence.
//!
//! Who writes: the task that submits an op to an idle ledger commits it itself, on its own
//! thread (tokio's `block_in_place`), and ops that arrive meanwhile queue up for the next batch,
//! which a blocking-pool thread commits while that task answers its caller (see
//! [`Committer`]). A writer thread of its own put two wake-ups on every payment's path, the
//! writer's and then the waiting task's; on a busy machine each may wait for a CPU.
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

use super::rules::{self, Book, Posting, StoredPayment};
use super::{
    Answer, Head, Ledger, MAX_BATCH, Op, Provider, Record, chain_hash, provider_id, refuse_all, writer_gone,
};
use crate::server::db::db_err;
use crate::server::metrics::LedgerTimes;
use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vlexivo_core::{Error, Result};

/// Start the SQLite ledger and its checkpointer thread. `conn` must be the database at
/// `db_path`, opened by [`crate::server::db::open_rw`]. `faucet_cap` is the most a wallet may
/// ever receive from the faucet; `issuer_url` goes into tokens as `iss`; `times` records batch,
/// commit and checkpoint durations (`/metrics`). The thread handle returned ends once the ledger
/// has stopped ([`Ledger::stop`]) and its last checkpoint is done.
pub fn start(
    conn: Connection,
    db_path: &std::path::Path,
    faucet_cap: u64,
    issuer_url: String,
    durability: Durability,
    times: LedgerTimes,
) -> Result<(Ledger, std::thread::JoinHandle<()>)> {
    conn.pragma_update(None, "synchronous", durability.synchronous()).map_err(db_err)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES).map_err(db_err)?;
    let head = load_head(&conn)?;
    let checkpointer = Checkpointer::new(db_path, times.clone())?;
    let fenced = Arc::new(AtomicBool::new(false));
    // One pending tick is enough: the checkpointer copies whatever the WAL holds when it wakes.
    let (tick, ticks) = std::sync::mpsc::sync_channel(1);
    let w = Writer {
        conn,
        head,
        faucet_cap,
        issuer_url,
        poisoned: false,
        tick,
        fenced: fenced.clone(),
        times,
        since_checkpoint: 0,
    };
    // Dropping the writer (once stopped) closes the tick channel: the checkpointer stops.
    let handle = std::thread::Builder::new()
        .name("vlexivo-checkpoint".into())
        .spawn(move || checkpointer.run(ticks))
        .map_err(|e| Error::Internal(format!("cannot start the checkpoint thread: {e}")))?;
    let committer = Arc::new(Committer {
        queue: Mutex::new(Queue { ops: VecDeque::new(), stopped: false }),
        writer: Mutex::new(Some(w)),
    });
    Ok((Ledger::inline(committer, fenced), handle))
}

/// The SQLite ledger's queue and its one writer. Whoever finds the writer free after queueing
/// an op commits the queue: a submitting task on its own thread, so at an idle ledger a payment
/// is written, fsynced and answered with no other thread woken; ops queued during that commit
/// go to a blocking-pool thread as the next batch (group commit), so the task that committed
/// answers its own caller without waiting for them. Every op queued is taken by someone: a
/// submitter that finds the writer busy leaves its op to the holder, which looks at the queue
/// again after letting the writer go.
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    /// `None` once stopped.
    writer: Mutex<Option<Writer>>,
}

struct Queue {
    ops: VecDeque<Op>,
    stopped: bool,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    pub(crate) fn is_running(&self) -> bool {
        !self.queue.lock().stopped
    }

    /// Queue `op`; commit the queue here if no commit is running. Called from a task: on a
    /// multi-thread runtime the commit blocks this thread (`block_in_place` moves the worker's
    /// other tasks to another thread); a current-thread runtime cannot block, so there the
    /// commit goes to the blocking pool.
    pub(crate) fn submit(self: &Arc<Self>, op: Op) -> Result<()> {
        {
            let mut q = self.queue.lock();
            if q.stopped {
                return Err(writer_gone());
            }
            q.ops.push_back(op);
        }
        let Some(writer) = self.writer.try_lock() else { return Ok(()) };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| {
                    if self.commit_queued(writer, Some(&rt)) {
                        self.drain(Some(&rt));
                    }
                })
            }
            Ok(rt) => {
                drop(writer);
                let me = self.clone();
                rt.spawn_blocking(move || me.drain(None));
            }
            Err(_) => {
                if self.commit_queued(writer, None) {
                    self.drain(None);
                }
            }
        }
        Ok(())
    }

    /// Commit what is queued while the writer is free and ops are waiting.
    fn drain(self: &Arc<Self>, handing_off: Option<&tokio::runtime::Handle>) {
        loop {
            if self.queue.lock().ops.is_empty() {
                return;
            }
            let Some(writer) = self.writer.try_lock() else { return };
            if !self.commit_queued(writer, handing_off) {
                return;
            }
        }
    }

    /// Commit queued ops in batches of at most [`MAX_BATCH`] until the queue is empty, then let
    /// the writer go. With `handing_off` (a submitting task's thread), after the first batch the
    /// ops queued meanwhile go to a blocking-pool thread instead. Returns true if the queue
    /// should be looked at again (an op may have been queued after the last look, by a
    /// submitter that found the writer taken).
    fn commit_queued(
        self: &Arc<Self>,
        mut writer: MutexGuard<'_, Option<Writer>>,
        handing_off: Option<&tokio::runtime::Handle>,
    ) -> bool {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            {
                let mut q = self.queue.lock();
                let n = q.ops.len().min(MAX_BATCH);
                batch.extend(q.ops.drain(..n));
            }
            if batch.is_empty() {
                return true;
            }
            let Some(w) = writer.as_mut() else {
                refuse_all(&mut batch, &writer_gone());
                continue;
            };
            if w.run_batch(&mut batch) {
                // Stopped: answer whatever raced in behind the stop, then close the connection
                // (which also ends the checkpointer).
                let mut rest: Vec<Op> = {
                    let mut q = self.queue.lock();
                    q.stopped = true;
                    q.ops.drain(..).collect()
                };
                w.run_batch(&mut rest);
                *writer = None;
                return false;
            }
            if let Some(rt) = handing_off
                && !self.queue.lock().ops.is_empty()
            {
                w.times.handed_off.inc();
                drop(writer);
                let me = self.clone();
                rt.spawn_blocking(move || me.drain(None));
                return false;
            }
        }
    }
}

/// The answer to every write once the ledger is fenced.
fn fenced_error() -> Error {
    Error::Internal(
        "the ledger stopped writing after a disk I/O error; the facilitator must be restarted".into(),
    )
}

/// Ops committed between passive checkpoints (the writer never waits for one): about 4 MB of
/// WAL at the 7-8 pages a payment writes. Counted, not read from the WAL file's size: SQLite
/// writes the WAL again from its start after a checkpoint without shrinking the file, so once
/// it had reached any size, a size test passed after every commit (a checkpoint per payment).
const CHECKPOINT_EVERY_OPS: u64 = 128;
/// Fallback: past this many WAL pages the writer checkpoints itself (only if the passive
/// checkpoints cannot keep up).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16384;

pub(crate) fn load_head(conn: &Connection) -> Result<Head> {
    let row: Option<(i64, String)> = conn
        .query_row("SELECT seq, tx_hash FROM transactions ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db_err)?;
    Ok(match row {
        Some((seq, hash)) => Head { seq, hash },
        None => Head::genesis(),
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
    conn: Connection,
    times: LedgerTimes,
}

impl Checkpointer {
    fn new(db_path: &std::path::Path, times: LedgerTimes) -> Result<Self> {
        let conn = Connection::open(db_path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
        // Checkpoints sync the WAL before and the database after copying.
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        Ok(Self { conn, times })
    }

    fn run(self, ticks: std::sync::mpsc::Receiver<()>) {
        while ticks.recv().is_ok() {
            let started = std::time::Instant::now();
            if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "ledger: checkpoint failed");
            }
            self.times.checkpoint.observe(started.elapsed().as_secs_f64());
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
    /// Wakes the checkpointer every CHECKPOINT_EVERY_OPS committed ops.
    tick: std::sync::mpsc::SyncSender<()>,
    /// Set once a commit failed with an I/O error; never cleared.
    fenced: Arc<AtomicBool>,
    times: LedgerTimes,
    /// Ops committed since the checkpointer was last woken.
    since_checkpoint: u64,
}

/// An I/O error from SQLite's OS layer (`SQLITE_IOERR_*`: a failed write, fsync, …).
fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure)
}

impl Writer {
    /// Run a batch in one transaction and answer its ops once the commit returned; returns true
    /// if it contained `Stop`.
    fn run_batch(&mut self, batch: &mut Vec<Op>) -> bool {
        if batch.is_empty() {
            return false;
        }
        if self.fenced.load(Ordering::Acquire) {
            return refuse_all(batch, &fenced_error());
        }
        let started = std::time::Instant::now();
        if !self.conn.is_autocommit() {
            // A batch that panicked (its caller's task, not this ledger) left its transaction
            // open: nothing of it was acknowledged.
            let _ = self.conn.execute_batch("ROLLBACK");
            self.head = load_head(&self.conn).unwrap_or_else(|_| self.head.clone());
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
                Op::CreateProvider(p, s) => Answer::Provider(s, rules::create_provider(self, &p)),
                Op::TopUp { address, amount, now, reply } => {
                    let cap = self.faucet_cap;
                    Answer::TopUp(reply, rules::top_up(self, &address, amount, now, cap))
                }
                Op::Pay(p, s) => {
                    let issuer = self.issuer_url.clone();
                    Answer::Pay(s, rules::pay(self, &p, &issuer))
                }
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
        let committing = std::time::Instant::now();
        let committed = if self.poisoned { None } else { Some(self.conn.execute_batch("COMMIT")) };
        match committed {
            Some(Ok(())) => {
                self.times.commit.observe(committing.elapsed().as_secs_f64());
                self.since_checkpoint += answers.len() as u64;
                answers.into_iter().for_each(Answer::send);
                self.times.batch.observe(started.elapsed().as_secs_f64());
                if self.since_checkpoint >= CHECKPOINT_EVERY_OPS {
                    // Full means a wake-up is pending already.
                    let _ = self.tick.try_send(());
                    self.since_checkpoint = 0;
                }
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
}

impl Book for Writer {
    fn account(&mut self, id: &str) -> Result<(i64, i64)> {
        self.conn
            .prepare_cached("SELECT balance, topped_up FROM accounts WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map(|o| o.unwrap_or((0, 0)))
            .map_err(db_err)
    }

    fn payment(&mut self, account: &str, nonce: &str) -> Result<Option<StoredPayment>> {
        self.conn
            .prepare_cached(
                "SELECT payer, tx_hash, amount, token, paid_at, expires_at FROM payments \
                 WHERE account = ?1 AND nonce = ?2",
            )
            .and_then(|mut s| {
                s.query_row([account, nonce], |r| {
                    Ok(StoredPayment {
                        payer: r.get(0)?,
                        tx_hash: r.get(1)?,
                        amount: r.get(2)?,
                        token: r.get(3)?,
                        paid_at: r.get(4)?,
                        expires_at: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(db_err)
    }

    fn link(&self, rec: &mut Record) -> Result<(String, String)> {
        rec.seq = self.head.seq + 1;
        let record = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        let hash = chain_hash(&self.head.hash, &record);
        Ok((record, hash))
    }

    fn post(&mut self, p: Posting<'_>) -> Result<()> {
        let rec = p.rec;
        let r = (|| {
            self.conn
                .prepare_cached(
                    "INSERT INTO transactions (seq, kind, created_at, record, prev_hash, tx_hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![rec.seq, rec.kind, rec.at as i64, p.record, self.head.hash, p.tx_hash])?;
            let mut entry = self
                .conn
                .prepare_cached("INSERT INTO entries (tx_seq, account, amount) VALUES (?1, ?2, ?3)")?;
            entry.execute(params![rec.seq, rec.from, -rec.amount])?;
            entry.execute(params![rec.seq, rec.to, rec.amount])?;
            self.conn
                .prepare_cached("UPDATE accounts SET balance = balance - ?1 WHERE id = ?2")?
                .execute(params![rec.amount, rec.from])?;
            if rec.kind == "topup" {
                self.conn
                    .prepare_cached(
                        "INSERT INTO accounts (id, kind, balance, topped_up) VALUES (?1, 'wallet', ?2, ?2) \
                         ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance, \
                         topped_up = topped_up + excluded.topped_up",
                    )?
                    .execute(params![rec.to, rec.amount])?;
            } else {
                let credited = self
                    .conn
                    .prepare_cached("UPDATE accounts SET balance = balance + ?1 WHERE id = ?2")?
                    .execute(params![rec.amount, rec.to])?;
                if credited != 1 {
                    return Err(rusqlite::Error::QueryReturnedNoRows);
                }
            }
            if let Some(row) = &p.payment {
                self.conn
                    .prepare_cached(
                        "INSERT INTO payments (account, nonce, tx_seq, tx_hash, payer, amount, currency, \
                         resource, token, paid_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?
                    .execute(params![
                        row.account,
                        row.nonce,
                        rec.seq,
                        p.tx_hash,
                        row.payer,
                        row.amount,
                        row.currency,
                        row.resource,
                        row.token,
                        row.paid_at,
                        row.expires_at
                    ])?;
            }
            Ok(())
        })();
        self.written(r)?;
        self.head = Head { seq: rec.seq, hash: p.tx_hash.to_string() };
        Ok(())
    }

    fn add_provider(&mut self, p: &Provider) -> Result<()> {
        let row = crate::server::providers::ProviderRow::from(p);
        let r = (|| {
            self.conn
                .prepare_cached(
                    "INSERT INTO providers (account, mode, token_alg, name, challenge_mac, token_hs256, \
                     auth_digest, created_at, canonical, retire_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    row.account,
                    row.mode,
                    row.token_alg,
                    row.name,
                    row.challenge_mac,
                    row.token_hs256,
                    row.auth_digest,
                    row.created_at,
                    row.canonical,
                    row.retire_at
                ])?;
            if let Some(at) = row.retire_others_at {
                // A rotation: the account's other secrets stay valid until `at` (or sooner).
                self.conn
                    .prepare_cached(
                        "UPDATE providers SET retire_at = ?1 WHERE (account = ?2 OR canonical = ?2) \
                         AND account != ?3 AND (retire_at IS NULL OR retire_at > ?1)",
                    )?
                    .execute(params![at, p.account, row.account])?;
            }
            match row.canonical {
                Some(_) => Ok(0),
                None => self
                    .conn
                    .prepare_cached("INSERT INTO accounts (id, kind) VALUES (?1, 'provider')")?
                    .execute([provider_id(&p.account)]),
            }
        })();
        self.written(r).map(drop)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::db;
    use crate::server::ledger::Ledger;
    use crate::server::ledger::verify::verify_sqlite as verify_ledger;
    use crate::server::metrics::Metrics;
    use std::path::Path;
    use std::thread::JoinHandle;
    use vlexivo_core::env::{OsEntropy, SeededEntropy};
    use vlexivo_core::wallet::Wallet;

    /// The ledger on `conn` (the SQLite file `path`) as the server starts it.
    fn start_on(
        conn: Connection,
        path: &Path,
        faucet_cap: u64,
        durability: Durability,
        times: LedgerTimes,
    ) -> (Ledger, JoinHandle<()>) {
        start(conn, path, faucet_cap, "http://test".into(), durability, times).unwrap()
    }

    /// The ledger on the SQLite file `path` (created if need be), fsync before each answer.
    fn open(path: &Path, faucet_cap: u64) -> (Ledger, JoinHandle<()>) {
        start_on(db::open_rw(path).unwrap(), path, faucet_cap, Durability::Full, LedgerTimes::default())
    }

    /// As [`open`], any faucet cap, its timings recorded in `metrics`.
    fn open_measured(path: &Path, durability: Durability, metrics: &Metrics) -> (Ledger, JoinHandle<()>) {
        start_on(db::open_rw(path).unwrap(), path, u64::MAX, durability, metrics.ledger_times.clone())
    }

    async fn stop(ledger: Ledger, h: JoinHandle<()>) {
        ledger.stop().await;
        tokio::task::spawn_blocking(move || h.join().unwrap()).await.unwrap();
    }

    /// The value of the metric `vlexivo_ledger_{name}` in the exposition `text`.
    fn counter(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("vlexivo_ledger_{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    async fn ledger_with_history(path: &Path) -> (Ledger, JoinHandle<()>) {
        let (ledger, h) = open(path, 1_000_000_000);
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
        stop(ledger, h).await;

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

    #[tokio::test]
    async fn after_a_failed_fsync_no_later_write_is_acknowledged() {
        use crate::server::failing_fsync;
        failing_fsync::register();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let conn = db::open_rw_vfs(&path, failing_fsync::NAME).unwrap();
        let (ledger, h) = start_on(conn, &path, 1_000_000, Durability::Full, LedgerTimes::default());
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
        let (ledger, h) = open(&path, 1_000_000);
        assert!(!ledger.is_fenced());
        ledger.top_up(w.address(), 40, 5).await.unwrap();
        stop(ledger, h).await;
        let s = verify_ledger(&Connection::open(&path).unwrap()).unwrap();
        // The in-doubt top-up may or may not have reached the disk; the refused ones never did.
        assert!(matches!(s.topped_up_atomic, 50 | 70), "{s:?}");
        assert_eq!(s.transactions, if s.topped_up_atomic == 50 { 2 } else { 3 });
    }

    #[tokio::test]
    async fn checkpoints_follow_the_writes_not_the_wal_file_size() {
        // After a checkpoint SQLite writes the WAL again from its start without shrinking the
        // file: a test of the file's size passed after every commit once it had grown (4 MB),
        // and the checkpointer copied and fsynced after every payment.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let metrics = Metrics::default();
        let (ledger, h) = open_measured(&path, Durability::Normal, &metrics);
        // One op per batch, new wallets: well past 4 MB of WAL.
        let n = 6 * CHECKPOINT_EVERY_OPS;
        for i in 0..n {
            let w = Wallet::generate(&SeededEntropy::new(i));
            ledger.top_up(w.address(), 1, i).await.unwrap();
        }
        stop(ledger, h).await;
        let wal = std::fs::metadata(dir.path().join("l.db-wal")).map(|m| m.len()).unwrap_or(0);
        let text = metrics.render();
        assert!(counter(&text, "commit_duration_seconds_count") >= n);
        let checkpoints = counter(&text, "checkpoint_duration_seconds_count");
        assert!(
            (1..=6).contains(&checkpoints),
            "{checkpoints} checkpoints for {n} ops (WAL file {wal} bytes)"
        );
        assert!(verify_ledger(&Connection::open(&path).unwrap()).is_ok());
    }

    /// On a multi-thread runtime the task that finds the ledger idle commits its op itself;
    /// ops that arrive during a commit share the next batches, and every one is answered once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitting_tasks_commit_and_concurrent_ops_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let metrics = Metrics::default();
        let (ledger, h) = open_measured(&path, Durability::Full, &metrics);
        // One at a time: each op is its own batch, committed by its own task.
        let w = Wallet::generate(&SeededEntropy::new(1));
        for i in 0..20u64 {
            assert_eq!(ledger.top_up(w.address(), 1, i).await.unwrap().balance, i + 1);
        }
        let text = metrics.render();
        assert_eq!(counter(&text, "commit_duration_seconds_count"), 20);
        assert_eq!(counter(&text, "handoffs_total"), 0);

        // 64 tasks at once, 10 top-ups each.
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let w = Wallet::generate(&SeededEntropy::new(100 + t));
                    for i in 0..10u64 {
                        let done = ledger.top_up(w.address(), 1 + t, i).await.unwrap();
                        assert_eq!(done.balance, (i + 1) * (1 + t));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let text = metrics.render();
        let commits = counter(&text, "commit_duration_seconds_count") - 20;
        assert!(commits < 640, "{commits} commits for 640 concurrent ops");
        stop(ledger.clone(), h).await;
        assert!(!ledger.is_running());
        assert_eq!(ledger.top_up(w.address(), 1, 99).await.unwrap_err().code(), "internal");
        let s = verify_ledger(&Connection::open(&path).unwrap()).unwrap();
        assert_eq!(s.transactions, 660);
        assert_eq!(s.topped_up_atomic, 20 + 10 * (1..=64).sum::<u64>());
    }

    #[tokio::test]
    async fn faucet_cap_and_restart_continue_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let (ledger, h) = open(&path, 10);
        let w = Wallet::generate(&OsEntropy);
        ledger.top_up(w.address(), 6, 1).await.unwrap();
        let e = ledger.top_up(w.address(), 5, 2).await.unwrap_err();
        assert_eq!(e.code(), "top_up_refused");
        assert_eq!(ledger.top_up(w.address(), 4, 3).await.unwrap().balance, 10);
        stop(ledger, h).await;

        let conn = db::open_rw(&path).unwrap();
        let (ledger, h) = start_on(conn, &path, 100, Durability::Normal, LedgerTimes::default());
        ledger.top_up(w.address(), 1, 4).await.unwrap();
        stop(ledger, h).await;
        let s = verify_ledger(&Connection::open(&path).unwrap()).unwrap();
        assert_eq!(s.transactions, 3);
        assert_eq!(s.topped_up_atomic, 11);
    }
}
