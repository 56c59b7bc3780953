//! `vlexivo ledger verify`: recompute every chain and check double entry, payment rows and
//! balances against the records. The checks are written once ([`Verifier`]); each engine only
//! reads its rows, in chain order, inside one read-only snapshot.

use super::{FAUCET, GENESIS_HASH, Record, chain_hash, provider_id};
use crate::server::checkpoint::ChainHead;
use crate::server::db::db_err;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use vlexivo_core::Error;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifySummary {
    pub transactions: u64,
    pub payments: u64,
    pub topups: u64,
    pub accounts: u64,
    /// Sum of all payments and of all top-ups, atomic units.
    pub paid_atomic: u64,
    pub topped_up_atomic: u64,
    /// The chain's last hash (SQLite); with several chains, SHA-256 over `stream:head` lines.
    pub head: String,
    /// Every chain (PostgreSQL streams; one entry without a stream on SQLite).
    pub streams: Vec<StreamSummary>,
    /// With [`VerifyOptions::checkpoint`]: the heads found exactly as the checkpoint signed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_heads: Option<usize>,
    /// With [`VerifyOptions::tx`]: where that transaction is (under the checkpoint, if one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<ChainHead>,
}

/// What to check beyond the ledger's own consistency.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Heads from a checkpoint kept outside the database (already signature-checked): each
    /// chain must hold exactly this hash at this sequence number. A database rewritten at or
    /// before a head, even with every later hash recomputed, fails here.
    pub checkpoint: Option<Vec<ChainHead>>,
    /// A transaction hash (a receipt's `tx_hash`) that must be in the ledger, and under the
    /// checkpoint's heads when there is one.
    pub tx: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<i64>,
    pub transactions: u64,
    pub head: String,
}

#[derive(Debug, Clone)]
pub enum VerifyError {
    /// The database could not be read.
    Db(Error),
    /// The first inconsistency found; `seq` (and `stream`) name the transaction when there is one.
    Bad { stream: Option<i64>, seq: Option<i64>, what: String },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Db(e) => write!(f, "{e}"),
            VerifyError::Bad { stream: Some(st), seq: Some(s), what } => {
                write!(f, "stream {st} transaction {s}: {what}")
            }
            VerifyError::Bad { seq: Some(s), what, .. } => write!(f, "transaction {s}: {what}"),
            VerifyError::Bad { seq: None, what, .. } => f.write_str(what),
        }
    }
}

impl std::error::Error for VerifyError {}

type VResult<T> = std::result::Result<T, VerifyError>;

fn bad(what: impl Into<String>) -> VerifyError {
    VerifyError::Bad { stream: None, seq: None, what: what.into() }
}

/// One transaction row with its entries and payment row, as stored.
#[derive(Debug, Default)]
pub(crate) struct TxRow {
    pub stream: Option<i64>,
    pub seq: i64,
    pub kind: String,
    pub created_at: i64,
    pub record: String,
    pub prev_hash: String,
    pub tx_hash: String,
    pub entries: Vec<(String, i64)>,
    pub payment: Option<PaymentCheck>,
}

/// The payment row fields the records must match.
#[derive(Debug)]
pub(crate) struct PaymentCheck {
    pub account: String,
    pub nonce: String,
    pub tx_hash: String,
    pub payer: String,
    pub amount: i64,
    pub currency: String,
    pub resource: String,
}

struct Chain {
    next_seq: i64,
    head: String,
    transactions: u64,
}

/// The checks, fed rows chain by chain in sequence order.
#[derive(Default)]
pub(crate) struct Verifier {
    /// Checkpoint heads not reached yet, by stream.
    expect: BTreeMap<Option<i64>, ChainHead>,
    opts: VerifyOptions,
    sum: VerifySummary,
    balances: HashMap<String, i64>,
    topped: HashMap<String, i64>,
    chains: BTreeMap<Option<i64>, Chain>,
    total: i64,
}

impl Verifier {
    pub fn new(opts: VerifyOptions) -> Self {
        let expect = opts.checkpoint.iter().flatten().map(|h| (h.stream, h.clone())).collect();
        Verifier { expect, opts, ..Default::default() }
    }

