//! The service's reads (balances, revenue, payment lists, providers), off the writer: a few
//! read-only SQLite connections (WAL lets them run beside the writer) or a PostgreSQL pool.

use super::api::usd;
use super::checkpoint::ChainHead;
use super::db;
use super::ledger::provider_id;
use super::pg::{pg_err, pool_err};
use super::providers::{COLUMNS, ProviderRow};
use super::types::PaymentRecord;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use vlexivo_core::paging::PaymentFilter;
use vlexivo_core::{Error, Result};

/// What payments are grouped by (`Reads::group`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupBy {
    Route,
    Payer,
    /// One group of every payment (totals).
    All,
}

/// Payments of one group: how many and their sum in atomic units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub key: String,
    pub count: i64,
    pub sum: i64,
}

/// Payments of one time bucket, starting at `at` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    pub at: i64,
    pub count: i64,
    pub sum: i64,
}

pub(crate) enum Reads {
    Sqlite(Arc<SqliteReaders>),
    Postgres(deadpool_postgres::Pool),
}

pub(crate) struct SqliteReaders {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl SqliteReaders {
    pub fn new(conns: Vec<Connection>) -> Arc<Self> {
        Arc::new(Self { conns: conns.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) })
    }

    /// Run a read on a free connection, off the async workers.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = me.next.fetch_add(1, Ordering::Relaxed);
            // Take a free connection if there is one; otherwise wait on our turn's.
            let n = me.conns.len();
            let guard = (0..n)
                .find_map(|i| me.conns[(start + i) % n].try_lock())
                .unwrap_or_else(|| me.conns[start % n].lock());
            f(&guard).map_err(db::db_err)
        })
        .await
        .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }
}

