//! A nonce store in Redis (feature `redis`), shared by every API instance that points at it.
//!
//! - consume: `SET prefix+key lease PX ttl NX`, one atomic command: OK is a fresh use, nil a
//!   replay. The value is this consume's lease; Redis expires the key itself (its own clock,
//!   counting the TTL from the caller's `now`).
//! - release: compare-and-delete in one Lua script (`GET` = lease → `DEL`), so a release never
//!   frees a nonce that someone else consumed since.
//! - a consume whose outcome is unknown (timeout, dropped connection) is undone in the
//!   background with its own lease as soon as Redis answers again, so the payer's proof stays
//!   usable; the request itself fails closed (`nonce_store_unavailable`, 503).
//! - connections: redis-rs' `ConnectionManager` (reconnects with backoff) or its cluster
//!   client for `redis+cluster://` (follows slot moves; every command names one key, so any
//!   slot layout works). `pool_size` multiplexed connections, used in turn.

use super::remote::{block_on, spawn, then, within};
use super::spec::{RemoteOptions, redact};
use super::{Consume, Done, Lease, Leases, NonceStore, StoreFuture, check_key};
use crate::error::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Compare-and-delete: only the consume that holds the key may free it.
const RELEASE_LUA: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// The longest TTL a key is given (tokens live minutes; this only guards the arithmetic).
const MAX_TTL_SECS: u64 = 86_400;
/// Extra wait of the blocking face beyond the operation timeout (the task's own timeout fires
/// first; this only guards against a stalled runtime).
const BLOCKING_MARGIN: Duration = Duration::from_millis(250);

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn set_nx(&self, key: &str, value: &str, ttl_ms: u64) -> redis::RedisResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms).arg("NX");
        let set: Option<String> = self.query(&cmd).await?;
        Ok(set.is_some())
    }

    async fn release(&self, script: &redis::Script, key: &str, value: &str) -> redis::RedisResult<()> {
        let mut inv = script.key(key);
        inv.arg(value);
        let _: i64 = match self.clone() {
            Conn::Single(mut c) => inv.invoke_async(&mut c).await?,
            Conn::Cluster(mut c) => inv.invoke_async(&mut c).await?,
        };
        Ok(())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }
}

struct Shared {
    conns: Vec<Conn>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    release: redis::Script,
}

impl Shared {
    fn conn(&self) -> &Conn {
        &self.conns[self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len()]
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }
}

