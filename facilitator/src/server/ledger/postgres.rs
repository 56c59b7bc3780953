//! The PostgreSQL engine: several facilitator processes on one database, each with one writer
//! task that runs its batches in one transaction each (group commit).
//!
//! **Why one chain per writer.** The chain needs one order, and the hash of a payment must be
//! known before its transaction commits (the proof token names it). A single global chain
//! would make every writer take the head row's lock and hold it through its commit: three
//! facilitators would be no faster than one, and a stalled writer would stall all. A sequence
//! taken inside the transaction does not give a chain either: transactions commit in another
//! order than they took numbers, an aborted one leaves a gap, and the previous hash is unknown
//! until the earlier transaction commits. Per-account chains would need a lock per account and
//! two previous links per payment, and the provider's account — in every payment of that
//! provider — would again be one hot chain. So each writer appends to a *stream* of its own:
//! it takes a free stream (or makes a new one) and holds it with a session advisory lock for as
//! long as its connection lives, so it is the only appender, knows the head without reading it,
//! computes each hash before writing, and commits in sequence order. `ledger verify` checks
//! every stream's chain on its own, and balances, double entry and one payment per challenge
//! across all of them. Editing, deleting or reordering any transaction breaks its stream's
//! chain; a writer that reconnects (or a facilitator restarted after a crash) takes a free
//! stream again and continues it from the head stored in the database.
//!
//! **Concurrency between facilitators.** A batch first takes transaction-scoped advisory locks
//! on the challenges it pays (in key order), then row locks on every account it debits or tops
//! up (in id order): two facilitators paying the same challenge take turns and the second sees
//! the first one's payment (idempotent replay, one debit); two paying from one wallet take turns
//! on its row. With the locks held the rules run as plain sequential code over the rows read,
//! and the batch's writes go out as one bulk statement per table. `CHECK (balance >= 0)` stays
//! as the database's own guard.
//!
//! **Credit shards.** A provider is credited by every payment it receives: one row locked from
//! each batch's write to its commit (the WAL flush) would make facilitators paying the same
//! provider take turns, whatever their payers. So a provider's credits go to one of
//! [`CREDIT_SHARDS`] sub-accounts (`credit_shards`), the one of the writer's stream: while there
//! are at most that many writers, two facilitators never credit the same row. A provider's
//! balance is its `accounts` row plus its shards; the records, entries and hash chains still name
//! the provider's account, so `ledger verify` checks the sum against the entries as before. A
//! provider is never debited, so no rule reads its balance inside a batch. Shard rows are locked
//! last (after the debited accounts), in account order: batches still never deadlock.
//!
//! **Failures.** If the connection fails before COMMIT, nothing was written: the batch runs
//! again on a new connection. If it fails during COMMIT, the writer reconnects and looks for
//! the batch's transaction hashes: present means committed (the answers go out), absent means
//! not (it runs again). Past a retry window ([`RETRY_FOR`] by default) the ops are answered `facilitator_unavailable`
//! (503; a payment sent again is answered idempotently). An acknowledged payment is always
//! committed (PostgreSQL's default `synchronous_commit`), and never acknowledged twice.

use super::rules::{self, Book, Posting, StoredPayment};
use super::{Head, Ledger, MAX_BATCH, Op, PayDone, PayOp, Provider, Record, TopUpDone, chain_hash};
use crate::server::metrics::DbErrors;
use crate::server::pg::{self, LOCK_STREAM, describe, is_connection_error, is_retryable};
use crate::server::providers::ProviderRow;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, Result};

/// How long a batch keeps retrying through a lost connection before its ops are refused, by
/// default.
pub const RETRY_FOR: Duration = Duration::from_secs(10);
/// Credit sub-accounts per provider (see the module docs): a writer credits shard
/// `stream mod CREDIT_SHARDS`.
pub const CREDIT_SHARDS: i64 = 8;

fn credit_shard(stream: i64) -> i32 {
    stream.rem_euclid(CREDIT_SHARDS) as i32
}