impl Reads {
    /// A wallet's balance in atomic units (0 if it never received anything).
    pub async fn balance(&self, id: String) -> Result<i64> {
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    c.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
                        .query_row([id], |r| r.get(0))
                        .optional()
                        .map(|b| b.unwrap_or(0))
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let st =
                    c.prepare_cached("SELECT balance FROM accounts WHERE id = $1").await.map_err(pg_err)?;
                Ok(c.query_opt(&st, &[&id]).await.map_err(pg_err)?.map(|r| r.get(0)).unwrap_or(0))
            }
        }
    }

    /// A provider's balance (its revenue) and number of payments.
    pub async fn revenue(&self, account: String) -> Result<(i64, i64)> {
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let total: i64 = c
                        .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
                        .query_row([provider_id(&account)], |r| r.get(0))?;
                    let count: i64 = c
                        .prepare_cached("SELECT COUNT(*) FROM payments WHERE account = ?1")?
                        .query_row([&account], |r| r.get(0))?;
                    Ok((total, count))
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let row = c
                    .query_one(
                        // The account's row plus its credit shards (ledger::postgres).
                        "SELECT (SELECT balance FROM accounts WHERE id = $1) \
                                + (SELECT coalesce(sum(balance), 0)::bigint FROM credit_shards WHERE account = $1), \
                         (SELECT count(*) FROM payments WHERE account = $2)",
                        &[&provider_id(&account), &account],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok((row.get::<_, Option<i64>>(0).unwrap_or(0), row.get(1)))
            }
        }
    }

    /// How many payments (and their sum, atomic units) `payer` made to `account` since
    /// `since` (unix seconds, inclusive).
    pub async fn usage(&self, account: String, payer: String, since: u64) -> Result<(i64, i64)> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    c.prepare_cached(
                        "SELECT count(*), coalesce(sum(amount), 0) FROM payments \
                         WHERE account = ?1 AND payer = ?2 AND paid_at >= ?3",
                    )?
                    .query_row(rusqlite::params![account, payer, since], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let st = c
                    .prepare_cached(
                        "SELECT count(*), coalesce(sum(amount), 0)::bigint FROM payments \
                         WHERE account = $1 AND payer = $2 AND paid_at >= $3",
                    )
                    .await
                    .map_err(pg_err)?;
                let row = c.query_one(&st, &[&account, &payer, &since]).await.map_err(pg_err)?;
                Ok((row.get(0), row.get(1)))
            }
        }
    }

    /// A provider's payments under `f`, newest first, each with its position (the ledger's
    /// order); with `before`, only those older than that position.
    pub async fn payments(
        &self,
        account: String,
        f: PaymentFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, PaymentRecord)>> {
        const COLS: &str = "nonce, payer, amount, currency, tx_hash, resource, paid_at";
        let record = |nonce, payer, amount, currency, tx_hash, resource, paid_at: i64| PaymentRecord {
            nonce,
            payer,
            amount: usd(amount),
            currency,
            tx_hash,
            resource,
            paid_at: paid_at as u64,
            state: None,
            block: None,
            failure: None,
            call_index: None,
            reorgs: None,
        };
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let mut s = c.prepare_cached(&format!(
                        "SELECT tx_seq, {COLS} FROM payments WHERE account = ?1 \
                         AND (?2 IS NULL OR tx_seq < ?2) AND (?3 IS NULL OR resource = ?3) \
                         AND (?4 IS NULL OR payer = ?4) AND (?5 IS NULL OR paid_at >= ?5) \
                         AND (?6 IS NULL OR paid_at < ?6) ORDER BY tx_seq DESC LIMIT ?7"
                    ))?;
                    let rows = s.query_map(
                        rusqlite::params![account, before, f.route, f.payer, f.from, f.to, limit],
                        |r| {
                            Ok((
                                r.get(0)?,
                                record(
                                    r.get(1)?,
                                    r.get(2)?,
                                    r.get(3)?,
                                    r.get(4)?,
                                    r.get(5)?,
                                    r.get(6)?,
                                    r.get(7)?,
                                ),
                            ))
                        },
                    )?;
                    rows.collect::<std::result::Result<Vec<_>, _>>()
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows = c
                    .query(
                        &format!(
                            "SELECT id, {COLS} FROM payments WHERE account = $1 \
                             AND ($2::bigint IS NULL OR id < $2) AND ($3::text IS NULL OR resource = $3) \
                             AND ($4::text IS NULL OR payer = $4) AND ($5::bigint IS NULL OR paid_at >= $5) \
                             AND ($6::bigint IS NULL OR paid_at < $6) ORDER BY id DESC LIMIT $7"
                        ),
                        &[&account, &before, &f.route, &f.payer, &f.from, &f.to, &i64::from(limit)],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            r.get(0),
                            record(r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)),
                        )
                    })
                    .collect())
            }
        }
    }

    /// Count and sum (atomic units) of a provider's payments in `[from, to)`, grouped by `by`,
    /// largest sum first, at most `limit` groups.
    pub async fn group(
        &self,
        account: String,
        by: GroupBy,
        from: Option<i64>,
        to: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Group>> {
        let (key, order) = match by {
            GroupBy::Route => ("resource", "s DESC, k"),
            GroupBy::Payer => ("payer", "s DESC, k"),
            GroupBy::All => ("''", "k"),
        };
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let mut s = c.prepare_cached(&format!(
                        "SELECT {key} AS k, count(*), sum(amount) AS s FROM payments WHERE account = ?1 \
                         AND (?2 IS NULL OR paid_at >= ?2) AND (?3 IS NULL OR paid_at < ?3) \
                         GROUP BY k ORDER BY {order} LIMIT ?4"
                    ))?;
                    let rows = s.query_map(rusqlite::params![account, from, to, limit], |r| {
                        Ok(Group { key: r.get(0)?, count: r.get(1)?, sum: r.get(2)? })
                    })?;
                    rows.collect::<std::result::Result<Vec<_>, _>>()
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows = c
                    .query(
                        &format!(
                            "SELECT {key}::text AS k, count(*), sum(amount)::bigint AS s FROM payments \
                             WHERE account = $1 AND ($2::bigint IS NULL OR paid_at >= $2) \
                             AND ($3::bigint IS NULL OR paid_at < $3) GROUP BY k ORDER BY {order} LIMIT $4"
                        ),
                        &[&account, &from, &to, &i64::from(limit)],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(rows.iter().map(|r| Group { key: r.get(0), count: r.get(1), sum: r.get(2) }).collect())
            }
        }
    }

    /// Count and sum of a provider's payments in `[from, to)` per `bucket` seconds, oldest first
    /// (the bucket's start time; buckets without payments are absent).
    pub async fn series(
        &self,
        account: String,
        from: Option<i64>,
        to: Option<i64>,
        bucket: i64,
    ) -> Result<Vec<Point>> {
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let mut s = c.prepare_cached(
                        "SELECT (paid_at / ?4) * ?4 AS t, count(*), sum(amount) FROM payments \
                         WHERE account = ?1 AND (?2 IS NULL OR paid_at >= ?2) AND (?3 IS NULL OR paid_at < ?3) \
                         GROUP BY t ORDER BY t",
                    )?;
                    let rows = s.query_map(rusqlite::params![account, from, to, bucket], |r| {
                        Ok(Point { at: r.get(0)?, count: r.get(1)?, sum: r.get(2)? })
                    })?;
                    rows.collect::<std::result::Result<Vec<_>, _>>()
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows = c
                    .query(
                        "SELECT (paid_at / $4) * $4 AS t, count(*), sum(amount)::bigint FROM payments \
                         WHERE account = $1 AND ($2::bigint IS NULL OR paid_at >= $2) \
                         AND ($3::bigint IS NULL OR paid_at < $3) GROUP BY t ORDER BY t",
                        &[&account, &from, &to, &bucket],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(rows.iter().map(|r| Point { at: r.get(0), count: r.get(1), sum: r.get(2) }).collect())
            }
        }
    }

    /// Which database, for health answers.
    pub fn kind(&self) -> &'static str {
        match self {
            Reads::Sqlite(_) => "sqlite",
            Reads::Postgres(_) => "postgres",
        }
    }

    /// One query on the database (readiness: it answers, and the schema is there).
    pub async fn ping(&self) -> Result<()> {
        match self {
            Reads::Sqlite(r) => r.run(|c| c.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))).await,
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                c.query_one("SELECT count(*) FROM meta", &[]).await.map_err(pg_err)?;
                Ok(())
            }
        }
    }

    /// Every chain's head (last sequence number and hash), by stream.
    pub async fn heads(&self) -> Result<Vec<ChainHead>> {
        match self {
            Reads::Sqlite(r) => {
                r.run(|c| {
                    c.prepare_cached("SELECT seq, tx_hash FROM transactions ORDER BY seq DESC LIMIT 1")?
                        .query_row([], |r| Ok(ChainHead { stream: None, seq: r.get(0)?, hash: r.get(1)? }))
                        .optional()
                        .map(|h| h.into_iter().collect())
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let rows = c
                    .query(
                        "SELECT DISTINCT ON (stream) stream, seq, tx_hash FROM transactions \
                         ORDER BY stream, seq DESC",
                        &[],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(rows
                    .iter()
                    .map(|r| ChainHead { stream: Some(r.get(0)), seq: r.get(1), hash: r.get(2) })
                    .collect())
            }
        }
    }

    /// A stored provider (another facilitator on the same database may have onboarded it).
    pub async fn provider(&self, account: String) -> Result<Option<ProviderRow>> {
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    c.prepare_cached(&format!("SELECT {COLUMNS} FROM providers WHERE account = ?1"))?
                        .query_row([account], ProviderRow::from_sqlite)
                        .optional()
                })
                .await
            }
            Reads::Postgres(p) => {
                let c = p.get().await.map_err(pool_err)?;
                let row = c
                    .query_opt(&format!("SELECT {COLUMNS} FROM providers WHERE account = $1"), &[&account])
                    .await
                    .map_err(pg_err)?;
                row.map(|r| ProviderRow::from_pg(&r)).transpose().map_err(pg_err)
            }
        }
    }
}

