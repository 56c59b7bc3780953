//! A nonce store named by URL, the one way every binding and adapter configures one:
//!
//! | URL | store |
//! |---|---|
//! | `memory` (`memory://?capacity=N&pages_thread=false`) | [`MemoryStore`](super::MemoryStore), this process only |
//! | `sqlite:///abs/path.db`, `sqlite://rel/path.db` | [`SqliteStore`](super::SqliteStore), this machine |
//! | `redis://[user:pass@]host[:port][/db]` | Redis (feature `redis`), many instances |
//! | `redis+cluster://[user:pass@]host:port,host:port` | a Redis Cluster (feature `redis`) |
//! | `postgres://…`, `postgresql://…` (libpq URL) | PostgreSQL (feature `postgres`), many instances |
//!
//! Options come in the URL's query string or beside it (never both for one key): `capacity` and
//! `pages_thread` (`true`/`false`: [`MemoryOptions::pages_thread`](super::MemoryOptions)) for
//! memory, and for networked stores `prefix`, `pool_size`, `timeout_ms`, `connect_timeout_ms`.
//! A PostgreSQL URL may also carry libpq's own parameters (`host=/socket/dir`, `sslmode`, …),
//! which the driver checks. Anything else — an unknown scheme, an unknown or repeated option, a
//! bad value, a store this build lacks — is `config_invalid` at construction: a typo never
//! falls back to a per-process store that a second instance would not share.

use super::NonceStore;
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// A parsed store URL with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory { capacity: usize, pages_thread: bool },
    Sqlite { path: String },
    Redis { nodes: Vec<String>, cluster: bool, options: RemoteOptions },
    Postgres { url: String, options: RemoteOptions },
}

/// Connection settings every networked store takes (checked the same way by every build,
/// with or without the features that use them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Prepended to every key, so several applications can share one server.
    pub prefix: String,
    /// Connections (PostgreSQL pool size; Redis multiplexed connections).
    pub pool_size: usize,
    /// Longest wait for one operation, connection included; past it the request fails closed.
    pub timeout: Duration,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// A paid request waits no longer than this for the store by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Most connections one store handle may hold.
pub const MAX_POOL_SIZE: usize = 256;

/// Option keys every networked store takes.
pub const REMOTE_OPTIONS: &[&str] = &["prefix", "pool_size", "timeout_ms", "connect_timeout_ms"];
/// Option keys of the memory store.
pub const MEMORY_OPTIONS: &[&str] = &["capacity", "pages_thread"];

/// Every option key some store takes: the names a binding spells its store options with (Node's
/// `nonceStoreOptions` are their camelCase forms). Which store takes which is checked by
/// [`StoreSpec::parse`].
pub fn option_names() -> impl Iterator<Item = &'static str> {
    MEMORY_OPTIONS.iter().chain(REMOTE_OPTIONS).copied()
}

fn config(msg: impl Into<String>) -> Error {
    Error::Config(format!("nonce store: {}", msg.into()))
}

