//! A nonce store in PostgreSQL (feature `postgres`), shared by every API instance that points
//! at the same database.
//!
//! One indexed table, `vlexivo_nonces (key PRIMARY KEY, lease, expires_at)`:
//! - consume: `INSERT … ON CONFLICT (key) DO UPDATE … WHERE expires_at < now`, one atomic
//!   statement: a row written is a fresh use (absent, or expired and taken over); none is a
//!   replay. Expiry compares with the caller's `now`, like the SQLite store.
//! - release: `DELETE … WHERE key = $1 AND lease = $2` (compare-and-delete).
//! - purge: every [`PURGE_EVERY`] consumes a handle deletes at most [`PURGE_BATCH`] expired rows
//!   in the background (`FOR UPDATE SKIP LOCKED`, so instances purging at once do not queue on
//!   each other), keeping the table near its live size without a slow request.
//! - a consume whose outcome is unknown is undone in the background with its own lease, as in
//!   the Redis store; connections come from a deadpool pool of `pool_size`.

use super::remote::{block_on, spawn, then, within};
use super::spec::{RemoteOptions, redact};
use super::{Consume, Done, Lease, Leases, NonceStore, StoreFuture, check_key};
use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_postgres::NoTls;

/// Consumes per handle between background purges.
pub const PURGE_EVERY: u64 = 1024;
/// Rows one background purge deletes at most: well above PURGE_EVERY, so purging keeps up.
pub const PURGE_BATCH: i64 = 4096;
const BLOCKING_MARGIN: Duration = Duration::from_millis(250);

