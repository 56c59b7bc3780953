//! An in-process nonce store for one API instance: sharded hash maps behind short mutexes, with
//! bounded memory. When full it refuses new nonces (fail closed) rather than evict a live one,
//! since forgetting an unexpired nonce would let its token be replayed.

use super::{Consume, Lease, Leases, NonceStore, check_key};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Power of two, so the shard is picked with a mask. Many small shards bound the worst single
/// consume: a shard's map grows, sweeps and rehashes its tombstones in one go, in time
/// proportional to its size (at 32 shards and a million live nonces, 0.3-0.8 ms stalls).
const SHARDS: usize = 256;
/// A shard sweeps itself after this many inserts at least (and after a quarter of its size),
/// so the sweep's cost stays amortized O(1) per insert, and one sweep frees few keys.
const SWEEP_MIN_INSERTS: usize = 128;
/// Default bound: about 120 MB at 50-byte keys.
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The maps' hasher. Keys come from verified tokens (the nonce from the provider's own challenge),
/// so nobody can choose them to collide; a fast hasher makes a shard's rehash cheap (SipHash of
/// 50-byte keys was most of it). Seeded per process all the same.
type Hasher = foldhash::fast::RandomState;

/// What a live nonce holds: when it expires and the lease of the consume that recorded it.
#[derive(Debug, Clone, Copy)]
struct Held {
    expires_at: u64,
    lease: Lease,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Box<str>, Held, Hasher>,
    inserts_since_sweep: usize,
    /// `now` of the last sweep: entries only expire when time moves, so a second sweep at the
    /// same second would find nothing (and would let a full store be made to spin).
    swept_at: u64,
    /// Next lease: a key always lives in the same shard, so a counter per shard (from a random
    /// start) keeps leases of one key distinct without a shared atomic.
    next_lease: u64,
}

impl Shard {
    /// Remove entries expired at `now`; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.expires_at >= now);
        self.inserts_since_sweep = 0;
        self.swept_at = now;
        before - self.map.len()
    }

    /// Count an insert and sweep when due: after a quarter of the shard's size in inserts (at
    /// least SWEEP_MIN_INSERTS), so each sweep's cost is spread over the inserts before it.
    fn note_insert(&mut self, now: u64, len: &AtomicUsize) {
        self.inserts_since_sweep += 1;
        let due = SWEEP_MIN_INSERTS.max(self.map.len() / 4);
        if self.inserts_since_sweep >= due && now > self.swept_at {
            let freed = self.sweep(now);
            if freed > 0 {
                len.fetch_sub(freed, Ordering::AcqRel);
            }
        }
    }
}

