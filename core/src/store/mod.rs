//! Nonce stores: the provider side's replay protection. A proof token is good for exactly one
//! run of the handler; the middleware records its nonce with one atomic insert-if-absent that
//! expires with the token, and releases it if the handler fails so the payer can retry.
//!
//! Every consume hands out a [`Lease`], and a release names it: the store forgets the nonce only
//! if it is still held under that lease (compare-and-delete). So a late or repeated release
//! (an error handler and a close listener both firing, a release that raced a retry) can never
//! free a nonce that another request has consumed since.
//!
//! The trait has a blocking face and an asynchronous one. Local stores (memory, SQLite) answer
//! in microseconds and implement the blocking face; their async methods are ready futures.
//! Networked stores (Redis, PostgreSQL) run their I/O on a small runtime of their own and
//! implement the async face; [`NonceStore::blocks`] tells an event-loop binding (Node, asyncio,
//! tokio) to take it, so a slow or unreachable store never stalls the loop. Time is injected
//! (`now`), as everywhere in core.

pub mod memory;
mod metered;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod remote;
pub mod spec;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::{MemoryOptions, MemoryStore};
pub use metered::Metered;
pub use spec::{RemoteOptions, StoreSpec, open};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

/// Proof that one consume holds a nonce: only a release naming it frees the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease(pub u64);

/// The outcome of [`NonceStore::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// First use: run the handler; release with this lease if it fails.
    Fresh(Lease),
    /// Already consumed and not yet expired: a replay.
    Replayed,
}

impl Consume {
    pub fn is_fresh(&self) -> bool {
        matches!(self, Consume::Fresh(_))
    }
}

/// A store operation in flight (the async face). Owns its arguments, so it may run on another
/// thread or runtime than the caller's.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// What to do with a store's answer ([`NonceStore::consume_then`]): called once, on whichever
/// thread the answer arrives.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send + 'static>;

/// Longest key a store accepts. Real keys are 50 bytes (a 25-character account id, ":", a
/// 24-character nonce); the bound keeps a hostile token from making a store hold arbitrarily
/// large keys.
pub const MAX_KEY_LEN: usize = 256;

/// A set of single-use keys with expiry. Implementations must make `consume` atomic across
/// every thread, and across every process or host that shares the store.
///
/// Expiry convention (all stores): an entry recorded until `expires_at` is live while
/// `now <= expires_at` and expired once `now > expires_at`.
pub trait NonceStore: Send + Sync + std::fmt::Debug {
    /// Atomically record `key` (insert-if-absent) until `expires_at` (unix seconds). Fresh if it
    /// was absent (or present but already expired at `now`), Replayed otherwise. Blocks for a
    /// networked store (bounded by its timeout).
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume>;
    /// Forget `key` if it is still held under `lease`, so the same token may be used again (the
    /// handler failed). Idempotent; a stale lease changes nothing.
    fn release(&self, key: &str, lease: Lease) -> Result<()>;
    /// Drop expired entries; returns how many.
    fn purge(&self, now: u64) -> Result<u64>;
    /// Short name for logs/metrics ("memory", "sqlite", "redis", "postgres").
    fn kind(&self) -> &'static str;
    /// True when the blocking methods wait on the network: callers running an event loop use
    /// the async methods instead.
    fn blocks(&self) -> bool {
        false
    }
    /// [`consume`](Self::consume) as a future that never blocks the caller's thread.
    fn consume_async(&self, key: String, expires_at: u64, now: u64) -> StoreFuture<Consume> {
        Box::pin(std::future::ready(self.consume(&key, expires_at, now)))
    }
    /// [`release`](Self::release) as a future that never blocks the caller's thread.
    fn release_async(&self, key: String, lease: Lease) -> StoreFuture<()> {
        Box::pin(std::future::ready(self.release(&key, lease)))
    }
    /// [`consume`](Self::consume), handing the answer to `done` instead of returning it: for
    /// bindings without an executor to poll [`consume_async`](Self::consume_async) (Node). A
    /// local store calls `done` before returning; a networked one calls it later from its own
    /// I/O threads, never blocking the caller.
    fn consume_then(&self, key: String, expires_at: u64, now: u64, done: Done<Consume>) {
        done(self.consume(&key, expires_at, now));
    }
    /// Operations that failed on the store's side (unreachable, timed out, full) since it was
    /// opened; counted by [`Metered`], which every store opened by URL is wrapped in.
    fn failures(&self) -> u64 {
        0
    }
}

