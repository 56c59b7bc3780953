//! An in-process nonce store for one API instance: sharded hash tables behind short mutexes, with
//! bounded memory. When full it refuses new nonces (fail closed) rather than evict a live one,
//! since forgetting an unexpired nonce would let its token be replayed.
//!
//! Expired nonces leave incrementally: each shard queues its entries' expiries in consume order,
//! and every consume first removes at most [`EXPIRE_PER_CONSUME`] expired entries from the front
//! of its shard's queue, each found by its stored hash. No consume scans or rebuilds a whole
//! table (a sweep over a shard used to cost its size in cold cache lines, and a rehash read every
//! key again: 0.2-0.5 ms maximums at a million live nonces), so the worst single consume is a
//! few removals, or one table's growth while the store fills (which moves stored hashes and
//! reads no key). Expiries arrive nearly in
//! order (a proof's expiry is its payment time plus the token lifetime, and proofs are used soon
//! after payment); one that is not waits behind an earlier, longer-lived one, at most that long.
//! A full store, and `purge`, sweep exactly.

use super::{Consume, Lease, Leases, NonceStore, check_key};
use crate::error::{Error, Result};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live nonces per shard the store is sized for: the shard count grows with the capacity (256
/// shards for the default million). Many more, smaller shards would bound a table's growth
/// further but cost every consume cold cache lines (measured: twice the p50 at 4,096 shards).
const NONCES_PER_SHARD: usize = 4096;
/// Bounds of the shard count (powers of two, so the shard is picked with a mask).
const MIN_SHARDS: usize = 16;
const MAX_SHARDS: usize = 4096;
/// Expired entries a consume removes from its shard before its own insert: more than the one
/// it adds, so a backlog (after a burst, or once the clock jumps) drains while the work of any
/// one consume stays bounded.
const EXPIRE_PER_CONSUME: usize = 4;
/// Default bound: about 170 MB at 50-byte keys.
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The tables' hasher. Keys come from verified tokens (the nonce from the provider's own
/// challenge), so nobody can choose them to collide; a fast hasher keeps consumes cheap. Seeded
/// per process all the same.
type Hasher = foldhash::fast::RandomState;

/// A live nonce: its key, the key's hash (so growth and expiry never hash or read the key
/// again), when it expires and the lease of the consume that recorded it.
#[derive(Debug)]
struct Held {
    hash: u64,
    key: Box<str>,
    expires_at: u64,
    lease: Lease,
}

/// When a recorded entry expires: queued in consume order. Popped once due, it removes the
/// entry of that hash if that entry has expired by then: whatever happened to the key meanwhile
/// (released, recorded again, swept), removing an expired entry is always right, and a live one
/// is left alone.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    expires_at: u64,
    hash: u64,
}

#[derive(Debug, Default)]
struct Shard {
    table: HashTable<Held>,
    expiries: VecDeque<Expiry>,
    /// Next lease: a key always lives in the same shard, so a counter per shard (from a random
    /// start) keeps leases of one key distinct without a shared atomic.
    next_lease: u64,
}

impl Shard {
    /// Remove up to `budget` entries expired at `now` (live while `now <= expires_at`) from the
    /// front of the queue; returns how many entries left the table.
    fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut freed = 0;
        for _ in 0..budget {
            match self.expiries.front() {
                Some(x) if x.expires_at < now => {}
                _ => break,
            }
            let Some(x) = self.expiries.pop_front() else { break };
            if let Ok(e) = self.table.find_entry(x.hash, |h| h.hash == x.hash && h.expires_at < now) {
                e.remove();
                freed += 1;
            }
        }
        freed
    }

    /// Remove every entry expired at `now`, wherever its expiry is queued (a full store, and
    /// `purge`: exact, and O(shard)). Their queued expiries go stale and are dropped when popped.
    fn sweep(&mut self, now: u64) -> usize {
        let before = self.table.len();
        self.table.retain(|h| h.expires_at >= now);
        before - self.table.len()
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
    /// `now` of the last store-wide expiry pass triggered by a full store (at most one per
    /// second).
    full_sweep_at: AtomicU64,
    /// Picks a key's shard (its own seed: independent of the tables' hashes).
    pick: Hasher,
    /// Hashes keys inside a shard's table.
    hasher: Hasher,
    /// `shards.len() - 1`.
    mask: usize,
}