impl StoreSpec {
    /// Parse `url` with extra `options` (canonical snake_case keys, values as text).
    pub fn parse(url: &str, options: &[(&str, &str)]) -> Result<Self> {
        let url = url.trim();
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let (scheme, rest) = match base.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None if base.eq_ignore_ascii_case("memory") => ("memory".to_string(), ""),
            None if base.eq_ignore_ascii_case("sqlite") => {
                return Err(config("\"sqlite\" needs a file: sqlite:///path/to/nonces.db"));
            }
            // `sqlite:path`, the short form.
            None if base.len() > 7 && base[..7].eq_ignore_ascii_case("sqlite:") => {
                ("sqlite".to_string(), &base[7..])
            }
            None => {
                return Err(config(format!(
                    "{:?} is not a store URL (memory, sqlite://, redis://, postgres://)",
                    redact(base)
                )));
            }
        };
        // Our options: from the query string, then the explicit ones (a key given twice is a
        // mistake, not an override). Driver parameters stay in `passthrough` (PostgreSQL only).
        let mut ours: Vec<(String, String)> = Vec::new();
        let mut passthrough: Vec<&str> = Vec::new();
        let known: &[&str] = match scheme.as_str() {
            "memory" => MEMORY_OPTIONS,
            "sqlite" => &[],
            _ => REMOTE_OPTIONS,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k)?;
            if known.contains(&k.as_str()) {
                ours.push((k, percent_decode(v)?));
            } else if matches!(scheme.as_str(), "postgres" | "postgresql") {
                passthrough.push(pair);
            } else {
                return Err(config(format!(
                    "unknown option {k:?} for a {scheme} store (known: {})",
                    list(known)
                )));
            }
        }
        for (k, v) in options {
            if !known.contains(k) {
                return Err(config(format!(
                    "unknown option {k:?} for a {scheme} store (known: {})",
                    list(known)
                )));
            }
            ours.push((k.to_string(), v.to_string()));
        }
        for (i, (k, _)) in ours.iter().enumerate() {
            if ours[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(config(format!("option {k:?} is given twice")));
            }
        }
        let get = |k: &str| opt(&ours, k);
        match scheme.as_str() {
            "memory" => {
                if !rest.is_empty() && rest != "/" {
                    return Err(config("a memory store takes no address"));
                }
                let capacity = match get("capacity") {
                    Some(v) => number(v, "capacity", 1, usize::MAX as u64)? as usize,
                    None => super::memory::DEFAULT_CAPACITY,
                };
                let pages_thread = match get("pages_thread") {
                    Some(v) => yes_no(v, "pages_thread")?,
                    None => true,
                };
                Ok(StoreSpec::Memory { capacity, pages_thread })
            }
            "sqlite" => {
                let path = percent_decode(rest)?;
                if path.is_empty() {
                    return Err(config("a sqlite store needs a file: sqlite:///path/to/nonces.db"));
                }
                Ok(StoreSpec::Sqlite { path })
            }
            "redis" | "redis+cluster" | "rediss" | "rediss+cluster" => {
                if scheme.starts_with("rediss") {
                    return Err(config(
                        "rediss:// (TLS) is not supported by this build; use redis:// on a private network",
                    ));
                }
                let cluster = scheme == "redis+cluster";
                let options = remote(&ours, "vlexivo:nonce:")?;
                let (userinfo, hosts_and_path) = match rest.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, rest),
                };
                let (hosts, path) = match hosts_and_path.split_once('/') {
                    Some((h, p)) => (h, p),
                    None => (hosts_and_path, ""),
                };
                if hosts.is_empty() || hosts.split(',').any(str::is_empty) {
                    return Err(config(format!("{} names no host", redact(url))));
                }
                if !cluster && hosts.contains(',') {
                    return Err(config("several hosts need redis+cluster://"));
                }
                if cluster && !path.is_empty() && path != "0" {
                    return Err(config("a Redis Cluster has only database 0"));
                }
                if !path.is_empty() && path.parse::<u16>().is_err() {
                    return Err(config(format!("{:?} is not a Redis database number", path)));
                }
                let nodes = hosts
                    .split(',')
                    .map(|h| {
                        let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                        let db = if path.is_empty() || cluster { String::new() } else { format!("/{path}") };
                        format!("redis://{auth}{h}{db}")
                    })
                    .collect();
                Ok(StoreSpec::Redis { nodes, cluster, options })
            }
            "postgres" | "postgresql" => {
                let options = remote(&ours, "")?;
                let mut url = format!("postgresql://{rest}");
                if !passthrough.is_empty() {
                    url.push('?');
                    url.push_str(&passthrough.join("&"));
                }
                Ok(StoreSpec::Postgres { url, options })
            }
            other => Err(config(format!(
                "unknown scheme {other:?} (memory, sqlite://, redis://, redis+cluster://, postgres://)"
            ))),
        }
    }

    /// Open the store (connecting to a networked one: an address that answers nothing is a
    /// config error here, not a surprise on the first paid request).
    pub fn open(&self) -> Result<Arc<dyn NonceStore>> {
        match self {
            StoreSpec::Memory { capacity, pages_thread } => Ok(Arc::new(super::MemoryStore::with_options(
                super::MemoryOptions::default().capacity(*capacity).pages_thread(*pages_thread),
            ))),
            #[cfg(feature = "sqlite")]
            StoreSpec::Sqlite { path } => {
                Ok(Arc::new(super::SqliteStore::open(path).map_err(|e| config(e.to_string()))?))
            }
            #[cfg(not(feature = "sqlite"))]
            StoreSpec::Sqlite { .. } => Err(config("this build has no SQLite store")),
            #[cfg(feature = "redis")]
            StoreSpec::Redis { nodes, cluster, options } => {
                Ok(Arc::new(super::redis::RedisStore::connect(nodes, *cluster, options.clone())?))
            }
            #[cfg(not(feature = "redis"))]
            StoreSpec::Redis { .. } => Err(config("this build has no Redis store (feature \"redis\")")),
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres { url, options } => {
                Ok(Arc::new(super::postgres::PostgresStore::connect(url, options.clone())?))
            }
            #[cfg(not(feature = "postgres"))]
            StoreSpec::Postgres { .. } => {
                Err(config("this build has no PostgreSQL store (feature \"postgres\")"))
            }
        }
    }
}

