//! Nonce stores: the provider side's replay protection. A proof token is good for exactly one
//! run of the handler; the middleware records its nonce with one atomic insert-if-absent that
//! expires with the token, and releases it if the handler fails so the payer can retry.
//!
//! The trait is synchronous and takes `now` explicitly (time is injected, as everywhere in
//! core), so networked stores (Redis `SET NX EXAT`, PostgreSQL `INSERT … ON CONFLICT`) fit it
//! unchanged: each method is one round trip and needs no state shared between API instances.

pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};

/// The outcome of [`NonceStore::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// First use: run the handler.
    Fresh,
    /// Already consumed and not yet expired: a replay.
    Replayed,
}

/// Longest key a store accepts. Real keys (account + ":" + nonce) are about 100 bytes; the bound
/// keeps a hostile token from making a store hold arbitrarily large keys.
pub const MAX_KEY_LEN: usize = 256;

/// A set of single-use keys with expiry. Implementations must make `consume` atomic across
/// every thread, and across every process or host that shares the store.
///
/// Expiry convention (all stores): an entry recorded until `expires_at` is live while
/// `now <= expires_at` and expired once `now > expires_at`.
pub trait NonceStore: Send + Sync + std::fmt::Debug {
    /// Atomically record `key` (insert-if-absent) until `expires_at` (unix seconds). Fresh if it
    /// was absent (or present but already expired at `now`), Replayed otherwise.
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume>;
    /// Forget `key` so the same token may be used again (the handler failed). Idempotent.
    fn release(&self, key: &str) -> Result<()>;
    /// Drop expired entries; returns how many.
    fn purge(&self, now: u64) -> Result<u64>;
    /// Short name for logs/metrics ("memory", "sqlite", later "redis", "postgres").
    fn kind(&self) -> &'static str;
}

/// The store key for a provider account's nonce: account + ":" + nonce (nonces are random, the
/// prefix keeps providers sharing one store apart).
pub fn nonce_key(account: &str, nonce: &str) -> String {
    let mut key = String::with_capacity(account.len() + 1 + nonce.len());
    key.push_str(account);
    key.push(':');
    key.push_str(nonce);
    key
}

/// Every store checks keys the same way, before touching any state.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::TokenMalformed("nonce"));
    }
    Ok(())
}

impl<S: NonceStore + ?Sized> NonceStore for std::sync::Arc<S> {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        (**self).consume(key, expires_at, now)
    }
    fn release(&self, key: &str) -> Result<()> {
        (**self).release(key)
    }
    fn purge(&self, now: u64) -> Result<u64> {
        (**self).purge(now)
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour every store must share; each implementation's tests run it.
    pub(crate) fn conformance(s: &dyn NonceStore) {
        use Consume::*;
        // Fresh, then replayed.
        assert_eq!(s.consume("acct:n1", 100, 10).unwrap(), Fresh);
        assert_eq!(s.consume("acct:n1", 100, 10).unwrap(), Replayed);
        assert_eq!(s.consume("acct:n1", 999, 50).unwrap(), Replayed);
        // Another account's identical nonce is a different key.
        assert_eq!(s.consume("other:n1", 100, 10).unwrap(), Fresh);
        // Release, then the same token works again, once.
        s.release("acct:n1").unwrap();
        s.release("acct:n1").unwrap();
        s.release("acct:never").unwrap();
        assert_eq!(s.consume("acct:n1", 100, 20).unwrap(), Fresh);
        assert_eq!(s.consume("acct:n1", 100, 20).unwrap(), Replayed);
        // Live through expires_at inclusive, fresh after.
        assert_eq!(s.consume("acct:n1", 100, 100).unwrap(), Replayed);
        assert_eq!(s.consume("acct:n1", 200, 101).unwrap(), Fresh);
        assert_eq!(s.consume("acct:n1", 200, 150).unwrap(), Replayed);
        // Purge counts only expired entries.
        assert_eq!(s.consume("acct:n2", 300, 150).unwrap(), Fresh);
        assert_eq!(s.consume("acct:n3", 400, 150).unwrap(), Fresh);
        assert_eq!(s.purge(150).unwrap(), 1); // other:n1 (100)
        assert_eq!(s.purge(150).unwrap(), 0);
        assert_eq!(s.purge(301).unwrap(), 2); // acct:n1 (200), acct:n2 (300)
        assert_eq!(s.consume("acct:n3", 400, 301).unwrap(), Replayed);
        assert_eq!(s.consume("acct:n2", 400, 301).unwrap(), Fresh);
        // Bad keys are refused before any state is touched.
        assert_eq!(s.consume("", 10, 0).unwrap_err().code(), "token_malformed");
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(s.consume(&long, 10, 0).unwrap_err().code(), "token_malformed");
        assert_eq!(s.release(&long).unwrap_err().code(), "token_malformed");
        // Extreme times do not overflow or wrap.
        assert_eq!(s.consume("acct:max", u64::MAX, u64::MAX - 1).unwrap(), Fresh);
        assert_eq!(s.consume("acct:max", u64::MAX, u64::MAX).unwrap(), Replayed);
        assert!(!s.kind().is_empty());
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
    fn trait_objects_work() {
        let s: std::sync::Arc<dyn NonceStore> = std::sync::Arc::new(MemoryStore::new());
        assert_eq!(s.consume("a:1", 10, 0).unwrap(), Consume::Fresh);
        assert_eq!(s.kind(), "memory");
    }
}