/// The store key for a provider account's nonce: account + ":" + nonce (nonces are random, the
/// prefix keeps providers sharing one store apart).
pub fn nonce_key(account: &str, nonce: &str) -> String {
    let mut key = String::with_capacity(account.len() + 1 + nonce.len() + 1 + 16);
    key.push_str(account);
    key.push(':');
    key.push_str(nonce);
    key
}

/// Separates the key from the lease in a release handle.
const HANDLE_SEP: char = '~';

/// What an adapter keeps to release a consumed nonce: the store key and the lease, as one
/// ASCII string `key~lease` (lease in 16 hex digits). Appended to `key` in place.
pub fn push_lease(key: &mut String, lease: Lease) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Made whole, then appended once: `push` per character re-checks the capacity and encodes
    // a `char` each time.
    let mut text = [HANDLE_SEP as u8; 17];
    for (i, d) in text[1..].iter_mut().enumerate() {
        *d = HEX[((lease.0 >> (60 - 4 * i)) & 0xf) as usize];
    }
    // ASCII, so always UTF-8: the default is never taken.
    key.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// The key and lease of a release handle made by [`push_lease`].
pub fn parse_handle(handle: &str) -> Result<(&str, Lease)> {
    let bad = || Error::Internal("not a nonce release handle".into());
    let (key, hex) = handle.rsplit_once(HANDLE_SEP).ok_or_else(bad)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let lease = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
    Ok((key, Lease(lease)))
}

/// Every store checks keys the same way, before touching any state.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::TokenMalformed("nonce"));
    }
    Ok(())
}

/// Lease numbers for one store handle: a random start (so handles in other processes sharing
/// the store do not hand out the same numbers) and a counter.
#[derive(Debug)]
pub(crate) struct Leases(AtomicU64);

impl Leases {
    pub(crate) fn new() -> Self {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random number generator failed");
        Self(AtomicU64::new(u64::from_le_bytes(b)))
    }