/// Start the writer task on the current runtime. `client` is a migrated session (it becomes
/// the writer's connection); `cfg` reconnects it.
pub async fn start(
    cfg: tokio_postgres::Config,
    client: Client,
    faucet_cap: u64,
    issuer_url: String,
    retry_for: Duration,
    errors: DbErrors,
) -> Result<(Ledger, tokio::task::JoinHandle<()>)> {
    let (ledger, rx, _fenced) = Ledger::channel();
    let mut w = Writer { cfg, session: None, faucet_cap, issuer_url, retry_for, errors };
    w.session = Some(Session::open(client).await.map_err(pg::pg_err)?);
    let handle = tokio::spawn(async move { w.run(rx).await });
    Ok((ledger, handle))
}

/// A writer's connection and the stream it holds.
struct Session {
    client: Client,
    stream: i64,
    head: Head,
}

impl Session {
    /// Take a free stream (or make one) and load its head.
    async fn open(client: Client) -> std::result::Result<Self, tokio_postgres::Error> {
        loop {
            let ids: Vec<i64> = client
                .query("SELECT id FROM streams ORDER BY id", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in ids {
                let got: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1, $2::int)", &[&LOCK_STREAM, &(id as i32)])
                    .await?
                    .get(0);
                if got {
                    let head = client
                        .query_opt(
                            "SELECT seq, tx_hash FROM transactions WHERE stream = $1 ORDER BY seq DESC LIMIT 1",
                            &[&id],
                        )
                        .await?
                        .map(|r| Head { seq: r.get(0), hash: r.get(1) })
                        .unwrap_or_else(Head::genesis);
                    tracing::info!(stream = id, seq = head.seq, "ledger: writing to stream");
                    return Ok(Session { client, stream: id, head });
                }
            }
            // Every stream is held by a live writer: add one (another writer may take it
            // before we lock it; then we look again).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            client.execute("INSERT INTO streams (created_at) VALUES ($1)", &[&now]).await?;
        }
    }
}

enum Work {
    CreateProvider(Arc<Provider>),
    TopUp { address: Address, amount: u64, now: u64 },
    Pay(Box<PayOp>),
}

enum Reply {
    Provider(oneshot::Sender<Result<()>>),
    TopUp(oneshot::Sender<Result<TopUpDone>>),
    Pay(oneshot::Sender<Result<PayDone>>),
}

enum Outcome {
    Provider(Result<()>),
    TopUp(Result<TopUpDone>),
    Pay(Result<PayDone>),
}

impl Reply {
    fn send(self, o: Outcome) {
        match (self, o) {
            (Reply::Provider(s), Outcome::Provider(r)) => drop(s.send(r)),
            (Reply::TopUp(s), Outcome::TopUp(r)) => drop(s.send(r)),
            (Reply::Pay(s), Outcome::Pay(r)) => drop(s.send(r)),
            _ => unreachable!("an outcome answers its own op"),
        }
    }

    fn fail(self, e: &Error) {
        match self {
            Reply::Provider(s) => drop(s.send(Err(e.clone()))),
            Reply::TopUp(s) => drop(s.send(Err(e.clone()))),
            Reply::Pay(s) => drop(s.send(Err(e.clone()))),
        }
    }
}

/// One attempt's decisions: what each op is answered, the stream's new head, and what was
/// written (to recognise the batch in the database after a lost COMMIT).
struct Attempt {
    outcomes: Vec<Outcome>,
    head: Head,
    hashes: Vec<String>,
    providers: Vec<String>,
}

/// Why a batch did not commit.
enum Failed {
    /// The connection failed; with `in_doubt` the COMMIT was sent and its outcome is unknown.
    Connection { in_doubt: Option<Attempt>, error: tokio_postgres::Error },
    /// A deadlock or serialization failure: nothing was written, run it again.
    Retry(tokio_postgres::Error),
    /// Anything else (a bug, a constraint): nothing was written, the ops are refused.
    Fatal(Error),
}

struct Writer {
    cfg: tokio_postgres::Config,
    session: Option<Session>,
    faucet_cap: u64,
    issuer_url: String,
    retry_for: Duration,
    /// Counted for `/metrics` (`vlexivo_ledger_db_errors_total`).
    errors: DbErrors,
}