    pub fn tx(&mut self, t: TxRow) -> VResult<()> {
        let (stream, seq) = (t.stream, t.seq);
        let at = |what: String| VerifyError::Bad { stream, seq: Some(seq), what };
        let chain = self.chains.entry(stream).or_insert(Chain {
            next_seq: 1,
            head: GENESIS_HASH.into(),
            transactions: 0,
        });
        if seq != chain.next_seq {
            return Err(VerifyError::Bad {
                stream,
                seq: Some(chain.next_seq),
                what: format!("missing (next stored transaction is {seq})"),
            });
        }
        chain.next_seq += 1;
        if t.prev_hash != chain.head {
            return Err(at("prev_hash does not match the previous transaction's hash".into()));
        }
        if chain_hash(&t.prev_hash, &t.record) != t.tx_hash {
            return Err(at("tx_hash does not match its record".into()));
        }
        let rec: Record =
            serde_json::from_str(&t.record).map_err(|_| at("record is not canonical JSON".into()))?;
        if serde_json::to_string(&rec).ok().as_deref() != Some(t.record.as_str()) {
            return Err(at("record is not canonical JSON".into()));
        }
        if rec.stream != stream || rec.seq != seq || rec.kind != t.kind || rec.at as i64 != t.created_at {
            return Err(at("row does not match its record (stream, seq, kind or time)".into()));
        }
        if rec.amount <= 0 {
            return Err(at("amount is not positive".into()));
        }
        // Double entry: exactly from −amount and to +amount, summing to zero.
        let mut entries: BTreeMap<String, i64> = BTreeMap::new();
        let mut total = 0i64;
        for (acct, amt) in &t.entries {
            total = total.checked_add(*amt).ok_or_else(|| at("entry overflow".into()))?;
            entries.insert(acct.clone(), *amt);
        }
        if total != 0 {
            return Err(at(format!("entries sum to {total}, not zero")));
        }
        if t.entries.len() != 2
            || entries.get(&rec.from) != Some(&-rec.amount)
            || entries.get(&rec.to) != Some(&rec.amount)
        {
            return Err(at("entries do not match the record".into()));
        }
        match rec.kind.as_str() {
            "topup" => {
                if rec.from != FAUCET || !rec.to.starts_with("wallet:") {
                    return Err(at("top-up is not from the faucet to a wallet".into()));
                }
                if t.payment.is_some() {
                    return Err(at("a top-up has a payment row".into()));
                }
                *self.topped.entry(rec.to.clone()).or_default() += rec.amount;
                self.sum.topups += 1;
                self.sum.topped_up_atomic += rec.amount as u64;
            }
            "payment" => {
                let Some(p) = &t.payment else { return Err(at("payment row is missing".into())) };
                let matches = provider_id(&p.account) == rec.to
                    && format!("wallet:{}", p.payer) == rec.from
                    && Some(&p.nonce) == rec.nonce.as_ref()
                    && p.tx_hash == t.tx_hash
                    && p.amount == rec.amount
                    && p.currency == rec.currency
                    && Some(&p.resource) == rec.resource.as_ref();
                if !matches {
                    return Err(at("payment row does not match its record".into()));
                }
                self.sum.payments += 1;
                self.sum.paid_atomic += rec.amount as u64;
            }
            other => return Err(at(format!("unknown kind {other:?}"))),
        }
        for (acct, amt) in entries {
            *self.balances.entry(acct).or_default() += amt;
        }
        if let Some(want) = self.expect.get(&stream).filter(|h| h.seq == seq) {
            if want.hash != t.tx_hash {
                return Err(at(format!(
                    "hash {} differs from the checkpoint's {}: the ledger was rewritten at or before this transaction",
                    t.tx_hash, want.hash
                )));
            }
            self.expect.remove(&stream);
            *self.sum.checkpoint_heads.get_or_insert(0) += 1;
        }
        if self.opts.tx.as_deref() == Some(t.tx_hash.as_str()) {
            self.sum.tx = Some(ChainHead { stream, seq, hash: t.tx_hash.clone() });
        }
        chain.head = t.tx_hash;
        chain.transactions += 1;
        self.sum.transactions += 1;
        Ok(())
    }

    /// Rows no transaction accounts for (orphans) are errors.
    pub fn totals(&self, entries: i64, payments: i64) -> VResult<()> {
        if entries as u64 != 2 * self.sum.transactions {
            return Err(bad(format!(
                "{entries} entries for {} transactions (orphan entries)",
                self.sum.transactions
            )));
        }
        if payments as u64 != self.sum.payments {
            return Err(bad(format!(
                "{payments} payment rows for {} payment transactions",
                self.sum.payments
            )));
        }
        Ok(())
    }

    /// One stored account; every account must be fed.
    pub fn account(&mut self, id: &str, kind: &str, balance: i64, topped_up: i64) -> VResult<()> {
        let expected = self.balances.remove(id).unwrap_or(0);
        if balance != expected {
            return Err(bad(format!("account {id}: balance {balance} but its entries sum to {expected}")));
        }
        if balance < 0 && kind != "faucet" {
            return Err(bad(format!("account {id}: negative balance")));
        }
        if topped_up != self.topped.remove(id).unwrap_or(0) {
            return Err(bad(format!("account {id}: top-up total does not match its top-ups")));
        }
        self.total += balance;
        self.sum.accounts += 1;
        Ok(())
    }