    pub(crate) fn next(&self) -> Lease {
        Lease(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

impl<S: NonceStore + ?Sized> NonceStore for std::sync::Arc<S> {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        (**self).consume(key, expires_at, now)
    }
    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        (**self).release(key, lease)
    }
    fn purge(&self, now: u64) -> Result<u64> {
        (**self).purge(now)
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn blocks(&self) -> bool {
        (**self).blocks()
    }
    fn consume_async(&self, key: String, expires_at: u64, now: u64) -> StoreFuture<Consume> {
        (**self).consume_async(key, expires_at, now)
    }
    fn release_async(&self, key: String, lease: Lease) -> StoreFuture<()> {
        (**self).release_async(key, lease)
    }
    fn consume_then(&self, key: String, expires_at: u64, now: u64, done: Done<Consume>) {
        (**self).consume_then(key, expires_at, now, done)
    }
    fn failures(&self) -> u64 {
        (**self).failures()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether this is the test's own process; if not, run the test `name` (its path in the
    /// crate, `store::memory::tests::…`) again in one (this test binary, that test alone) and
    /// check it passed. For tests that count the process's threads, or fork: a fork copies each
    /// lock as it is at that moment, and other tests' threads hold theirs at any time.
    #[cfg(target_os = "linux")]
    pub(crate) fn in_own_process(name: &str) -> bool {
        use std::process::{Command, Stdio};
        if std::env::var_os("VLX_STORE_TEST_OWN_PROCESS").is_some() {
            return true;
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env("VLX_STORE_TEST_OWN_PROCESS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} in a process of its own: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }

    /// Threads of this process named `name` (the kernel keeps 15 bytes of a name).
    #[cfg(target_os = "linux")]
    pub(crate) fn threads_named(name: &str) -> usize {
        let name = &name[..name.len().min(15)];
        let tasks = std::fs::read_dir("/proc/self/task").unwrap();
        tasks
            .filter(|t| {
                let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
                comm.is_ok_and(|c| c.trim_end() == name)
            })
            .count()
    }

    /// Run `child` in a forked child of this process (on this thread, the only one the child
    /// has) and check it passed (within 90 s). Only in a test's own process ([`in_own_process`]).
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    pub(crate) fn in_forked_child(child: impl FnOnce()) {
        // SAFETY: the child runs `child` on this thread and leaves by _exit, without running the
        // parent's destructors or returning to the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
            if let Err(panic) = &outcome {
                // Straight to stderr: the harness's capture of this thread's output is lost at
                // _exit.
                let why = panic.downcast_ref::<String>().map(String::as_str);
                let why = why.or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("?");
                let _ =
                    std::io::Write::write_all(&mut std::io::stderr(), format!("child: {why}\n").as_bytes());
            }
            // SAFETY: ends the child here.
            unsafe { libc::_exit(i32::from(outcome.is_err())) };
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child, writing its status into `status`.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                break;
            }
            assert_eq!(done, 0, "waitpid");
            if std::time::Instant::now() > deadline {
                // SAFETY: our own child, stuck.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the forked child did not finish within 90 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    }

    fn fresh(c: Consume) -> Lease {
        match c {
            Consume::Fresh(l) => l,
            Consume::Replayed => panic!("expected a fresh consume"),
        }
    }

    /// The behaviour every store shares, at times near `t0` (a store that keeps time itself,
    /// as Redis does, is given the real clock). Keys are made unique with `tag`.
    pub(crate) fn conformance_at(s: &dyn NonceStore, t0: u64, tag: &str) {
        use Consume::*;
        let k = |n: &str| format!("acct{tag}:{n}");
        let (n1, other) = (k("n1"), format!("other{tag}:n1"));
        // Fresh, then replayed.
        let l1 = fresh(s.consume(&n1, t0 + 100, t0).unwrap());
        assert_eq!(s.consume(&n1, t0 + 100, t0).unwrap(), Replayed);
        assert_eq!(s.consume(&n1, t0 + 999, t0 + 40).unwrap(), Replayed);
        // Another account's identical nonce is a different key.
        assert!(s.consume(&other, t0 + 100, t0).unwrap().is_fresh());
        // A release under another lease frees nothing.
        s.release(&n1, Lease(l1.0 ^ 1)).unwrap();
        assert_eq!(s.consume(&n1, t0 + 100, t0 + 10).unwrap(), Replayed);
        // Release, then the same token works again, once.
        s.release(&n1, l1).unwrap();
        s.release(&n1, l1).unwrap();
        s.release(&k("never"), l1).unwrap();
        let l2 = fresh(s.consume(&n1, t0 + 100, t0 + 10).unwrap());
        assert_ne!(l1, l2, "each consume has its own lease");
        assert_eq!(s.consume(&n1, t0 + 100, t0 + 10).unwrap(), Replayed);
        // A late, repeated release of the first consume cannot free the second one.
        s.release(&n1, l1).unwrap();
        assert_eq!(s.consume(&n1, t0 + 100, t0 + 20).unwrap(), Replayed);
        s.release(&n1, l2).unwrap();
        assert!(s.consume(&n1, t0 + 100, t0 + 20).unwrap().is_fresh());
        // Bad keys are refused before any state is touched.
        assert_eq!(s.consume("", t0 + 10, t0).unwrap_err().code(), "token_malformed");
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(s.consume(&long, t0 + 10, t0).unwrap_err().code(), "token_malformed");
        assert_eq!(s.release(&long, l1).unwrap_err().code(), "token_malformed");
        assert!(!s.kind().is_empty());
    }

    /// Expiry and purge against an injected clock, for the stores that compare with `now`.
    pub(crate) fn conformance_clock(s: &dyn NonceStore) {
        use Consume::*;
        conformance_at(s, 0, "");
        let l = fresh(s.consume("acct:c1", 100, 10).unwrap());
        // Live through expires_at inclusive, fresh after (a new lease).
        assert_eq!(s.consume("acct:c1", 100, 100).unwrap(), Replayed);
        let l2 = fresh(s.consume("acct:c1", 200, 101).unwrap());
        assert_ne!(l, l2);
        assert_eq!(s.consume("acct:c1", 200, 150).unwrap(), Replayed);
        // The lease of the expired consume no longer frees the key.
        s.release("acct:c1", l).unwrap();
        assert_eq!(s.consume("acct:c1", 200, 150).unwrap(), Replayed);
        // Purge drops only expired entries: conformance_at left acct:n1 and other:n1 at 100, which
        // a store that also drops expired entries as it goes (memory: a consume in the same
        // shard since 100) may have dropped already.
        assert!(s.consume("acct:c2", 300, 150).unwrap().is_fresh());
        assert!(s.consume("acct:c3", 400, 150).unwrap().is_fresh());
        assert!(s.purge(150).unwrap() <= 2); // acct:n1, other:n1 (100)
        assert_eq!(s.purge(150).unwrap(), 0);
        assert_eq!(s.purge(301).unwrap(), 2); // acct:c1 (200), acct:c2 (300)
        assert_eq!(s.consume("acct:c3", 400, 301).unwrap(), Replayed);
        assert!(s.consume("acct:c2", 400, 301).unwrap().is_fresh());
        // Extreme times do not overflow or wrap.
        assert!(s.consume("acct:max", u64::MAX, u64::MAX - 1).unwrap().is_fresh());
        assert_eq!(s.consume("acct:max", u64::MAX, u64::MAX).unwrap(), Replayed);
    }

    /// The async face agrees with the blocking one.
    pub(crate) async fn conformance_async(s: &dyn NonceStore, t0: u64, tag: &str) {
        let key = format!("acct{tag}:async");
        let l = fresh(s.consume_async(key.clone(), t0 + 100, t0).await.unwrap());
        assert_eq!(s.consume(&key, t0 + 100, t0).unwrap(), Consume::Replayed);
        assert_eq!(s.consume_async(key.clone(), t0 + 100, t0).await.unwrap(), Consume::Replayed);
        s.release_async(key.clone(), Lease(l.0.wrapping_add(1))).await.unwrap();
        assert_eq!(s.consume_async(key.clone(), t0 + 100, t0).await.unwrap(), Consume::Replayed);
        s.release_async(key.clone(), l).await.unwrap();
        assert!(s.consume_async(key.clone(), t0 + 100, t0).await.unwrap().is_fresh());
        let e = s.consume_async(String::new(), t0 + 100, t0).await.unwrap_err();
        assert_eq!(e.code(), "token_malformed");
        // The callback face too (the answer may come from another thread).
        let (tx, rx) = std::sync::mpsc::channel();
        let send = move |r| drop(tx.send(r));
        s.consume_then(key.clone(), t0 + 100, t0, Box::new(send.clone()));
        s.consume_then(format!("acct{tag}:then"), t0 + 100, t0, Box::new(send));
        let mut got: Vec<bool> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap().unwrap().is_fresh())
            .collect();
        got.sort();
        assert_eq!(got, [false, true]);
    }

    #[test]
    fn key_format_and_bounds() {
        assert_eq!(nonce_key("acct_1", "abc"), "acct_1:abc");
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(check_key("").unwrap_err().code(), "token_malformed");
        assert_eq!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).unwrap_err().code(), "token_malformed");
    }

    #[test]
    fn release_handles_round_trip() {
        for (key, lease) in [("acct_1:abc", 0u64), ("a~b:c", u64::MAX), ("acct:n", 0x0123_4567_89ab_cdef)] {
            let mut h = key.to_string();
            push_lease(&mut h, Lease(lease));
            assert!(h.is_ascii());
            assert_eq!(parse_handle(&h).unwrap(), (key, Lease(lease)));
        }
        for bad in ["acct:n", "acct:n~12", "acct:n~0123456789abcdeg", "acct:n~+123456789abcdef"] {
            assert!(parse_handle(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leases_differ_between_handles() {
        let (a, b) = (Leases::new(), Leases::new());
        let x = a.next();
        assert_ne!(x, a.next());
        assert_ne!(x, b.next());
    }

    #[test]
    fn trait_objects_work() {
        let s: std::sync::Arc<dyn NonceStore> = std::sync::Arc::new(MemoryStore::new());
        assert!(s.consume("a:1", 10, 0).unwrap().is_fresh());
        assert_eq!(s.kind(), "memory");
        assert!(!s.blocks());
    }
}