/// Parse and open in one step (what bindings call), counting the store's failures
/// ([`NonceStore::failures`]).
pub fn open(url: &str, options: &[(&str, &str)]) -> Result<Arc<dyn NonceStore>> {
    Ok(Arc::new(super::Metered::new(StoreSpec::parse(url, options)?.open()?)))
}

fn opt<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn remote(options: &[(String, String)], default_prefix: &str) -> Result<RemoteOptions> {
    let get = |k: &str| opt(options, k);
    let ms = |k: &str, d: Duration| -> Result<Duration> {
        Ok(match get(k) {
            Some(v) => Duration::from_millis(number(v, k, 1, 600_000)?),
            None => d,
        })
    };
    let prefix = get("prefix").unwrap_or(default_prefix).to_string();
    if prefix.len() > 64 || prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(config("prefix must be at most 64 characters, without spaces or control characters"));
    }
    Ok(RemoteOptions {
        prefix,
        pool_size: match get("pool_size") {
            Some(v) => number(v, "pool_size", 1, MAX_POOL_SIZE as u64)? as usize,
            None => DEFAULT_POOL_SIZE,
        },
        timeout: ms("timeout_ms", DEFAULT_TIMEOUT)?,
        connect_timeout: ms("connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
    })
}

fn number(v: &str, key: &str, min: u64, max: u64) -> Result<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(config(format!("{key} must be a whole number from {min} to {max}, not {v:?}"))),
    }
}

fn yes_no(v: &str, key: &str) -> Result<bool> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(config(format!("{key} must be true or false, not {v:?}"))),
    }
}

fn list(keys: &[&str]) -> String {
    if keys.is_empty() { "none".into() } else { keys.join(", ") }
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| config("bad %-escape in the URL"))?;
                out.push(v);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| config("the URL is not UTF-8"))
}