/// Redis-backed [`NonceStore`]: see the module docs.
pub struct RedisStore {
    shared: Arc<Shared>,
    leases: Leases,
    /// The URL without its password, for messages.
    target: String,
    cluster: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("cluster", &self.cluster)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connect to `nodes` (one URL, or the seed nodes of a cluster). Fails with `config_invalid`
    /// if Redis does not answer within the connect timeout.
    pub fn connect(nodes: &[String], cluster: bool, options: RemoteOptions) -> Result<Self> {
        let target = nodes.iter().map(|n| redact(n)).collect::<Vec<_>>().join(",");
        let fail = |why: String| Error::Config(format!("nonce store: cannot connect to {target}: {why}"));
        let nodes = nodes.to_vec();
        let opts = options.clone();
        let limit = options.connect_timeout * 2 + BLOCKING_MARGIN;
        let conns = block_on(
            async move {
                let mut conns = Vec::with_capacity(opts.pool_size);
                for _ in 0..opts.pool_size {
                    let c = tokio::time::timeout(opts.connect_timeout, open(&nodes, cluster, &opts))
                        .await
                        .map_err(|_| {
                            Error::NonceStoreUnavailable("no answer within the connect timeout".into())
                        })?
                        .map_err(|e| Error::NonceStoreUnavailable(describe(&e)))?;
                    // One round trip proves the server (and the cluster's slots) answer.
                    let _: String = c
                        .query(&redis::cmd("PING"))
                        .await
                        .map_err(|e| Error::NonceStoreUnavailable(describe(&e)))?;
                    conns.push(c);
                }
                Ok(conns)
            },
            limit,
        )
        .map_err(|e| match e {
            Error::NonceStoreUnavailable(why) => fail(why),
            other => fail(other.to_string()),
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                conns,
                next: AtomicUsize::new(0),
                prefix: options.prefix,
                timeout: options.timeout,
                release: redis::Script::new(RELEASE_LUA),
            }),
            leases: Leases::new(),
            target,
            cluster,
        })
    }

    /// The prefix put before every key.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    fn consume_task(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<impl Future<Output = Result<Consume>> + Send + 'static> {
        check_key(key)?;
        let shared = self.shared.clone();
        let key = shared.key(key);
        let lease = self.leases.next();
        let ttl_ms = expires_at.saturating_sub(now).saturating_add(1).min(MAX_TTL_SECS) * 1000;
        Ok(async move {
            let value = lease_text(lease);
            let conn = shared.conn().clone();
            let set = within(shared.timeout, "redis consume", async {
                conn.set_nx(&key, &value, ttl_ms).await.map_err(|e| unavailable("consume", &e))
            })
            .await;
            match set {
                Ok(true) => Ok(Consume::Fresh(lease)),
                Ok(false) => Ok(Consume::Replayed),
                Err(e) => {
                    // The SET may have reached Redis, or may still be on its way: undo it with
                    // our own lease once Redis answers, so the proof can be presented again. The
                    // undo goes on the SET's own connection, where Redis runs commands in the
                    // order sent; on another pooled connection it could run first, delete
                    // nothing, and leave the late SET holding the nonce until it expires.
                    tokio::spawn(undo(shared, conn, key, value, ttl_ms));
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
        let key = shared.key(key);
        Ok(async move {
            let value = lease_text(lease);
            let conn = shared.conn().clone();
            let done = within(shared.timeout, "redis release", async {
                conn.release(&shared.release, &key, &value).await.map_err(|e| unavailable("release", &e))
            })
            .await;
            if done.is_err() {
                // Keep trying in the background: the payer's retry needs the nonce free.
                tokio::spawn(undo(shared, conn, key, value, MAX_TTL_SECS.min(3600) * 1000));
            }
            done
        })
    }
}

/// Retry a compare-and-delete in the background until Redis answers or the key would have
/// expired anyway: 50 ms, doubling to 1 s between attempts, always on `conn` (see the
/// consume's comment: a connection manager keeps its place across reconnects).
async fn undo(shared: Arc<Shared>, conn: Conn, key: String, value: String, ttl_ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ttl_ms);
    let mut wait = Duration::from_millis(50);
    while tokio::time::Instant::now() < deadline {
        let done = tokio::time::timeout(shared.timeout, conn.release(&shared.release, &key, &value)).await;
        if matches!(done, Ok(Ok(()))) {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

async fn open(nodes: &[String], cluster: bool, o: &RemoteOptions) -> redis::RedisResult<Conn> {
    if cluster {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(o.connect_timeout)
            .response_timeout(o.timeout)
            .retries(2)
            .build()?;
        Ok(Conn::Cluster(client.get_async_connection().await?))
    } else {
        let client = redis::Client::open(nodes[0].as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(o.connect_timeout))
            .set_response_timeout(Some(o.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(Conn::Single(ConnectionManager::new_with_config(client, config).await?))
    }
}

fn lease_text(lease: Lease) -> String {
    format!("{:016x}", lease.0)
}

/// What went wrong, without the command, key or any credential.
fn describe(e: &redis::RedisError) -> String {
    let why = if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() {
        "connection dropped"
    } else if e.is_io_error() {
        "I/O error"
    } else {
        match e.kind() {
            redis::ErrorKind::AuthenticationFailed => "authentication failed",
            redis::ErrorKind::InvalidClientConfig => "invalid client configuration",
            _ => "redis error",
        }
    };
    why.to_string()
}

fn unavailable(op: &'static str, e: &redis::RedisError) -> Error {
    Error::NonceStoreUnavailable(format!("redis {op}: {}", describe(e)))
}

impl NonceStore for RedisStore {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        block_on(self.consume_task(key, expires_at, now)?, self.shared.timeout + BLOCKING_MARGIN)
    }

    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        block_on(self.release_task(key, lease)?, self.shared.timeout + BLOCKING_MARGIN)
    }

    /// Redis expires keys itself.
    fn purge(&self, _now: u64) -> Result<u64> {
        Ok(0)
    }

    fn kind(&self) -> &'static str {
        "redis"
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
    use crate::store::spec::StoreSpec;
    use crate::store::tests::{conformance_async, conformance_at};
    use std::sync::Barrier;
    use vlexivo_testkit::{HoldingRelay, Server};

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn open(url: &str, opts: &[(&str, &str)]) -> Arc<dyn NonceStore> {
        crate::store::open(url, opts).unwrap()
    }

    fn lease(c: Consume) -> Lease {
        match c {
            Consume::Fresh(l) => l,
            Consume::Replayed => panic!("expected fresh"),
        }
    }

    #[test]
    fn conforms_and_expires_by_redis_clock() {
        let srv = Server::redis();
        let s = open(&srv.url, &[]);
        assert_eq!((s.kind(), s.blocks()), ("redis", true));
        conformance_at(&*s, now(), "");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(conformance_async(&*s, now(), ""));
        // A nonce held until `expires_at` lives `expires_at - now` seconds and one more by
        // Redis's own clock, whatever the caller's clock says: read the PTTL the consume set
        // (no waiting for an expiry, and no assumption about how fast this runs).
        let t = now();
        for (key, expires_at, at, ttl_ms) in [
            ("acct:long", t + 60, t, 61_000),
            // A caller whose clock is far behind Redis's: the TTL still counts from its `now`.
            ("acct:behind", 1_060, 1_000, 61_000),
            // Held until `now`: the one second more, not zero.
            ("acct:short", t, t, 1_000),
        ] {
            // Milliseconds since just before the consume, rounded up (and one for Redis's).
            let started = std::time::Instant::now();
            let since = || i64::try_from(started.elapsed().as_millis()).unwrap() + 2;
            assert!(s.consume(key, expires_at, at).unwrap().is_fresh(), "{key}");
            let pttl = pttl(&srv, &format!("vlexivo:nonce:{key}"));
            let read = since();
            let again = s.consume(key, expires_at, at).unwrap();
            if read < ttl_ms {
                assert!(pttl >= ttl_ms - read && pttl <= ttl_ms, "{key}: PTTL {pttl}, {read} ms after");
            } else {
                // Slower than the TTL itself (a loaded machine): Redis may have expired it.
                assert!(pttl == -2 || (0..=ttl_ms).contains(&pttl), "{key}: PTTL {pttl}");
            }
            if since() < ttl_ms {
                assert_eq!(again, Consume::Replayed, "{key}");
            }
        }
        assert_eq!(s.purge(now()).unwrap(), 0);
    }

    /// The key's remaining time to live in Redis (ms; -2: no such key, -1: no expiry).
    fn pttl(srv: &Server, key: &str) -> i64 {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &srv.port().to_string(), "--raw", "pttl", key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[test]
    fn instances_share_nonces_and_prefixes_keep_providers_apart() {
        let srv = Server::redis();
        let (a, b) = (open(&srv.url, &[]), open(&format!("{}/0?pool_size=3", srv.url), &[]));
        let t = now();
        let l = lease(a.consume("acct:shared", t + 60, t).unwrap());
        assert_eq!(b.consume("acct:shared", t + 60, t).unwrap(), Consume::Replayed);
        // Released by the other instance with the lease the first handed out.
        b.release("acct:shared", l).unwrap();
        let l2 = lease(b.consume("acct:shared", t + 60, t).unwrap());
        a.release("acct:shared", l).unwrap();
        assert_eq!(a.consume("acct:shared", t + 60, t).unwrap(), Consume::Replayed);
        a.release("acct:shared", l2).unwrap();
        // Another prefix is another namespace; the default one is vlexivo:nonce:.
        let c = open(&srv.url, &[("prefix", "api2:")]);
        assert!(c.consume("acct:p", t + 60, t).unwrap().is_fresh());
        assert!(a.consume("acct:p", t + 60, t).unwrap().is_fresh());
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &srv.port().to_string(), "--raw", "keys", "*acct:p"])
            .output()
            .unwrap();
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        keys.sort();
        assert_eq!(keys, ["api2:acct:p", "vlexivo:nonce:acct:p"]);
    }

    #[test]
    fn one_winner_per_nonce_across_handles() {
        let srv = Server::redis();
        let stores: Vec<_> = (0..4).map(|_| open(&srv.url, &[])).collect();
        let t = now();
        for round in 0..3 {
            let barrier = Barrier::new(32);
            let fresh = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..32)
                    .map(|i| {
                        let (s, barrier) = (&stores[i % 4], &barrier);
                        sc.spawn(move || {
                            barrier.wait();
                            s.consume(&format!("acct:race{round}"), t + 60, t).unwrap().is_fresh()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).filter(|f| *f).count()
            });
            assert_eq!(fresh, 1, "round {round}");
        }
    }

    #[test]
    fn cluster_conforms_across_slots() {
        let srv = Server::redis_cluster();
        let s = open(&srv.url, &[("pool_size", "2")]);
        assert!(matches!(StoreSpec::parse(&srv.url, &[]).unwrap(), StoreSpec::Redis { cluster: true, .. }));
        conformance_at(&*s, now(), "");
        let t = now();
        // Keys land on every master; each answers once.
        let leases: Vec<_> =
            (0..200).map(|i| lease(s.consume(&format!("acct:k{i}"), t + 60, t).unwrap())).collect();
        for (i, l) in leases.iter().enumerate() {
            assert_eq!(s.consume(&format!("acct:k{i}"), t + 60, t).unwrap(), Consume::Replayed);
            s.release(&format!("acct:k{i}"), *l).unwrap();
            assert!(s.consume(&format!("acct:k{i}"), t + 60, t).unwrap().is_fresh());
        }
    }

    #[test]
    fn down_fails_closed_within_the_timeout_and_recovers() {
        let srv = Server::redis();
        let s = open(&srv.url, &[("timeout_ms", "300")]);
        let t = now();
        assert!(s.consume("acct:before", t + 60, t).unwrap().is_fresh());
        srv.kill();
        let started = std::time::Instant::now();
        let e = s.consume("acct:during", t + 60, t).unwrap_err();
        assert_eq!((e.code(), e.http_status()), ("nonce_store_unavailable", 503));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        srv.restart();
        // The connection manager reconnects; the first calls may still see the old socket.
        let mut ok = None;
        for _ in 0..200 {
            match s.consume("acct:during", t + 60, t) {
                Ok(c) => {
                    ok = Some(c);
                    break;
                }
                Err(e) => assert_eq!(e.code(), "nonce_store_unavailable"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Nothing was kept across the crash (no persistence here): the nonce is fresh.
        assert!(ok.expect("redis came back").is_fresh());
    }

    #[test]
    fn a_consume_lost_in_a_frozen_server_is_undone() {
        let srv = Server::redis();
        let s = open(&srv.url, &[("timeout_ms", "200")]);
        let t = now();
        srv.freeze();
        let e = s.consume("acct:frozen", t + 60, t).unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        // The SET sits in the server's socket buffer and runs on resume; the store undoes it
        // with its own lease, so the payer's proof is good again.
        srv.resume();
        let mut fresh = false;
        for _ in 0..200 {
            match s.consume("acct:frozen", t + 60, t) {
                Ok(c) if c.is_fresh() => {
                    fresh = true;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        assert!(fresh, "the lost consume was never undone");
    }

    #[test]
    fn a_late_consume_is_undone_after_it_lands_not_before() {
        // The consume's SET is held on its way to Redis past the timeout (a starved client
        // task or a slow link). Its undo must reach Redis after it: an undo sent on another
        // pooled connection would find nothing to delete, and the SET landing later would keep
        // the payer's proof "replayed" until it expires.
        let srv = Server::redis();
        let relay = HoldingRelay::start(srv.port(), b"$3\r\nSET\r\n");
        let s =
            open(&format!("redis://127.0.0.1:{}", relay.port), &[("timeout_ms", "200"), ("pool_size", "2")]);
        let t = now();
        assert!(s.consume("acct:warm", t + 60, t).unwrap().is_fresh());
        relay.arm();
        let e = s.consume("acct:held", t + 60, t).unwrap_err();
        assert_eq!(e.code(), "nonce_store_unavailable");
        assert!(relay.holding());
        std::thread::sleep(Duration::from_millis(600));
        relay.release();
        let mut fresh = false;
        for _ in 0..200 {
            if s.consume("acct:held", t + 60, t).unwrap().is_fresh() {
                fresh = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(fresh, "the late consume was never undone: the proof stays replayed");
    }

    #[test]
    fn a_url_that_points_nowhere_is_a_config_error() {
        let e =
            crate::store::open("redis://:hunter2@127.0.0.1:1", &[("connect_timeout_ms", "500")]).unwrap_err();
        assert_eq!(e.code(), "config_invalid");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
