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

impl GroupBy {
    /// The column grouped by and the groups' order.
    fn key_and_order(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Route => ("resource", "s DESC, k"),
            GroupBy::Payer => ("payer", "s DESC, k"),
            GroupBy::All => ("''", "k"),
        }
    }
}

// The SQLite reads of a provider's payments by time and by payer, each answered from one index
// alone (`payments_by_time`, `payments_by_payer`: migration 8), over the range's rows only.

/// `Reads::usage`: ?1 account, ?2 payer, ?3 since.
const USAGE_SQLITE: &str = "SELECT count(*), coalesce(sum(amount), 0) FROM payments \
     WHERE account = ?1 AND payer = ?2 AND paid_at >= ?3";

/// `Reads::series`: ?1 account, `[?2, ?3)`, ?4 the bucket's seconds.
const SERIES_SQLITE: &str = "SELECT (paid_at / ?4) * ?4 AS t, count(*), sum(amount) FROM payments \
     WHERE account = ?1 AND paid_at >= ?2 AND paid_at < ?3 GROUP BY t ORDER BY t";

/// `Reads::group`: ?1 account, `[?2, ?3)`, ?4 the most groups.
fn group_sqlite(by: GroupBy) -> String {
    let (key, order) = by.key_and_order();
    format!(
        "SELECT {key} AS k, count(*), sum(amount) AS s FROM payments WHERE account = ?1 \
         AND paid_at >= ?2 AND paid_at < ?3 GROUP BY k ORDER BY {order} LIMIT ?4"
    )
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
                    c.prepare_cached(USAGE_SQLITE)?
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

    /// `[from, to)` as bounds an index ranges over (`None`: unbounded); a filter of the form
    /// `(? IS NULL OR paid_at >= ?)` is read row by row instead. No payment is paid at
    /// `i64::MAX` seconds, so the open end excludes none.
    fn span(from: Option<i64>, to: Option<i64>) -> (i64, i64) {
        (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX))
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
        let (from, to) = Self::span(from, to);
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let mut s = c.prepare_cached(&group_sqlite(by))?;
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
                        &{
                            let (key, order) = by.key_and_order();
                            format!(
                                "SELECT {key}::text AS k, count(*), sum(amount)::bigint AS s FROM payments \
                                 WHERE account = $1 AND paid_at >= $2 \
                                 AND paid_at < $3 GROUP BY k ORDER BY {order} LIMIT $4"
                            )
                        },
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
        let (from, to) = Self::span(from, to);
        match self {
            Reads::Sqlite(r) => {
                r.run(move |c| {
                    let mut s = c.prepare_cached(SERIES_SQLITE)?;
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
                         WHERE account = $1 AND paid_at >= $2 \
                         AND paid_at < $3 GROUP BY t ORDER BY t",
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

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "acct_1";
    const PAYERS: [&str; 2] = ["0xaa", "0xbb"];
    const ROUTES: [&str; 2] = ["GET https://api.example/a", "GET https://api.example/b"];

    /// Payment `i`: paid at `1000 + 600 i`, amount `i + 1`, payer and route by `i`'s parity and
    /// thirds; two of another account.
    fn rows() -> Vec<(String, String, i64, String, String, i64, i64)> {
        let mut out: Vec<_> = (0..12i64)
            .map(|i| {
                let (payer, route) = (PAYERS[(i % 2) as usize], ROUTES[usize::from(i % 3 == 0)]);
                (
                    ACCOUNT.to_string(),
                    format!("n{i}"),
                    i + 1,
                    payer.to_string(),
                    route.to_string(),
                    i + 1,
                    1000 + 600 * i,
                )
            })
            .collect();
        for i in 12..14i64 {
            out.push((
                "acct_2".into(),
                format!("n{i}"),
                i + 1,
                PAYERS[0].into(),
                ROUTES[0].into(),
                100,
                1000 + 600 * i,
            ));
        }
        out
    }

    /// What every read must answer over these rows, whatever the database.
    async fn check(reads: &Reads) {
        let a = || ACCOUNT.to_string();
        let total = |g: Vec<Group>| (g[0].count, g[0].sum);
        // All of them, from a time on, and a window: [1000 + 600 * 3, 1000 + 600 * 9).
        assert_eq!(total(reads.group(a(), GroupBy::All, None, None, 1).await.unwrap()), (12, 78));
        assert_eq!(total(reads.group(a(), GroupBy::All, Some(2800), None, 1).await.unwrap()), (9, 72));
        assert_eq!(total(reads.group(a(), GroupBy::All, Some(2800), Some(6400), 1).await.unwrap()), (6, 39));
        let routes = reads.group(a(), GroupBy::Route, Some(2800), Some(6400), 10).await.unwrap();
        assert_eq!(
            routes,
            vec![
                Group { key: ROUTES[0].into(), count: 4, sum: 5 + 6 + 8 + 9 },
                Group { key: ROUTES[1].into(), count: 2, sum: 4 + 7 },
            ]
        );
        let payers = reads.group(a(), GroupBy::Payer, None, Some(2800), 1).await.unwrap();
        assert_eq!(payers, vec![Group { key: PAYERS[0].into(), count: 2, sum: 1 + 3 }]);
        let series = reads.series(a(), Some(2800), Some(6400), 3600).await.unwrap();
        assert_eq!(
            series,
            vec![Point { at: 0, count: 2, sum: 4 + 5 }, Point { at: 3600, count: 4, sum: 6 + 7 + 8 + 9 },]
        );
        assert_eq!(reads.usage(a(), PAYERS[0].into(), 2800).await.unwrap(), (4, 5 + 7 + 9 + 11));
        assert_eq!(reads.usage("acct_2".into(), PAYERS[0].into(), 0).await.unwrap(), (2, 200));
    }

    #[tokio::test]
    async fn overview_and_usage_read_one_index_over_the_range_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let w = db::open_rw(&path).unwrap();
        for (account, nonce, seq, payer, resource, amount, paid_at) in rows() {
            w.execute(
                "INSERT INTO payments (account, nonce, tx_seq, tx_hash, payer, amount, currency, resource, \
                 token, paid_at, expires_at) VALUES (?1, ?2, ?3, 'h', ?4, ?5, 'usd', ?6, 't', ?7, ?7)",
                rusqlite::params![account, nonce, seq, payer, amount, resource, paid_at],
            )
            .unwrap();
        }
        let r = db::open_ro(&path).unwrap();
        // Each read is a search of one covering index: the table, clustered on (account, nonce)
        // with its tokens, is never visited row by row, and a range reads only its rows.
        let plan = |sql: &str| -> String {
            let mut s = r.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let mut rows = s.raw_query();
            let mut steps = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                steps.push(row.get::<_, String>(3).unwrap());
            }
            steps.join("; ")
        };
        for (what, sql) in [
            ("totals", group_sqlite(GroupBy::All)),
            ("per route", group_sqlite(GroupBy::Route)),
            ("per payer", group_sqlite(GroupBy::Payer)),
            ("per bucket", SERIES_SQLITE.to_string()),
        ] {
            let p = plan(&sql);
            assert!(
                p.contains("COVERING INDEX payments_by_time (account=? AND paid_at>? AND paid_at<?)"),
                "{what}: {p}"
            );
        }
        let p = plan(USAGE_SQLITE);
        assert!(
            p.contains("COVERING INDEX payments_by_payer (account=? AND payer=? AND paid_at>?)"),
            "usage: {p}"
        );
        check(&Reads::Sqlite(SqliteReaders::new(vec![r]))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overview_and_usage_count_the_range_on_postgres() {
        let server = vlexivo_testkit::Server::postgres();
        let url = server.database("reads");
        let (cfg, client) = super::super::pg::open(&url).await.unwrap();
        for (account, nonce, seq, payer, resource, amount, paid_at) in rows() {
            client
                .execute(
                    "INSERT INTO payments (account, nonce, stream, tx_seq, tx_hash, payer, amount, currency, \
                     resource, token, paid_at, expires_at) VALUES ($1, $2, 1, $3, 'h', $4, $5, 'usd', $6, 't', $7, $7)",
                    &[&account, &nonce, &seq, &payer, &amount, &resource, &paid_at],
                )
                .await
                .unwrap();
        }
        check(&Reads::Postgres(super::super::pg::pool(&cfg, 2).unwrap())).await;
    }
}