// Several instances may start at once: the advisory lock makes the CREATEs take turns (two
// concurrent CREATE TABLE IF NOT EXISTS can otherwise collide in the catalog).
const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7320001);
CREATE TABLE IF NOT EXISTS vlexivo_nonces (
    key        text PRIMARY KEY,
    lease      bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS vlexivo_nonces_expires_at ON vlexivo_nonces (expires_at);
";
const SQL_CONSUME: &str = "INSERT INTO vlexivo_nonces (key, lease, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET lease = EXCLUDED.lease, expires_at = EXCLUDED.expires_at \
     WHERE vlexivo_nonces.expires_at < $4";
const SQL_RELEASE: &str = "DELETE FROM vlexivo_nonces WHERE key = $1 AND lease = $2";
const SQL_PURGE: &str = "DELETE FROM vlexivo_nonces WHERE expires_at < $1";
const SQL_PURGE_BATCH: &str = "DELETE FROM vlexivo_nonces WHERE key = ANY(ARRAY( \
     SELECT key FROM vlexivo_nonces WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))";

struct Shared {
    pool: Pool,
    prefix: String,
    timeout: Duration,
}

/// PostgreSQL-backed [`NonceStore`]: see the module docs.
pub struct PostgresStore {
    shared: Arc<Shared>,
    leases: Leases,
    consumes: AtomicU64,
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (a libpq URL), create the table if needed and fill
    /// the pool's first connection. `config_invalid` if it cannot.
    pub fn connect(url: &str, options: RemoteOptions) -> Result<Self> {
        let target = redact(url);
        let fail = |why: String| Error::Config(format!("nonce store: cannot use {target}: {why}"));
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| fail(format!("bad URL ({})", first_line(&e))))?;
        pg.connect_timeout(options.connect_timeout);
        pg.application_name("vlexivo-nonces");
        let manager =
            Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let shared = Arc::new(Shared { pool, prefix: options.prefix, timeout: options.timeout });
        let s = shared.clone();
        block_on(
            async move {
                let client = s.pool.get().await.map_err(|e| pool_error("connect", &e))?;
                client
                    .batch_execute(&format!("BEGIN; {SCHEMA} COMMIT;"))
                    .await
                    .map_err(|e| unavailable("create the table", &e))
            },
            options.connect_timeout * 2 + BLOCKING_MARGIN,
        )
        .map_err(|e| match e {
            Error::NonceStoreUnavailable(why) => fail(why),
            other => fail(other.to_string()),
        })?;
        Ok(Self { shared, leases: Leases::new(), consumes: AtomicU64::new(0), target })
    }

    fn consume_task(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<impl Future<Output = Result<Consume>> + Send + 'static> {
        check_key(key)?;
        let shared = self.shared.clone();
        let key = format!("{}{key}", shared.prefix);
        let lease = self.leases.next();
        let purge = (self.consumes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(PURGE_EVERY);
        Ok(async move {
            if purge {
                tokio::spawn(purge_batch(shared.clone(), now));
            }
            // The connection outlives a timed-out consume: its INSERT may still be on its way
            // or running, and the undo goes on the same connection, where PostgreSQL runs
            // statements in the order sent. On another pooled connection the undo could run
            // first, delete nothing, and leave the late INSERT holding the nonce until expiry.
            let mut held = None;
            let written = within(shared.timeout, "postgres consume", async {
                let client = held.insert(shared.pool.get().await.map_err(|e| pool_error("consume", &e))?);
                let st = client.prepare_cached(SQL_CONSUME).await.map_err(|e| unavailable("consume", &e))?;
                client
                    .execute(&st, &[&key, &(lease.0 as i64), &sql_time(expires_at), &sql_time(now)])
                    .await
                    .map_err(|e| unavailable("consume", &e))
            })
            .await;
            match written {
                Ok(1) => Ok(Consume::Fresh(lease)),
                Ok(_) => Ok(Consume::Replayed),
                Err(e) => {
                    tokio::spawn(undo(shared, held, key, lease, expires_at.saturating_sub(now)));
                    Err(e)
                }
            }
        })
    }

    fn release_task(
        &self,
        key: &str,
        lease: Lease,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        check_key(key)?;
        let shared = self.shared.clone();
        let key = format!("{}{key}", shared.prefix);
        Ok(async move {
            let done = within(shared.timeout, "postgres release", release(&shared, &key, lease)).await;
            if done.is_err() {
                // Keep trying in the background: the payer's retry needs the nonce free.
                tokio::spawn(undo(shared, None, key, lease, 3600));
            }
            done
        })
    }

    /// Rows in the table (this prefix or not), including expired ones not yet purged.
    pub fn len(&self) -> Result<u64> {
        let s = self.shared.clone();
        block_on(
            within(self.shared.timeout, "postgres count", async move {
                let client = s.pool.get().await.map_err(|e| pool_error("count", &e))?;
                let row = client
                    .query_one("SELECT count(*) FROM vlexivo_nonces", &[])
                    .await
                    .map_err(|e| unavailable("count", &e))?;
                Ok(row.get::<_, i64>(0) as u64)
            }),
            self.shared.timeout + BLOCKING_MARGIN,
        )
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

async fn release(shared: &Shared, key: &str, lease: Lease) -> Result<()> {
    let client = shared.pool.get().await.map_err(|e| pool_error("release", &e))?;
    let st = client.prepare_cached(SQL_RELEASE).await.map_err(|e| unavailable("release", &e))?;
    client.execute(&st, &[&key, &(lease.0 as i64)]).await.map_err(|e| unavailable("release", &e))?;
    Ok(())
}

/// Undo a consume of unknown outcome with its own lease, retrying until PostgreSQL answers or
/// the nonce would have expired anyway: first on the consume's own connection (`held`, see
/// the consume), then, once that connection is closed (its statement ended with it), on any.
async fn undo(
    shared: Arc<Shared>,
    mut held: Option<deadpool_postgres::Object>,
    key: String,
    lease: Lease,
    ttl_secs: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ttl_secs.clamp(1, 86_400));
    let mut wait = Duration::from_millis(50);
    while tokio::time::Instant::now() < deadline {
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            let on_it = async {
                let st = client.prepare_cached(SQL_RELEASE).await.map_err(|e| unavailable("release", &e))?;
                client.execute(&st, &[&key, &(lease.0 as i64)]).await.map_err(|e| unavailable("release", &e))
            };
            if matches!(tokio::time::timeout(shared.timeout, on_it).await, Ok(Ok(_))) {
                return;
            }
        } else {
            held = None;
            if matches!(tokio::time::timeout(shared.timeout, release(&shared, &key, lease)).await, Ok(Ok(())))
            {
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Housekeeping: a failure is only logged by omission; the next purge tries again.
async fn purge_batch(shared: Arc<Shared>, now: u64) {
    let _ = tokio::time::timeout(shared.timeout * 5, async {
        let client = shared.pool.get().await.ok()?;
        client.execute(SQL_PURGE_BATCH, &[&sql_time(now), &PURGE_BATCH]).await.ok()
    })
    .await;
}

/// PostgreSQL integers are i64; times beyond year 292 billion are clamped, not wrapped.
fn sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn first_line(e: &tokio_postgres::Error) -> String {
    e.to_string().lines().next().unwrap_or("error").to_string()
}

/// What went wrong, without SQL, keys or credentials.
fn describe(e: &tokio_postgres::Error) -> String {
    if e.is_closed() {
        return "connection closed".into();
    }
    if let Some(db) = e.as_db_error() {
        // The SQLSTATE class is enough to act on and says nothing about the data.
        return format!("database error {}", db.code().code());
    }
    let text = e.to_string();
    if text.contains("timed out") {
        "timed out".into()
    } else if text.contains("refused") {
        "connection refused".into()
    } else if text.contains("password") || text.contains("authentication") {
        "authentication failed".into()
    } else {
        "connection error".into()
    }
}

fn unavailable(op: &'static str, e: &tokio_postgres::Error) -> Error {
    Error::NonceStoreUnavailable(format!("postgres {op}: {}", describe(e)))
}

fn pool_error(op: &'static str, e: &deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    let why = match e {
        PoolError::Timeout(_) => "no connection within the timeout".to_string(),
        PoolError::Backend(e) => describe(e),
        PoolError::Closed => "pool closed".to_string(),
        _ => "connection error".to_string(),
    };
    Error::NonceStoreUnavailable(format!("postgres {op}: {why}"))
}

impl NonceStore for PostgresStore {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        block_on(self.consume_task(key, expires_at, now)?, self.shared.timeout + BLOCKING_MARGIN)
    }

    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        block_on(self.release_task(key, lease)?, self.shared.timeout + BLOCKING_MARGIN)
    }

    fn purge(&self, now: u64) -> Result<u64> {
        let s = self.shared.clone();
        block_on(
            within(self.shared.timeout * 10, "postgres purge", async move {
                let client = s.pool.get().await.map_err(|e| pool_error("purge", &e))?;
                client.execute(SQL_PURGE, &[&sql_time(now)]).await.map_err(|e| unavailable("purge", &e))
            }),
            self.shared.timeout * 10 + BLOCKING_MARGIN,
        )
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn blocks(&self) -> bool {
        true
    }

    fn consume_async(&self, key: String, expires_at: u64, now: u64) -> StoreFuture<Consume> {
        match self.consume_task(&key, expires_at, now) {
            Ok(task) => spawn(task),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn release_async(&self, key: String, lease: Lease) -> StoreFuture<()> {
        match self.release_task(&key, lease) {
            Ok(task) => spawn(task),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn consume_then(&self, key: String, expires_at: u64, now: u64, done: Done<Consume>) {
        match self.consume_task(&key, expires_at, now) {
            Ok(task) => then(task, done),
            Err(e) => done(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{conformance_async, conformance_clock};
    use std::sync::Barrier;
    use vlexivo_testkit::{HoldingRelay, Server};

    fn open(url: &str, opts: &[(&str, &str)]) -> Arc<dyn NonceStore> {
        crate::store::open(url, opts).unwrap()
    }

    #[test]
    fn conforms_shares_and_races() {
        let srv = Server::postgres();
        let url = srv.database("conform");
        let s = open(&url, &[]);
        assert_eq!((s.kind(), s.blocks()), ("postgres", true));
        conformance_clock(&*s);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(conformance_async(&*s, 10_000, ""));

        // Another instance (its own pool) sees the same nonces; a lease works across them.
        let url2 = srv.database("shared");
        let (a, b) = (open(&url2, &[("pool_size", "2")]), open(&format!("{url2}?pool_size=8"), &[]));
        let Consume::Fresh(l) = a.consume("acct:x", 500, 10).unwrap() else { panic!() };
        assert_eq!(b.consume("acct:x", 500, 10).unwrap(), Consume::Replayed);
        b.release("acct:x", l).unwrap();
        assert!(b.consume("acct:x", 500, 10).unwrap().is_fresh());
        // A prefix is a namespace inside the one table.
        let c = open(&url2, &[("prefix", "api2:")]);
        assert!(c.consume("acct:x", 500, 10).unwrap().is_fresh());

        // 48 threads over two handles race on each nonce: one winner.
        let stores = [a, b];
        for round in 0..3 {
            let barrier = Barrier::new(48);
            let fresh = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..48)
                    .map(|i| {
                        let (s, barrier) = (&stores[i % 2], &barrier);
                        sc.spawn(move || {
                            barrier.wait();
                            s.consume(&format!("acct:race{round}"), 500, 10).unwrap().is_fresh()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).filter(|f| *f).count()
            });
            assert_eq!(fresh, 1, "round {round}");
        }

        // Background purges keep the table near its live size.
        let p = PostgresStore::connect(&srv.database("purge"), RemoteOptions::default()).unwrap();
        for i in 0..(PURGE_EVERY * 4) {
            // Each nonce lives 1 s; time moves one second per 100 consumes.
            let now = i / 100;
            p.consume(&format!("a:{i}"), now + 1, now).unwrap();
        }
        // The last purge runs in the background: wait for it (bounded), do not guess its time.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut n = p.len().unwrap();
        while n >= PURGE_EVERY + 300 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            n = p.len().unwrap();
        }
        assert!(n < PURGE_EVERY + 300, "len {n}");
    }

    #[test]
    fn restart_fails_closed_then_recovers_and_keeps_nonces() {
        let srv = Server::postgres();
        let s = open(&srv.url, &[("timeout_ms", "500"), ("connect_timeout_ms", "500")]);
        assert!(s.consume("acct:kept", 500, 10).unwrap().is_fresh());
        srv.kill();
        let started = std::time::Instant::now();
        let e = s.consume("acct:during", 500, 10).unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("nonce_store_unavailable", 503));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        srv.restart();
        let mut back = None;
        for _ in 0..200 {
            if let Ok(c) = s.consume("acct:kept", 500, 10) {
                back = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // A committed consume survives the crash: still a replay.
        assert_eq!(back.expect("postgres came back"), Consume::Replayed);
        assert!(s.consume("acct:during", 500, 10).unwrap().is_fresh());
    }

    #[test]
    fn a_late_consume_is_undone_after_it_lands_not_before() {
        // As in the Redis store: the consume's INSERT is held on its way past the timeout; its
        // undo must run after it, or the late INSERT keeps the proof "replayed" until expiry.
        let srv = Server::postgres();
        let relay = HoldingRelay::start(srv.port(), b"acct:held");
        let url = srv.database("late").replace(&format!(":{}/", srv.port()), &format!(":{}/", relay.port));
        let s = open(&url, &[("timeout_ms", "300"), ("pool_size", "2")]);
        // Both pooled connections open and idle, so the next one the pool hands out after the
        // held consume is the other connection.
        let go = Barrier::new(8);
        std::thread::scope(|sc| {
            for i in 0..8 {
                let (s, go) = (&s, &go);
                sc.spawn(move || {
                    go.wait();
                    assert!(s.consume(&format!("acct:warm{i}"), 500, 10).unwrap().is_fresh());
                });
            }
        });
        relay.arm();
        let e = s.consume("acct:held", 500, 10).unwrap_err();
        assert_eq!(e.code(), "nonce_store_unavailable");
        assert!(relay.holding());
        std::thread::sleep(Duration::from_millis(800));
        relay.release();
        let mut fresh = false;
        for _ in 0..200 {
            if s.consume("acct:held", 500, 10).is_ok_and(|c| c.is_fresh()) {
                fresh = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(fresh, "the late consume was never undone: the proof stays replayed");
    }

    #[test]
    fn bad_or_unreachable_urls_are_config_errors() {
        for (url, opts, what) in [
            ("postgres://postgres:hunter2@127.0.0.1:1/x", vec![("connect_timeout_ms", "500")], "cannot use"),
            ("postgres://postgres@127.0.0.1/x?sslmod=disable", vec![], "bad URL"),
        ] {
            let e = crate::store::open(url, &opts).unwrap_err();
            assert_eq!(e.code(), "config_invalid", "{url}");
            assert!(e.to_string().contains(what), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }
}
