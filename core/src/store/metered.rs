//! A store that counts its own failures, so an application can see a store going bad (every
//! binding shows the count: Node's `storeFailures`, Python's `store_failures`, tower's
//! `PaywallLayer::store_failures`) besides the line each failed request logs.
//!
//! A failure is the store's fault (an error with a 5xx status: unreachable, timed out, full);
//! a malformed key is the caller's and is not counted.

use super::{Consume, Done, Lease, NonceStore, StoreFuture};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A [`NonceStore`] wrapped to count failures ([`NonceStore::failures`]).
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn NonceStore>,
    failures: Arc<AtomicU64>,
}

impl Metered {
    pub fn new(inner: Arc<dyn NonceStore>) -> Self {
        Self { inner, failures: Arc::new(AtomicU64::new(0)) }
    }
}

fn count<T>(failures: &AtomicU64, r: Result<T>) -> Result<T> {
    if let Err(e) = &r
        && is_failure(e)
    {
        failures.fetch_add(1, Ordering::Relaxed);
    }
    r
}

fn is_failure(e: &Error) -> bool {
    e.http_status() >= 500
}

impl NonceStore for Metered {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        count(&self.failures, self.inner.consume(key, expires_at, now))
    }
    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        count(&self.failures, self.inner.release(key, lease))
    }
    fn purge(&self, now: u64) -> Result<u64> {
        count(&self.failures, self.inner.purge(now))
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn blocks(&self) -> bool {
        self.inner.blocks()
    }
    fn consume_async(&self, key: String, expires_at: u64, now: u64) -> StoreFuture<Consume> {
        let (fut, failures) = (self.inner.consume_async(key, expires_at, now), self.failures.clone());
        Box::pin(async move { count(&failures, fut.await) })
    }
    fn release_async(&self, key: String, lease: Lease) -> StoreFuture<()> {
        let (fut, failures) = (self.inner.release_async(key, lease), self.failures.clone());
        Box::pin(async move { count(&failures, fut.await) })
    }
    fn consume_then(&self, key: String, expires_at: u64, now: u64, done: Done<Consume>) {
        let failures = self.failures.clone();
        self.inner.consume_then(key, expires_at, now, Box::new(move |r| done(count(&failures, r))));
    }
    fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn counts_the_stores_failures_not_the_callers() {
        let s = Metered::new(Arc::new(MemoryStore::with_capacity(1)));
        assert!(s.consume("a:1", 100, 0).unwrap().is_fresh());
        assert_eq!(s.consume("a:1", 100, 0).unwrap(), Consume::Replayed);
        assert_eq!(s.consume("", 100, 0).unwrap_err().code(), "token_malformed");
        assert_eq!(s.failures(), 0);
        // Full: the store's fault, counted, on every face.
        assert_eq!(s.consume("a:2", 100, 0).unwrap_err().code(), "nonce_store_full");
        let (tx, rx) = std::sync::mpsc::channel();
        s.consume_then("a:3".into(), 100, 0, Box::new(move |r| tx.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap().unwrap_err().code(), "nonce_store_full");
        assert_eq!(s.failures(), 2);
        assert_eq!((s.kind(), s.blocks()), ("memory", false));
    }
}