/// Sharded in-memory [`NonceStore`]. Entries live until they expire or are released; the total
/// is bounded by the capacity and a full store answers `nonce_store_full`.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    /// Entries across all shards; slots are reserved with a compare-and-swap so the bound holds
    /// exactly under concurrency.
    len: AtomicUsize,
    capacity: usize,
    /// `now` of the last store-wide sweep triggered by a full store (at most one per second).
    full_sweep_at: AtomicU64,
    /// Picks a key's shard (its own seed: independent of the maps' hashes).
    pick: Hasher,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store bounded at [`DEFAULT_CAPACITY`] entries.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store bounded at `capacity` live entries (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let start = Leases::new();
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard { next_lease: start.next().0, ..Shard::default() }))
            .collect();
        Self {
            shards,
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            full_sweep_at: AtomicU64::new(0),
            pick: Hasher::default(),
        }
    }

    /// Entries currently held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        &self.shards[self.shard_index(key)]
    }

    fn shard_index(&self, key: &str) -> usize {
        use std::hash::BuildHasher;
        // The high bits: a hash table uses the low ones.
        (self.pick.hash_one(key) >> 56) as usize & (SHARDS - 1)
    }

    fn try_reserve_slot(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .is_ok()
    }

    fn forget(&self, n: usize) {
        if n > 0 {
            self.len.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

impl NonceStore for MemoryStore {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        check_key(key)?;
        // Second pass only after a store-wide sweep freed room elsewhere.
        for pass in 0..2 {
            let mut guard = self.shard(key).lock();
            let shard = &mut *guard;
            shard.next_lease = shard.next_lease.wrapping_add(1);
            let entry = Held { expires_at, lease: Lease(shard.next_lease) };
            let fresh = Ok(Consume::Fresh(entry.lease));
            // One hash and one probe on the common (fresh) path; the key is boxed up front,
            // which a replay wastes, but replays are the rare case.
            match shard.map.entry(Box::from(key)) {
                Entry::Occupied(mut e) => {
                    if e.get().expires_at >= now {
                        return Ok(Consume::Replayed);
                    }
                    // Expired: re-recording it is a fresh use and takes no new slot.
                    e.insert(entry);
                    return fresh;
                }
                Entry::Vacant(e) => {
                    if self.try_reserve_slot() {
                        e.insert(entry);
                        shard.note_insert(now, &self.len);
                        return fresh;
                    }
                }
            }
            if now > shard.swept_at {
                // Full: reclaim expired entries here first (we hold this lock already).
                let freed = shard.sweep(now);
                self.forget(freed);
                if self.try_reserve_slot() {
                    shard.map.insert(key.into(), entry);
                    shard.note_insert(now, &self.len);
                    return fresh;
                }
            }
            drop(guard);
            // Still full: sweep every shard, one lock at a time (never two held), at most once
            // per second store-wide so a flood at a full store cannot make each request O(n).
            let last = self.full_sweep_at.load(Ordering::Acquire);
            let claimed = pass == 0
                && now > last
                && self
                    .full_sweep_at
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !claimed || self.purge(now)? == 0 {
                break;
            }
        }
        Err(Error::NonceStoreFull)
    }

    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        check_key(key)?;
        let mut shard = self.shard(key).lock();
        if shard.map.get(key).is_some_and(|e| e.lease == lease) {
            shard.map.remove(key);
            drop(shard);
            self.forget(1);
        }
        Ok(())
    }

    fn purge(&self, now: u64) -> Result<u64> {
        let mut total = 0usize;
        for shard in self.shards.iter() {
            let freed = shard.lock().sweep(now);
            self.forget(freed);
            total += freed;
        }
        Ok(total as u64)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{conformance_async, conformance_clock};

    #[test]
    fn conforms() {
        conformance_clock(&MemoryStore::new());
    }

    #[tokio::test]
    async fn conforms_async() {
        conformance_async(&MemoryStore::new(), 0, "").await;
    }

    #[test]
    fn len_tracks_entries() {
        let s = MemoryStore::with_capacity(100);
        assert!(s.is_empty());
        let Consume::Fresh(l1) = s.consume("a:1", 10, 0).unwrap() else { panic!() };
        s.consume("a:2", 10, 0).unwrap();
        s.consume("a:2", 10, 0).unwrap();
        assert_eq!(s.len(), 2);
        s.release("a:1", Lease(l1.0 + 1)).unwrap();
        assert_eq!(s.len(), 2);
        s.release("a:1", l1).unwrap();
        s.release("a:1", l1).unwrap();
        assert_eq!(s.len(), 1);
        // Re-recording an expired entry does not take another slot.
        assert!(s.consume("a:2", 30, 20).unwrap().is_fresh());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn full_store_fails_closed_and_keeps_live_entries() {
        let s = MemoryStore::with_capacity(10);
        for i in 0..10 {
            assert!(s.consume(&format!("a:{i}"), 100, 0).unwrap().is_fresh());
        }
        let err = s.consume("a:new", 100, 0).unwrap_err();
        assert_eq!(err.code(), "nonce_store_full");
        assert_eq!(err.http_status(), 503);
        // Still full a second later (nothing expired): no live nonce was evicted.
        assert_eq!(s.consume("a:new", 100, 1).unwrap_err().code(), "nonce_store_full");
        assert_eq!(s.len(), 10);
        for i in 0..10 {
            assert_eq!(s.consume(&format!("a:{i}"), 100, 1).unwrap(), Consume::Replayed);
        }
        // A replay is still detected while full (no slot needed to answer it).
        assert_eq!(s.consume("a:3", 100, 2).unwrap(), Consume::Replayed);
        // Releasing one makes room.
        let l0 = s.shard("a:0").lock().map["a:0"].lease;
        s.release("a:0", l0).unwrap();
        assert!(s.consume("a:new", 100, 2).unwrap().is_fresh());
    }

    #[test]
    fn full_store_reclaims_expired_entries() {
        let s = MemoryStore::with_capacity(10);
        for i in 0..5 {
            s.consume(&format!("old:{i}"), 50, 0).unwrap();
        }
        for i in 0..5 {
            s.consume(&format!("live:{i}"), 500, 0).unwrap();
        }
        assert_eq!(s.consume("x:1", 500, 10).unwrap_err().code(), "nonce_store_full");
        // At 51 the five old entries have expired, wherever their shards are.
        for i in 0..5 {
            assert!(s.consume(&format!("new:{i}"), 500, 51).unwrap().is_fresh());
        }
        assert_eq!(s.consume("x:2", 500, 51).unwrap_err().code(), "nonce_store_full");
        for i in 0..5 {
            assert_eq!(s.consume(&format!("live:{i}"), 500, 52).unwrap(), Consume::Replayed);
        }
    }

    #[test]
    fn opportunistic_sweep_bounds_growth() {
        let s = MemoryStore::with_capacity(1_000_000);
        // 200k nonces, each living 10 s, at 1000 per second: ~10k live at any time.
        for i in 0..200_000u64 {
            let now = i / 1000;
            assert!(s.consume(&format!("a:{i}"), now + 10, now).unwrap().is_fresh());
        }
        assert!(s.len() < 80_000, "len {}", s.len());
        let purged = s.purge(1_000).unwrap();
        assert_eq!(s.len(), 0);
        assert!(purged > 0);
    }

    #[test]
    fn shards_are_used_evenly() {
        let s = MemoryStore::new();
        let mut counts = [0usize; SHARDS];
        for i in 0..1_000 * SHARDS {
            counts[s.shard_index(&format!("acct_123:{i:022}"))] += 1;
        }
        let mean = 1_000;
        assert!(counts.iter().all(|&c| c > mean * 7 / 10 && c < mean * 13 / 10), "{counts:?}");
    }
}