/// Shards for a store of `capacity` live nonces: about [`NONCES_PER_SHARD`] each when full.
fn shard_count(capacity: usize) -> usize {
    (capacity / NONCES_PER_SHARD).next_power_of_two().clamp(MIN_SHARDS, MAX_SHARDS)
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
        let count = shard_count(capacity);
        let shards = (0..count)
            .map(|_| Mutex::new(Shard { next_lease: start.next().0, ..Shard::default() }))
            .collect();
        Self {
            shards,
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            full_sweep_at: AtomicU64::new(0),
            pick: Hasher::default(),
            hasher: Hasher::default(),
            mask: count - 1,
        }
    }

    /// Entries currently held, including expired ones not yet removed.
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
        // The high bits: a hash table uses the low ones.
        (self.pick.hash_one(key) >> 52) as usize & self.mask
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
        let hash = self.hasher.hash_one(key);
        // Second pass only after a store-wide expiry pass freed room elsewhere.
        for pass in 0..2 {
            let mut guard = self.shard(key).lock();
            let shard = &mut *guard;
            self.forget(shard.expire(now, EXPIRE_PER_CONSUME));
            shard.next_lease = shard.next_lease.wrapping_add(1);
            let lease = Lease(shard.next_lease);
            let Shard { table, expiries, .. } = shard;
            match table.entry(hash, |h| &*h.key == key, |h| h.hash) {
                Slot::Occupied(mut e) => {
                    let held = e.get_mut();
                    if held.expires_at >= now {
                        return Ok(Consume::Replayed);
                    }
                    // Expired (its expiry not popped yet): re-recording it is a fresh use and
                    // takes no new slot.
                    held.expires_at = expires_at;
                    held.lease = lease;
                    expiries.push_back(Expiry { expires_at, hash });
                    return Ok(Consume::Fresh(lease));
                }
                Slot::Vacant(e) => {
                    if self.try_reserve_slot() {
                        expiries.push_back(Expiry { expires_at, hash });
                        e.insert(Held { hash, key: key.into(), expires_at, lease });
                        return Ok(Consume::Fresh(lease));
                    }
                }
            }
            // Full: remove every expired entry of this shard first (we hold its lock already).
            let freed = shard.sweep(now);
            self.forget(freed);
            if freed > 0 && self.try_reserve_slot() {
                shard.expiries.push_back(Expiry { expires_at, hash });
                shard
                    .table
                    .insert_unique(hash, Held { hash, key: key.into(), expires_at, lease }, |h| h.hash);
                return Ok(Consume::Fresh(lease));
            }
            drop(guard);
            // Still full: expire every shard, one lock at a time (never two held), at most once
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
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(key).lock();
        if let Ok(e) = shard.table.find_entry(hash, |h| h.lease == lease && &*h.key == key) {
            // Its queued expiry stays until it is due, and is dropped then (the lease is gone).
            e.remove();
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
        let hash = s.hasher.hash_one("a:0");
        let l0 = s.shard("a:0").lock().table.find(hash, |h| &*h.key == "a:0").unwrap().lease;
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
    fn incremental_expiry_bounds_growth() {
        let s = MemoryStore::with_capacity(1_000_000);
        // 200k nonces, each living 10 s, at 1000 per second: ~10k live at any time. Each shard
        // holds at most the few that expired since its last consume.
        for i in 0..200_000u64 {
            let now = i / 1000;
            assert!(s.consume(&format!("a:{i}"), now + 10, now).unwrap().is_fresh());
        }
        assert!(s.len() < 20_000, "len {}", s.len());
        let purged = s.purge(1_000).unwrap();
        assert_eq!(s.len(), 0);
        assert!(purged > 0);
    }

    /// `n` keys that live in the same shard as `like`.
    fn same_shard(s: &MemoryStore, like: &str, n: usize) -> Vec<String> {
        let want = s.shard_index(like);
        (0..).map(|i| format!("b:{i}")).filter(|k| s.shard_index(k) == want).take(n).collect()
    }

    #[test]
    fn a_consume_removes_a_bounded_number_of_expired_entries() {
        let s = MemoryStore::with_capacity(100_000);
        let keys = same_shard(&s, "b:new", 4 * EXPIRE_PER_CONSUME + 1);
        for k in &keys[1..] {
            assert!(s.consume(k, 10, 0).unwrap().is_fresh());
        }
        let n = keys.len() - 1;
        assert_eq!(s.len(), n);
        // All of them expired at 20: one consume removes EXPIRE_PER_CONSUME, not all.
        assert!(s.consume(&keys[0], 100, 20).unwrap().is_fresh());
        assert_eq!(s.len(), n - EXPIRE_PER_CONSUME + 1);
        // Later consumes in the shard drain the rest (replays too).
        for _ in 0..3 {
            assert_eq!(s.consume(&keys[0], 100, 21).unwrap(), Consume::Replayed);
        }
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn expiry_removes_only_what_expired() {
        let s = MemoryStore::with_capacity(100);
        let keys = same_shard(&s, "b:0", EXPIRE_PER_CONSUME + 2);
        let (fillers, k, r) =
            (&keys[..EXPIRE_PER_CONSUME], &keys[EXPIRE_PER_CONSUME], &keys[EXPIRE_PER_CONSUME + 1]);
        for f in fillers {
            assert!(s.consume(f, 10, 0).unwrap().is_fresh());
        }
        assert!(s.consume(k, 10, 0).unwrap().is_fresh());
        // At 20 the fillers' expiries use the consume's budget; k's is still queued when k is
        // re-recorded (expired: a fresh use). Its old expiry must not remove the new record.
        assert!(s.consume(k, 100, 20).unwrap().is_fresh());
        assert_eq!(s.len(), 1);
        // Released, then recorded again by another consume: the released record's expiry (40)
        // must not remove the new one either.
        let Consume::Fresh(lease) = s.consume(r, 40, 30).unwrap() else { panic!("fresh") };
        s.release(r, lease).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.consume(r, 200, 31).unwrap().is_fresh());
        // At 50 the stale expiries are due (dropped once they reach the front): nothing goes.
        for _ in 0..3 {
            assert_eq!(s.consume(k, 100, 50).unwrap(), Consume::Replayed);
            assert_eq!(s.consume(r, 200, 50).unwrap(), Consume::Replayed);
        }
        assert_eq!(s.len(), 2);
        // At 101 only k has expired.
        assert_eq!(s.purge(101).unwrap(), 1);
        assert_eq!(s.consume(r, 200, 101).unwrap(), Consume::Replayed);
        assert!(s.consume(k, 300, 101).unwrap().is_fresh());
    }

    #[test]
    fn shards_are_used_evenly() {
        let s = MemoryStore::with_capacity(256 * NONCES_PER_SHARD);
        let n = s.shards.len();
        assert_eq!(n, 256);
        let mut counts = vec![0usize; n];
        for i in 0..1_000 * n {
            counts[s.shard_index(&format!("acct_123:{i:022}"))] += 1;
        }
        let mean = 1_000;
        assert!(counts.iter().all(|&c| c > mean * 7 / 10 && c < mean * 13 / 10), "{counts:?}");
        // The largest store's shards are all reached: the index takes the hash's top 12 bits.
        let s = MemoryStore::with_capacity(MAX_SHARDS * NONCES_PER_SHARD);
        assert_eq!(s.shards.len(), MAX_SHARDS);
        let reached: std::collections::HashSet<usize> =
            (0..64 * MAX_SHARDS).map(|i| s.shard_index(&format!("acct_123:{i:022}"))).collect();
        assert_eq!(reached.len(), MAX_SHARDS);
    }

    #[test]
    fn shard_count_follows_the_capacity() {
        assert_eq!(shard_count(0), MIN_SHARDS);
        assert_eq!(shard_count(10), MIN_SHARDS);
        assert_eq!(shard_count(100_000), 32);
        assert_eq!(shard_count(DEFAULT_CAPACITY), 256);
        assert_eq!(shard_count(64 << 20), MAX_SHARDS);
        assert_eq!(shard_count(usize::MAX), MAX_SHARDS);
    }
}