impl Writer {
    async fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let stop = self.run_batch(&mut batch).await;
            if stop {
                rx.close();
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                self.run_batch(&mut batch).await;
                return;
            }
        }
    }

    /// Run one batch to its end (committed, refused, or given up after the retry window); returns
    /// true if it contained `Stop`.
    async fn run_batch(&mut self, batch: &mut Vec<Op>) -> bool {
        let mut stop = false;
        let mut works = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                Op::CreateProvider(p, s) => {
                    works.push(Work::CreateProvider(p));
                    replies.push(Reply::Provider(s));
                }
                Op::TopUp { address, amount, now, reply } => {
                    works.push(Work::TopUp { address, amount, now });
                    replies.push(Reply::TopUp(reply));
                }
                Op::Pay(p, s) => {
                    works.push(Work::Pay(p));
                    replies.push(Reply::Pay(s));
                }
                Op::Stop => stop = true,
            }
        }
        if works.is_empty() {
            return stop;
        }
        let deadline = tokio::time::Instant::now() + self.retry_for;
        let mut wait = Duration::from_millis(50);
        loop {
            let outcome = match self.session.as_mut() {
                Some(s) => try_batch(s, &works, self.faucet_cap, &self.issuer_url).await,
                None => match self.reconnect().await {
                    Ok(()) => continue,
                    Err(error) => Err(Failed::Connection { in_doubt: None, error }),
                },
            };
            match outcome {
                Ok(a) => {
                    if let Some(s) = self.session.as_mut() {
                        s.head = a.head;
                    }
                    replies.into_iter().zip(a.outcomes).for_each(|(r, o)| r.send(o));
                    return stop;
                }
                Err(Failed::Fatal(e)) => {
                    self.errors.inc("fatal");
                    tracing::error!(error = %e, "ledger: the batch is rolled back");
                    let opaque = Error::Internal("the ledger could not commit; nothing was charged".into());
                    replies.into_iter().for_each(|r| r.fail(&opaque));
                    return stop;
                }
                Err(Failed::Retry(e)) => {
                    self.errors.inc("conflict");
                    tracing::warn!(error = %describe(&e), "ledger: batch conflicted; running it again");
                }
                Err(Failed::Connection { in_doubt, error }) => {
                    self.errors.inc("connection_lost");
                    tracing::warn!(error = %describe(&error), in_doubt = in_doubt.is_some(), "ledger: database connection lost");
                    self.session = None;
                    if let Some(a) = in_doubt {
                        // Did the COMMIT land? The batch's hashes say so, once we can ask.
                        match self.landed(&a, deadline).await {
                            Some(true) => {
                                replies.into_iter().zip(a.outcomes).for_each(|(r, o)| r.send(o));
                                return stop;
                            }
                            // Not committed: run it again from scratch.
                            Some(false) => {}
                            None => {
                                self.errors.inc("gave_up");
                                let e = Error::FacilitatorUnavailable(
                                    "the ledger database did not come back in time; whether this write \
                                     was recorded is unknown: send the same signed payment again"
                                        .into(),
                                );
                                replies.into_iter().for_each(|r| r.fail(&e));
                                return stop;
                            }
                        }
                        continue;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.errors.inc("gave_up");
                let e = Error::FacilitatorUnavailable(
                    "the ledger database cannot be reached; nothing was charged".into(),
                );
                replies.into_iter().for_each(|r| r.fail(&e));
                return stop;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// A new connection holding a stream.
    async fn reconnect(&mut self) -> std::result::Result<(), tokio_postgres::Error> {
        let client = pg::connect(&self.cfg).await?;
        self.session = Some(Session::open(client).await?);
        Ok(())
    }

    /// After a COMMIT whose answer was lost: reconnect and look for what the attempt wrote.
    /// `None` if the database could not be asked before `deadline`.
    async fn landed(&mut self, a: &Attempt, deadline: tokio::time::Instant) -> Option<bool> {
        let mut wait = Duration::from_millis(50);
        while tokio::time::Instant::now() < deadline {
            if self.session.is_some() || self.reconnect().await.is_ok() {
                let s = self.session.as_ref().expect("connected");
                let found = async {
                    let txs: i64 = s
                        .client
                        .query_one("SELECT count(*) FROM transactions WHERE tx_hash = ANY($1)", &[&a.hashes])
                        .await?
                        .get(0);
                    let provs: i64 = s
                        .client
                        .query_one("SELECT count(*) FROM providers WHERE account = ANY($1)", &[&a.providers])
                        .await?
                        .get(0);
                    Ok::<_, tokio_postgres::Error>((txs as usize, provs as usize))
                }
                .await;
                match found {
                    // All or nothing: the batch was one transaction.
                    Ok((txs, provs)) => return Some(txs == a.hashes.len() && provs == a.providers.len()),
                    Err(_) => self.session = None,
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        None
    }
}

fn lock_key(account: &str, nonce: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(account.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    i64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// An account as the batch sees it: read under its row lock, then moved by the batch's
/// transactions. A provider's account (`credit`) is only checked to exist, not locked: its
/// `balance` here is what the batch credits it, which goes to the writer's credit shard.
#[derive(Debug, Clone, Copy)]
struct Acct {
    balance: i64,
    topped_up: i64,
    exists: bool,
    touched: bool,
    credit: bool,
}

/// The batch's view of the database ([`Book`] for the rules) and the writes it collects.
struct Batch {
    stream: i64,
    head: Head,
    accounts: HashMap<String, Acct>,
    payments: HashMap<(String, String), StoredPayment>,
    // Collected writes, one column per vector (bulk `unnest` inserts).
    tx_seq: Vec<i64>,
    tx_kind: Vec<String>,
    tx_at: Vec<i64>,
    tx_record: Vec<String>,
    tx_prev: Vec<String>,
    tx_hash: Vec<String>,
    e_seq: Vec<i64>,
    e_account: Vec<String>,
    e_amount: Vec<i64>,
    pay_rows: Vec<(i64, String, rules::PaymentRow)>,
    providers: Vec<ProviderRow>,
}

impl Book for Batch {
    fn account(&mut self, id: &str) -> Result<(i64, i64)> {
        match self.accounts.get(id) {
            Some(a) if a.credit => {
                Err(Error::Internal(format!("account {id} is credited, not read, in a batch")))
            }
            Some(a) => Ok((a.balance, a.topped_up)),
            None => Ok((0, 0)),
        }
    }

    fn payment(&mut self, account: &str, nonce: &str) -> Result<Option<StoredPayment>> {
        Ok(self.payments.get(&(account.to_string(), nonce.to_string())).cloned())
    }

    fn link(&self, rec: &mut Record) -> Result<(String, String)> {
        rec.stream = Some(self.stream);
        rec.seq = self.head.seq + 1;
        let record = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        let hash = chain_hash(&self.head.hash, &record);
        Ok((record, hash))
    }

    fn post(&mut self, p: Posting<'_>) -> Result<()> {
        let rec = p.rec;
        let topup = rec.kind == "topup";
        // The rows were read (and locked) before the rules ran; a provider being paid must exist.
        match self.accounts.get(&rec.to) {
            Some(a) if a.exists || topup => {}
            _ => return Err(Error::Internal(format!("account {} does not exist", rec.to))),
        }
        let from =
            self.accounts.get_mut(&rec.from).ok_or_else(|| Error::Internal("payer not locked".into()))?;
        from.balance -= rec.amount;
        from.touched = true;
        let to = self.accounts.get_mut(&rec.to).expect("checked above");
        to.balance += rec.amount;
        to.touched = true;
        if topup {
            to.topped_up += rec.amount;
            to.exists = true;
        }
        self.tx_seq.push(rec.seq);
        self.tx_kind.push(rec.kind.clone());
        self.tx_at.push(rec.at as i64);
        self.tx_record.push(p.record.to_string());
        self.tx_prev.push(self.head.hash.clone());
        self.tx_hash.push(p.tx_hash.to_string());
        for (acct, amt) in [(&rec.from, -rec.amount), (&rec.to, rec.amount)] {
            self.e_seq.push(rec.seq);
            self.e_account.push(acct.clone());
            self.e_amount.push(amt);
        }
        if let Some(row) = p.payment {
            self.payments.insert(
                (row.account.clone(), row.nonce.clone()),
                StoredPayment {
                    payer: row.payer.clone(),
                    tx_hash: p.tx_hash.to_string(),
                    amount: row.amount,
                    token: row.token.clone(),
                    paid_at: row.paid_at,
                    expires_at: row.expires_at,
                },
            );
            self.pay_rows.push((rec.seq, p.tx_hash.to_string(), row));
        }
        self.head = Head { seq: rec.seq, hash: p.tx_hash.to_string() };
        Ok(())
    }

    fn add_provider(&mut self, p: &Provider) -> Result<()> {
        self.providers.push(ProviderRow::from(p));
        Ok(())
    }
}

fn classify(e: tokio_postgres::Error) -> Failed {
    if is_connection_error(&e) {
        Failed::Connection { in_doubt: None, error: e }
    } else if is_retryable(&e) {
        Failed::Retry(e)
    } else {
        Failed::Fatal(pg::pg_err(e))
    }
}

/// One attempt at a batch: lock, read, decide, write, commit.
async fn try_batch(
    s: &mut Session,
    works: &[Work],
    faucet_cap: u64,
    issuer_url: &str,
) -> std::result::Result<Attempt, Failed> {
    let fail = classify;
    // What the batch touches.
    let mut locks: BTreeSet<i64> = BTreeSet::new();
    let mut pay_keys: BTreeSet<(String, String)> = BTreeSet::new();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut credited: BTreeSet<String> = BTreeSet::new();
    let mut new_wallets: BTreeSet<String> = BTreeSet::new();
    for w in works {
        match w {
            Work::Pay(op) => {
                let (account, nonce) = (&op.provider.account, &op.verified.challenge.nonce);
                locks.insert(lock_key(account, nonce));
                pay_keys.insert((account.clone(), nonce.clone()));
                ids.insert(format!("wallet:{}", op.verified.payer.to_checksum()));
                credited.insert(super::provider_id(account));
            }
            Work::TopUp { address, .. } => {
                let id = super::wallet_id(address);
                ids.insert(id.clone());
                new_wallets.insert(id);
                ids.insert(super::FAUCET.to_string());
            }
            Work::CreateProvider(_) => {}
        }
    }
    let tx = s.client.transaction().await.map_err(&fail)?;
    if !locks.is_empty() {
        let keys: Vec<i64> = locks.into_iter().collect();
        tx.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) s",
            &[&keys],
        )
        .await
        .map_err(&fail)?;
    }
    if !new_wallets.is_empty() {
        let w: Vec<String> = new_wallets.into_iter().collect();
        tx.execute(
            "INSERT INTO accounts (id, kind) SELECT id, 'wallet' FROM unnest($1::text[]) AS id ORDER BY id \
             ON CONFLICT (id) DO NOTHING",
            &[&w],
        )
        .await
        .map_err(&fail)?;
    }
    let mut accounts = HashMap::with_capacity(ids.len());
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().cloned().collect();
        let rows = tx
            .query(
                "SELECT id, balance, topped_up FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&list],
            )
            .await
            .map_err(&fail)?;
        for r in rows {
            accounts.insert(
                r.get::<_, String>(0),
                Acct { balance: r.get(1), topped_up: r.get(2), exists: true, touched: false, credit: false },
            );
        }
        for id in ids {
            accounts.entry(id).or_insert(Acct {
                balance: 0,
                topped_up: 0,
                exists: false,
                touched: false,
                credit: false,
            });
        }
    }
    if !credited.is_empty() {
        // A provider's account is never deleted: reading that it exists needs no lock.
        let list: Vec<String> = credited.iter().cloned().collect();
        let found: BTreeSet<String> = tx
            .query("SELECT id FROM accounts WHERE id = ANY($1)", &[&list])
            .await
            .map_err(&fail)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in credited {
            let exists = found.contains(&id);
            accounts.insert(id, Acct { balance: 0, topped_up: 0, exists, touched: false, credit: true });
        }
    }
    let mut payments = HashMap::new();
    if !pay_keys.is_empty() {
        let (accts, nonces): (Vec<String>, Vec<String>) = pay_keys.into_iter().unzip();
        let rows = tx
            .query(
                "SELECT p.account, p.nonce, p.payer, p.tx_hash, p.amount, p.token, p.paid_at, p.expires_at \
                 FROM payments p JOIN unnest($1::text[], $2::text[]) AS k(account, nonce) \
                 ON p.account = k.account AND p.nonce = k.nonce",
                &[&accts, &nonces],
            )
            .await
            .map_err(&fail)?;
        for r in rows {
            payments.insert(
                (r.get(0), r.get(1)),
                StoredPayment {
                    payer: r.get(2),
                    tx_hash: r.get(3),
                    amount: r.get(4),
                    token: r.get(5),
                    paid_at: r.get(6),
                    expires_at: r.get(7),
                },
            );
        }
    }
    let mut b = Batch {
        stream: s.stream,
        head: s.head.clone(),
        accounts,
        payments,
        tx_seq: Vec::new(),
        tx_kind: Vec::new(),
        tx_at: Vec::new(),
        tx_record: Vec::new(),
        tx_prev: Vec::new(),
        tx_hash: Vec::new(),
        e_seq: Vec::new(),
        e_account: Vec::new(),
        e_amount: Vec::new(),
        pay_rows: Vec::new(),
        providers: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(works.len());
    for w in works {
        outcomes.push(match w {
            Work::CreateProvider(p) => Outcome::Provider(rules::create_provider(&mut b, p)),
            Work::TopUp { address, amount, now } => {
                Outcome::TopUp(rules::top_up(&mut b, address, *amount, *now, faucet_cap))
            }
            Work::Pay(op) => Outcome::Pay(rules::pay(&mut b, op, issuer_url)),
        });
    }
    write(&tx, &b).await.map_err(&fail)?;
    let attempt = Attempt {
        outcomes,
        head: b.head.clone(),
        hashes: b.tx_hash.clone(),
        providers: b.providers.iter().map(|p| p.account.clone()).collect(),
    };
    match tx.commit().await {
        Ok(()) => Ok(attempt),
        Err(e) if is_connection_error(&e) => Err(Failed::Connection { in_doubt: Some(attempt), error: e }),
        Err(e) => Err(classify(e)),
    }
}

/// The batch's writes: one bulk statement per table.
async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    b: &Batch,
) -> std::result::Result<(), tokio_postgres::Error> {
    if !b.providers.is_empty() {
        let col = |f: fn(&ProviderRow) -> Vec<u8>| b.providers.iter().map(f).collect::<Vec<_>>();
        let accounts: Vec<String> = b.providers.iter().map(|p| p.account.clone()).collect();
        let modes: Vec<String> = b.providers.iter().map(|p| p.mode.clone()).collect();
        let algs: Vec<String> = b.providers.iter().map(|p| p.token_alg.clone()).collect();
        let names: Vec<Option<String>> = b.providers.iter().map(|p| p.name.clone()).collect();
        let created: Vec<i64> = b.providers.iter().map(|p| p.created_at).collect();
        let canonical: Vec<Option<String>> = b.providers.iter().map(|p| p.canonical.clone()).collect();
        let retire: Vec<Option<i64>> = b.providers.iter().map(|p| p.retire_at).collect();
        tx.execute(
            "INSERT INTO providers (account, mode, token_alg, name, challenge_mac, token_hs256, auth_digest, created_at, canonical, retire_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bigint[], $9::text[], $10::bigint[])",
            &[
                &accounts,
                &modes,
                &algs,
                &names,
                &col(|p| p.challenge_mac.clone()),
                &col(|p| p.token_hs256.clone()),
                &col(|p| p.auth_digest.clone()),
                &created,
                &canonical,
                &retire,
            ],
        )
        .await?;
        for p in &b.providers {
            if let (Some(at), Some(canonical)) = (p.retire_others_at, &p.canonical) {
                // A rotation: the account's other secrets stay valid until `at` (or sooner).
                tx.execute(
                    "UPDATE providers SET retire_at = $1 WHERE (account = $2 OR canonical = $2) \
                     AND account != $3 AND (retire_at IS NULL OR retire_at > $1)",
                    &[&at, canonical, &p.account],
                )
                .await?;
            }
        }
        let ids: Vec<String> = b
            .providers
            .iter()
            .filter(|p| p.canonical.is_none())
            .map(|p| super::provider_id(&p.account))
            .collect();
        tx.execute("INSERT INTO accounts (id, kind) SELECT unnest($1::text[]), 'provider'", &[&ids]).await?;
    }
    if b.tx_seq.is_empty() {
        return Ok(());
    }
    let streams = vec![b.stream; b.tx_seq.len()];
    tx.execute(
        "INSERT INTO transactions (stream, seq, kind, created_at, record, prev_hash, tx_hash) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])",
        &[&streams, &b.tx_seq, &b.tx_kind, &b.tx_at, &b.tx_record, &b.tx_prev, &b.tx_hash],
    )
    .await?;
    let e_streams = vec![b.stream; b.e_seq.len()];
    tx.execute(
        "INSERT INTO entries (stream, tx_seq, account, amount) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])",
        &[&e_streams, &b.e_seq, &b.e_account, &b.e_amount],
    )
    .await?;
    if !b.pay_rows.is_empty() {
        let n = b.pay_rows.len();
        let mut c = PayCols::with_capacity(n);
        for (seq, hash, r) in &b.pay_rows {
            c.account.push(r.account.clone());
            c.nonce.push(r.nonce.clone());
            c.seq.push(*seq);
            c.hash.push(hash.clone());
            c.payer.push(r.payer.clone());
            c.amount.push(r.amount);
            c.currency.push(r.currency.clone());
            c.resource.push(r.resource.clone());
            c.token.push(r.token.clone());
            c.paid_at.push(r.paid_at);
            c.expires_at.push(r.expires_at);
        }
        let streams = vec![b.stream; n];
        tx.execute(
            "INSERT INTO payments (account, nonce, stream, tx_seq, tx_hash, payer, amount, currency, resource, \
             token, paid_at, expires_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])",
            &[
                &c.account,
                &c.nonce,
                &streams,
                &c.seq,
                &c.hash,
                &c.payer,
                &c.amount,
                &c.currency,
                &c.resource,
                &c.token,
                &c.paid_at,
                &c.expires_at,
            ],
        )
        .await?;
    }
    let (mut ids, mut bal, mut top) = (Vec::new(), Vec::new(), Vec::new());
    let (mut credit_ids, mut credits) = (Vec::new(), Vec::new());
    for (id, a) in &b.accounts {
        if a.touched && a.credit {
            credit_ids.push(id.clone());
            credits.push(a.balance);
        } else if a.touched {
            ids.push(id.clone());
            bal.push(a.balance);
            top.push(a.topped_up);
        }
    }
    tx.execute(
        "UPDATE accounts AS a SET balance = v.balance, topped_up = v.topped_up \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, balance, topped_up) WHERE a.id = v.id",
        &[&ids, &bal, &top],
    )
    .await?;
    if !credit_ids.is_empty() {
        // Last, in account order: the shard rows' locks come after every other lock.
        tx.execute(
            "INSERT INTO credit_shards (account, shard, balance) \
             SELECT v.account, $2, v.amount FROM unnest($1::text[], $3::bigint[]) AS v(account, amount) \
             ORDER BY v.account \
             ON CONFLICT (account, shard) DO UPDATE SET balance = credit_shards.balance + excluded.balance",
            &[&credit_ids, &credit_shard(b.stream), &credits],
        )
        .await?;
    }
    Ok(())
}

struct PayCols {
    account: Vec<String>,
    nonce: Vec<String>,
    seq: Vec<i64>,
    hash: Vec<String>,
    payer: Vec<String>,
    amount: Vec<i64>,
    currency: Vec<String>,
    resource: Vec<String>,
    token: Vec<String>,
    paid_at: Vec<i64>,
    expires_at: Vec<i64>,
}

impl PayCols {
    fn with_capacity(n: usize) -> Self {
        PayCols {
            account: Vec::with_capacity(n),
            nonce: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
            payer: Vec::with_capacity(n),
            amount: Vec::with_capacity(n),
            currency: Vec::with_capacity(n),
            resource: Vec::with_capacity(n),
            token: Vec::with_capacity(n),
            paid_at: Vec::with_capacity(n),
            expires_at: Vec::with_capacity(n),
        }
    }
}