    pub fn finish(mut self) -> VResult<VerifySummary> {
        if let Some((stream, h)) = self.expect.iter().next() {
            // A genesis head (an empty chain at checkpoint time) is trivially still there.
            if !(h.seq == 0 && h.hash == GENESIS_HASH) {
                let ends = self.chains.get(stream).map_or(0, |c| c.next_seq - 1);
                return Err(VerifyError::Bad {
                    stream: *stream,
                    seq: Some(h.seq),
                    what: format!(
                        "in the checkpoint but not in the ledger (its chain ends at {ends}): transactions were removed"
                    ),
                });
            }
        }
        if let Some(want) = &self.opts.tx {
            let Some(at) = &self.sum.tx else {
                return Err(bad(format!("transaction {want} is not in the ledger")));
            };
            if let Some(heads) = &self.opts.checkpoint {
                let under = heads.iter().any(|h| h.stream == at.stream && at.seq <= h.seq);
                if !under {
                    return Err(bad(format!(
                        "transaction {want} is in the ledger but not under the checkpoint (recorded after it)"
                    )));
                }
            }
        }
        if let Some((id, _)) = self.balances.into_iter().next() {
            return Err(bad(format!("entries name account {id}, which does not exist")));
        }
        if self.total != 0 {
            return Err(bad(format!("balances sum to {}, not zero", self.total)));
        }
        self.sum.streams = self
            .chains
            .iter()
            .map(|(s, c)| StreamSummary { stream: *s, transactions: c.transactions, head: c.head.clone() })
            .collect();
        self.sum.head = match self.sum.streams.as_slice() {
            [] => GENESIS_HASH.into(),
            [one] if one.stream.is_none() => one.head.clone(),
            many => {
                let mut h = Sha256::new();
                for s in many {
                    h.update(format!("{}:{}\n", s.stream.unwrap_or(0), s.head).as_bytes());
                }
                format!("0x{}", hex::encode(h.finalize()))
            }
        };
        Ok(self.sum)
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// Verify a SQLite ledger in one read transaction (a consistent snapshot even while a
/// facilitator is writing). Stops at the first bad record.
pub fn verify_sqlite(conn: &Connection) -> VResult<VerifySummary> {
    verify_sqlite_with(conn, VerifyOptions::default())
}

/// [`verify_sqlite`] with a kept checkpoint and/or a transaction to find.
pub fn verify_sqlite_with(conn: &Connection, opts: VerifyOptions) -> VResult<VerifySummary> {
    let dbe = |e: rusqlite::Error| VerifyError::Db(db_err(e));
    conn.execute_batch("BEGIN").map_err(dbe)?;
    let out = sqlite_inner(conn, opts);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn sqlite_inner(conn: &Connection, opts: VerifyOptions) -> VResult<VerifySummary> {
    let dbe = |e: rusqlite::Error| VerifyError::Db(db_err(e));
    let mut v = Verifier::new(opts);
    let mut entries_q = conn.prepare("SELECT account, amount FROM entries WHERE tx_seq = ?1").map_err(dbe)?;
    let mut pay_q = conn
        .prepare(
            "SELECT account, nonce, tx_hash, payer, amount, currency, resource FROM payments WHERE tx_seq = ?1",
        )
        .map_err(dbe)?;
    let mut txs = conn
        .prepare("SELECT seq, kind, created_at, record, prev_hash, tx_hash FROM transactions ORDER BY seq")
        .map_err(dbe)?;
    let mut rows = txs.query([]).map_err(dbe)?;
    while let Some(r) = rows.next().map_err(dbe)? {
        let seq: i64 = r.get(0).map_err(dbe)?;
        let entries = entries_q
            .query_map([seq], |e| Ok((e.get(0)?, e.get(1)?)))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(dbe)?;
        let payment = pay_q
            .query_row([seq], |p| {
                Ok(PaymentCheck {
                    account: p.get(0)?,
                    nonce: p.get(1)?,
                    tx_hash: p.get(2)?,
                    payer: p.get(3)?,
                    amount: p.get(4)?,
                    currency: p.get(5)?,
                    resource: p.get(6)?,
                })
            })
            .optional()
            .map_err(dbe)?;
        v.tx(TxRow {
            stream: None,
            seq,
            kind: r.get(1).map_err(dbe)?,
            created_at: r.get(2).map_err(dbe)?,
            record: r.get(3).map_err(dbe)?,
            prev_hash: r.get(4).map_err(dbe)?,
            tx_hash: r.get(5).map_err(dbe)?,
            entries,
            payment,
        })?;
    }
    drop(rows);
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(dbe);
    v.totals(count("SELECT COUNT(*) FROM entries")?, count("SELECT COUNT(*) FROM payments")?)?;
    let mut accts =
        conn.prepare("SELECT id, kind, balance, topped_up FROM accounts ORDER BY id").map_err(dbe)?;
    let mut rows = accts.query([]).map_err(dbe)?;
    while let Some(r) = rows.next().map_err(dbe)? {
        let (id, kind, balance, topped_up): (String, String, i64, i64) =
            (r.get(0).map_err(dbe)?, r.get(1).map_err(dbe)?, r.get(2).map_err(dbe)?, r.get(3).map_err(dbe)?);
        v.account(&id, &kind, balance, topped_up)?;
    }
    v.finish()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Verify a PostgreSQL ledger in one read-only, repeatable-read snapshot (facilitators may keep
/// writing), streaming the rows: every stream's chain in sequence order, each transaction with
/// its entries and payment row.
pub async fn verify_postgres(url: &str) -> VResult<VerifySummary> {
    verify_postgres_with(url, VerifyOptions::default()).await
}

/// [`verify_postgres`] with a kept checkpoint and/or a transaction to find.
pub async fn verify_postgres_with(url: &str, opts: VerifyOptions) -> VResult<VerifySummary> {
    use futures_util::TryStreamExt;
    let dbe = |e: tokio_postgres::Error| VerifyError::Db(crate::server::pg::pg_err(e));
    let cfg = crate::server::pg::config(url).map_err(VerifyError::Db)?;
    let mut client = crate::server::pg::connect(&cfg).await.map_err(dbe)?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(dbe)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('vlexivo.transactions') IS NOT NULL", &[])
        .await
        .map_err(dbe)?
        .get(0);
    if !exists {
        return Err(bad("no vlexivo ledger in this database"));
    }
    let mut v = Verifier::new(opts);
    let rows = tx
        .query_raw(
            "SELECT t.stream, t.seq, t.kind, t.created_at, t.record, t.prev_hash, t.tx_hash, \
                    e.accounts, e.amounts, \
                    p.account, p.nonce, p.tx_hash, p.payer, p.amount, p.currency, p.resource \
             FROM transactions t \
             LEFT JOIN LATERAL (SELECT array_agg(account ORDER BY account) AS accounts, \
                                       array_agg(amount ORDER BY account) AS amounts \
                                FROM entries WHERE stream = t.stream AND tx_seq = t.seq) e ON true \
             LEFT JOIN payments p ON p.stream = t.stream AND p.tx_seq = t.seq \
             ORDER BY t.stream, t.seq",
            std::iter::empty::<i64>(),
        )
        .await
        .map_err(dbe)?;
    futures_util::pin_mut!(rows);
    while let Some(r) = rows.try_next().await.map_err(dbe)? {
        let accounts: Option<Vec<String>> = r.get(7);
        let amounts: Option<Vec<i64>> = r.get(8);
        let entries = accounts.unwrap_or_default().into_iter().zip(amounts.unwrap_or_default()).collect();
        let payment = r.get::<_, Option<String>>(9).map(|account| PaymentCheck {
            account,
            nonce: r.get(10),
            tx_hash: r.get(11),
            payer: r.get(12),
            amount: r.get(13),
            currency: r.get(14),
            resource: r.get(15),
        });
        v.tx(TxRow {
            stream: Some(r.get(0)),
            seq: r.get(1),
            kind: r.get(2),
            created_at: r.get(3),
            record: r.get(4),
            prev_hash: r.get(5),
            tx_hash: r.get(6),
            entries,
            payment,
        })?;
    }
    let counts = tx
        .query_one("SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM payments)", &[])
        .await
        .map_err(dbe)?;
    v.totals(counts.get(0), counts.get(1))?;
    // A provider's balance is its row plus its credit shards (ledger::postgres); a shard of no
    // account is money nobody holds.
    let orphan: Option<String> = tx
        .query_opt(
            "SELECT s.account FROM credit_shards s LEFT JOIN accounts a ON a.id = s.account \
             WHERE a.id IS NULL OR a.kind <> 'provider' LIMIT 1",
            &[],
        )
        .await
        .map_err(dbe)?
        .map(|r| r.get(0));
    if let Some(id) = orphan {
        return Err(bad(format!("credit shards of {id}, which is not a provider's account")));
    }
    let accts = tx
        .query_raw(
            "SELECT a.id, a.kind, a.balance + coalesce(s.balance, 0), a.topped_up FROM accounts a \
             LEFT JOIN (SELECT account, sum(balance)::bigint AS balance FROM credit_shards GROUP BY account) s \
             ON s.account = a.id ORDER BY a.id",
            std::iter::empty::<i64>(),
        )
        .await
        .map_err(dbe)?;
    futures_util::pin_mut!(accts);
    while let Some(r) = accts.try_next().await.map_err(dbe)? {
        v.account(r.get(0), r.get(1), r.get(2), r.get(3))?;
    }
    tx.commit().await.map_err(dbe)?;
    v.finish()
}