/// The facilitator's Ed25519 key (created once, whichever facilitator starts first), the
/// retired keys and every stored provider, on PostgreSQL; plain keys are sealed when this
/// facilitator has a master key (compare-and-set: facilitators starting together may both seal
/// a row, either result opens).
pub(crate) async fn load_pg(
    client: &tokio_postgres::Client,
    entropy: &dyn vlexivo_core::env::Entropy,
    at_rest: &super::at_rest::AtRest,
) -> Result<super::Loaded> {
    use super::at_rest::SEED_AAD;
    use vlexivo_core::token::Ed25519Key;
    let fresh = Ed25519Key::generate(entropy);
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&super::META_ED25519_SEED, &at_rest.seal(SEED_AAD, &fresh.seed(), entropy)],
        )
        .await
        .map_err(pg_err)?;
    let stored: Vec<u8> = client
        .query_one("SELECT value FROM meta WHERE key = $1", &[&super::META_ED25519_SEED])
        .await
        .map_err(pg_err)?
        .get(0);
    let key = Ed25519Key::from_seed(at_rest.open_or_plain(SEED_AAD, &stored)?)?;
    if at_rest.needs_sealing(&stored) {
        client
            .execute(
                "UPDATE meta SET value = $2 WHERE key = $1 AND value = $3",
                &[&super::META_ED25519_SEED, &at_rest.seal(SEED_AAD, &key.seed(), entropy), &stored],
            )
            .await
            .map_err(pg_err)?;
    }
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&super::META_ED25519_PUBLIC, &&key.public_key()[..]],
        )
        .await
        .map_err(pg_err)?;
    let retired: Option<Vec<u8>> = client
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&super::META_ED25519_RETIRED])
        .await
        .map_err(pg_err)?
        .map(|r| r.get(0));
    let retired = super::retired_keys(retired.as_deref())?;
    let mut rows = client
        .query(&format!("SELECT {COLUMNS} FROM providers"), &[])
        .await
        .map_err(pg_err)?
        .iter()
        .map(ProviderRow::from_pg)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(pg_err)?;
    super::check_sealing_policy(at_rest, &rows)?;
    for row in &mut rows {
        let (mac, tok) = (row.challenge_mac.clone(), row.token_hs256.clone());
        if row.seal_if_plain(at_rest, entropy)? {
            client
                .execute(
                    "UPDATE providers SET challenge_mac = $2, token_hs256 = $3 \
                     WHERE account = $1 AND challenge_mac = $4 AND token_hs256 = $5",
                    &[&row.account, &row.challenge_mac, &row.token_hs256, &mac, &tok],
                )
                .await
                .map_err(pg_err)?;
        }
    }
    Ok((key, retired, rows))
}