/// `url` with any password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') { "(a URL with credentials)".into() } else { url.to_string() };
    };
    let (auth_end, _) = match rest.rsplit_once('@') {
        Some((u, h)) => (u.len(), h),
        None => return url.to_string(),
    };
    let userinfo = &rest[..auth_end];
    let user = userinfo.split_once(':').map(|(u, _)| u).unwrap_or(userinfo);
    let hidden = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
    let mut out = format!("{scheme}://{hidden}@{}", &rest[auth_end + 1..]);
    // libpq's password parameter.
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map(|e| q + e).unwrap_or(out.len());
        out.replace_range(q + "password=".len()..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str, opts: &[(&str, &str)]) -> String {
        let e = StoreSpec::parse(url, opts).unwrap_err();
        assert_eq!(e.code(), "config_invalid", "{url}");
        e.to_string()
    }

    #[test]
    fn memory_and_sqlite() {
        let memory = |capacity, pages_thread| StoreSpec::Memory { capacity, pages_thread };
        assert_eq!(StoreSpec::parse("memory", &[]).unwrap(), memory(1_000_000, true));
        assert_eq!(StoreSpec::parse("memory://?capacity=10", &[]).unwrap(), memory(10, true));
        assert_eq!(StoreSpec::parse("memory", &[("capacity", "7")]).unwrap(), memory(7, true));
        assert_eq!(
            StoreSpec::parse("memory://?capacity=7&pages_thread=false", &[]).unwrap(),
            memory(7, false)
        );
        assert_eq!(StoreSpec::parse("memory", &[("pages_thread", "true")]).unwrap(), memory(1_000_000, true));
        assert!(err("memory", &[("pages_thread", "no")]).contains("pages_thread must be true or false"));
        assert_eq!(
            StoreSpec::parse("sqlite:///tmp/a%20b.db", &[]).unwrap(),
            StoreSpec::Sqlite { path: "/tmp/a b.db".into() }
        );
        assert_eq!(
            StoreSpec::parse("sqlite://rel.db", &[]).unwrap(),
            StoreSpec::Sqlite { path: "rel.db".into() }
        );
        assert!(err("sqlite", &[]).contains("needs a file"));
        assert!(err("sqlite://", &[]).contains("needs a file"));
        assert!(err("memory", &[("capacity", "0")]).contains("capacity"));
        assert!(err("memory", &[("prefix", "x")]).contains("unknown option \"prefix\""));
        assert!(err("memory://host", &[]).contains("no address"));
    }

    #[test]
    fn redis_urls() {
        let StoreSpec::Redis { nodes, cluster, options } = StoreSpec::parse(
            "redis://:s3cret@127.0.0.1:6379/2?prefix=api1:&timeout_ms=250",
            &[("pool_size", "3")],
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(nodes, vec!["redis://:s3cret@127.0.0.1:6379/2"]);
        assert!(!cluster);
        assert_eq!(options.prefix, "api1:");
        assert_eq!(options.pool_size, 3);
        assert_eq!(options.timeout, Duration::from_millis(250));
        assert_eq!(options.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let StoreSpec::Redis { nodes, cluster, options } =
            StoreSpec::parse("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001", &[]).unwrap()
        else {
            panic!()
        };
        assert!(cluster);
        assert_eq!(nodes, vec!["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7001"]);
        assert_eq!(options.prefix, "vlexivo:nonce:");
        assert!(err("redis://h:1,h:2", &[]).contains("redis+cluster"));
        assert!(err("redis+cluster://h:1/3", &[]).contains("database 0"));
        assert!(err("redis://h/x", &[]).contains("database number"));
        assert!(err("redis://", &[]).contains("no host"));
        assert!(err("rediss://h", &[]).contains("TLS"));
        assert!(err("redis://h?timeout=5", &[]).contains("unknown option \"timeout\""));
        assert!(err("redis://h", &[("poolSize", "2")]).contains("unknown option \"poolSize\""));
        assert!(err("redis://h?prefix=a", &[("prefix", "b")]).contains("twice"));
        assert!(err("redis://h", &[("timeout_ms", "0")]).contains("timeout_ms"));
        assert!(err("redis://h", &[("pool_size", "1000")]).contains("pool_size"));
        assert!(err("redis://h", &[("prefix", "a b")]).contains("prefix"));
    }

    #[test]
    fn postgres_urls_keep_driver_parameters() {
        let StoreSpec::Postgres { url, options } = StoreSpec::parse(
            "postgres://app:pw@/vlexivo?host=/run/pg&pool_size=4&sslmode=disable&prefix=svc1:",
            &[("timeout_ms", "900")],
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(url, "postgresql://app:pw@/vlexivo?host=/run/pg&sslmode=disable");
        assert_eq!((options.pool_size, options.prefix.as_str()), (4, "svc1:"));
        assert_eq!(options.timeout, Duration::from_millis(900));
        assert!(err("postgres://h/db", &[("table", "x")]).contains("unknown option"));
    }

    #[test]
    fn unknown_things_are_config_errors() {
        for (url, what) in [
            ("redis//localhost", "not a store URL"),
            ("mongodb://h", "unknown scheme"),
            ("", "not a store URL"),
            ("Memory2", "not a store URL"),
            ("redis://h?prefix=%zz", "%-escape"),
        ] {
            assert!(err(url, &[]).contains(what), "{url}: {}", err(url, &[]));
        }
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(redact("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(
            redact("postgres://app:s3cret@h/db?password=x&a=1"),
            "postgres://app:***@h/db?password=***&a=1"
        );
        assert_eq!(redact("postgres://app@h/db"), "postgres://app@h/db");
        assert!(!err("mongodb://u:s3cret@h", &[]).contains("s3cret"));
        assert!(!err("redis//u:s3cret@h", &[]).contains("s3cret"));
    }
}
