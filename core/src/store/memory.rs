//! An in-process nonce store for one API instance: sharded hash tables behind short mutexes, with
//! bounded memory. When full it refuses new nonces (fail closed) rather than evict a live one,
//! since forgetting an unexpired nonce would let its token be replayed.
//!
//! Expired nonces leave incrementally: each shard queues its entries' expiries in consume order,
//! and every consume first removes at most [`EXPIRE_PER_CONSUME`] expired entries from the front
//! of its shard's queue. No consume scans or rebuilds a whole table (a sweep over a shard used to
//! cost its size in cold cache lines: 0.2-0.5 ms maximums at a million live nonces), so the
//! worst single consume is a few removals. Expiries arrive nearly in order (a proof's expiry is
//! its payment time plus the token lifetime, and proofs are used soon after payment); one that
//! is not waits behind an earlier, longer-lived one, at most that long. A full store, and
//! `purge`, sweep exactly.
//!
//! Nor does a consume grow anything: a shard's table is allocated once (by the helper below, or
//! when the shard records its first nonce), sized for its share of a full store. Growing a table in a consume moved all its entries into memory the process had never
//! touched (about ten first-touch page faults at once, up to 0.5 ms on a VM) and made a large
//! request to the allocator, which first consolidates every small block freed since its last
//! large request (the expired keys: 60-150 µs at a million live nonces). A table also grew at a
//! steady live count once removals had left enough tombstones, which they do in a table more
//! than about 40 % full. So each shard keeps its entries in a slab (its free slots reused) and
//! its table holds only a slot number and 32 bits of the key's hash, 8 bytes a slot: tables
//! with more than twice the slots a full share needs cost less than tables of whole entries
//! that fill past half. Rebuilding a table in place (rare: tombstones) reads neither keys nor
//! slab. A key is held in its slot (real keys are 50 bytes; one over 62 gets an allocation of
//! its own), so a consume neither allocates nor frees.
//!
//! Nor does a consume touch memory for the first time: a first touch is a page fault, which on
//! a VM now and then costs hundreds of microseconds (the host backing the page). A table's
//! pages are touched at random as entries land, all of them within a shard's first few dozen
//! nonces; a slab and queue lengthen at a steady live count too (a shard's count wanders past
//! its earlier highs, and its queue spans one block more once it both fills and drains than
//! while it only filled). So one helper thread per process ([`PAGES_THREAD`]) writes every
//! page of a new store's tables (up to `TABLES_AHEAD_BYTES` of them: 24 MB for the default
//! million; a larger store's are touched as entries land), and slabs and queues grow in
//! segments and blocks made ready, every page written, from a few the store keeps at hand and
//! the helper makes more of when they run low. The helper only allocates and writes memory (no
//! I/O, no clock); a consume that finds nothing ready makes its own part, as before.
//!
//! A store made with [`MemoryOptions::pages_thread`] off (`memory://?pages_thread=false`) never
//! asks the helper for anything, so no thread is started for it: its consumes touch their
//! tables, segments and blocks first themselves (page faults on the consume path as a shard
//! fills or lengthens, and about 30 MB less resident memory for an idle default store).

use super::{Consume, Lease, Leases, NonceStore, check_key};
use crate::error::{Error, Result};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Live nonces per shard when the store is full: the shard count grows with the capacity (334
/// shards for the default million). Many more, smaller shards cost every consume cold cache
/// lines (measured: twice the p50 at 4,096 shards). 3,000 fills a table of 8,192 slots to
/// 37 %, under the 44 % past which hashbrown would grow it rather than rebuild it in place.
const NONCES_PER_SHARD: usize = 3000;
/// The most memory a store's tables may take before its shards need them: a larger store's
/// tables are touched as entries land.
const TABLES_AHEAD_BYTES: usize = 32 << 20;
/// Bounds of the shard count.
const MIN_SHARDS: usize = 16;
const MAX_SHARDS: usize = 4096;
/// The largest share a shard is sized for up front: a store bounded beyond about 16 million
/// grows its shards past that rather than reserve them whole.
const MAX_SHARE: usize = 4096;
/// Expired entries a consume removes from its shard before its own insert: more than the one
/// it adds, so a backlog (after a burst, or once the clock jumps) drains while the work of any
/// one consume stays bounded.
const EXPIRE_PER_CONSUME: usize = 4;
/// Default bound: about 125 MB when full (measured: `store_latency --rss`).
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The keys' hasher. Keys come from verified tokens (the nonce from the provider's own
/// challenge), so nobody can choose them to collide; a fast hasher keeps consumes cheap. Seeded
/// per process all the same.
type Hasher = foldhash::fast::RandomState;

/// A key held in a slab slot: in the slot itself up to [`INLINE`] bytes (real keys are 50), so
/// a consume neither allocates nor frees (and the allocator never touches a fresh page of its
/// heap for a key); a longer one in an allocation of its own.
#[derive(Debug)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

/// The longest key held in its slot: a slot is then 88 bytes.
const INLINE: usize = 62;

impl Key {
    const NONE: Key = Key::Inline { len: 0, bytes: [0; INLINE] };

    /// Hold `key` instead, in place when it fits (the bytes past its length are left as
    /// they were).
    fn set(&mut self, key: &str) {
        match self {
            Key::Inline { len, bytes } if key.len() <= INLINE => {
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                *len = key.len() as u8;
            }
            _ if key.len() <= INLINE => *self = Key::NONE.with(key),
            _ => *self = Key::Boxed(key.into()),
        }
    }

    fn with(mut self, key: &str) -> Self {
        self.set(key);
        self
    }

    fn is(&self, key: &str) -> bool {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)] == key.as_bytes(),
            Key::Boxed(held) => **held == *key,
        }
    }
}

/// A nonce in its shard's slab: its key, the high half of the key's hash (its tag), when it
/// expires and the lease of the consume that recorded it. A free slot (out of the table) never
/// expires and links to the next free slot; its key is dropped if it had an allocation.
#[derive(Debug)]
struct Held {
    key: Key,
    expires_at: u64,
    lease: Lease,
    tag: u32,
    /// A free slot's next free slot ([`NONE`] for none); in the padding of a held one.
    next: u32,
}

impl Held {
    const FREE: u64 = u64::MAX;

    fn vacant() -> Self {
        Self { key: Key::NONE, expires_at: Self::FREE, lease: Lease(0), tag: 0, next: NONE }
    }
}

/// No slot.
const NONE: u32 = u32::MAX;

/// A table entry: the tag in the high half, the slab slot in the low half.
fn pack(tag: u32, slot: usize) -> u64 {
    (u64::from(tag) << 32) | slot as u64
}

fn slot_of(v: u64) -> usize {
    v as u32 as usize
}

fn tag_of(v: u64) -> u32 {
    (v >> 32) as u32
}

/// The hash a table places a tag by: its low bits pick the slot, its top bits are hashbrown's
/// control byte, both from the tag.
fn spread(tag: u32) -> u64 {
    u64::from(tag) * 0x1_0000_0001
}

/// When a recorded entry expires: queued in consume order. Popped once due, it frees its slot
/// if the slot still holds an entry of that tag and that entry has expired by then: whatever
/// happened to the key meanwhile (released, recorded again, swept), removing an expired entry
/// is always right, and a live one is left alone.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    expires_at: u64,
    slot: u32,
    tag: u32,
}

/// Expiries in a block of a shard's queue (4 KiB).
const BLOCK: usize = 256;
/// Entries in a segment of a shard's slab (11 KiB).
const SEGMENT: usize = 128;

/// Segments and blocks made ahead, every page of them written, for a store's shards to take
/// as their slabs and queues lengthen. Taking one leaves a consume's memory all touched before;
/// the helper thread makes more once fewer than `low` of a kind are left, up to `high` (15 KiB
/// a shard: 5 MB for the default store).
#[derive(Debug)]
struct Ready {
    segments: Mutex<Vec<Box<[Held]>>>,
    blocks: Mutex<Vec<Box<[Expiry]>>>,
    low: usize,
    high: usize,
    /// The process that asked the helper for more and has not been served yet (0: none). A
    /// process id, so a child forked meanwhile (where the helper thread does not exist) asks
    /// its own.
    asked: AtomicU32,
    /// Whether the helper makes parts for this store at all ([`MemoryOptions::pages_thread`]).
    helper: bool,
    /// Segments and blocks a consume made itself, none being ready: first touches on the
    /// consume path (a store filling faster than the helper, or no helper).
    made_in_consume: AtomicU64,
}

/// The thread that makes segments and blocks for every memory store of the process.
pub const PAGES_THREAD: &str = "vlexivo-store-pages";

fn new_segment() -> Box<[Held]> {
    (0..SEGMENT).map(|_| Held::vacant()).collect()
}

fn new_block() -> Box<[Expiry]> {
    // Not zeros, which the allocator may hand out as fresh pages without writing them.
    vec![Expiry { expires_at: u64::MAX, slot: NONE, tag: 0 }; BLOCK].into_boxed_slice()
}

impl Ready {
    /// Ready parts for a store of `shards` shards; the helper (if `helper`) is asked to make
    /// them now.
    fn new(shards: usize, helper: bool) -> Arc<Self> {
        // One of each a shard: shards fill alike, so they also take their next block (or
        // segment) at about the same time, a few thousand consumes apart at most.
        let high = shards.clamp(4, 1024);
        let ready = Arc::new(Self {
            segments: Mutex::new(Vec::with_capacity(high)),
            blocks: Mutex::new(Vec::with_capacity(high)),
            low: high / 2,
            high,
            asked: AtomicU32::new(0),
            helper,
            made_in_consume: AtomicU64::new(0),
        });
        ready.ask();
        ready
    }

    fn segment(self: &Arc<Self>) -> Box<[Held]> {
        let (got, left) = {
            let mut ready = self.segments.lock();
            (ready.pop(), ready.len())
        };
        if left < self.low {
            self.ask();
        }
        got.unwrap_or_else(|| {
            self.made_in_consume.fetch_add(1, Ordering::Relaxed);
            new_segment()
        })
    }

    fn block(self: &Arc<Self>) -> Box<[Expiry]> {
        let (got, left) = {
            let mut ready = self.blocks.lock();
            (ready.pop(), ready.len())
        };
        if left < self.low {
            self.ask();
        }
        got.unwrap_or_else(|| {
            self.made_in_consume.fetch_add(1, Ordering::Relaxed);
            new_block()
        })
    }

    fn ask(self: &Arc<Self>) {
        if !self.helper {
            return;
        }
        let me = std::process::id();
        let asked = self.asked.load(Ordering::Acquire);
        if asked == me || self.asked.compare_exchange(asked, me, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return;
        }
        helper::send(helper::Job::Ready(Arc::downgrade(self)));
    }

    /// On the helper: make parts until `high` of each are ready.
    fn fill(&self) {
        self.asked.store(0, Ordering::Release);
        while self.segments.lock().len() < self.high {
            let made = new_segment();
            self.segments.lock().push(made);
        }
        while self.blocks.lock().len() < self.high {
            let made = new_block();
            self.blocks.lock().push(made);
        }
    }
}

/// The helper thread of every memory store in the process, started by the first store, and
/// again in a forked child (threads do not survive a fork).
mod helper {
    use super::{Ready, Shard};
    use parking_lot::Mutex;
    use std::collections::VecDeque;
    use std::sync::Weak;
    use std::sync::mpsc::{Sender, channel};

    /// What the helper makes: a store's ready parts, or its shards' tables.
    #[derive(Debug)]
    pub(super) enum Job {
        Ready(Weak<Ready>),
        Tables(Weak<[Mutex<Shard>]>),
    }

    static QUEUE: Mutex<Option<(u32, Sender<Job>)>> = Mutex::new(None);

    /// Queue a job (dropped if no helper thread can be started: consumes then make their own
    /// parts, as without one).
    pub(super) fn send(job: Job) {
        let mut queue = QUEUE.lock();
        let me = std::process::id();
        let job = match queue.take() {
            Some((pid, tx)) if pid == me => match tx.send(job) {
                Ok(()) => {
                    *queue = Some((pid, tx));
                    return;
                }
                Err(back) => back.0,
            },
            // A forked child: the parent's helper does not exist here, and may have held its
            // channel's lock at the fork, which dropping the sender would wait for.
            Some((_, inherited)) => {
                std::mem::forget(inherited);
                job
            }
            None => job,
        };
        let (tx, rx) = channel::<Job>();
        let started = std::thread::Builder::new().name(super::PAGES_THREAD.into()).spawn(move || {
            // Tables to make: (store, next shard). Ready parts come first, since consumes take
            // them as they go; tables are made a shard at a time between them.
            let mut tables: VecDeque<(Weak<[Mutex<Shard>]>, usize)> = VecDeque::new();
            loop {
                let job = match tables.is_empty() {
                    true => rx.recv().ok(),
                    false => rx.try_recv().ok(),
                };
                match job {
                    Some(Job::Ready(ready)) => {
                        if let Some(ready) = ready.upgrade() {
                            ready.fill();
                        }
                    }
                    Some(Job::Tables(shards)) => tables.push_back((shards, 0)),
                    None if tables.is_empty() => return,
                    None => {
                        let (shards, next) = tables.front_mut().expect("a store's tables");
                        if !super::make_table(shards, next) {
                            tables.pop_front();
                        }
                    }
                }
            }
        });
        if started.is_ok() && tx.send(job).is_ok() {
            *queue = Some((me, tx));
        }
    }
}

/// On the helper: give the next shard of a store that has none yet its table, every page of it
/// written, so no consume touches one for the first time. False once every shard has one, or
/// the store was dropped.
fn make_table(shards: &Weak<[Mutex<Shard>]>, next: &mut usize) -> bool {
    let Some(shards) = shards.upgrade() else { return false };
    while let Some(shard) = shards.get(*next) {
        *next += 1;
        let (sized, share) = {
            let shard = shard.lock();
            (shard.sized, shard.share)
        };
        if sized {
            continue;
        }
        let table = touched_table(2 * room(share));
        let mut shard = shard.lock();
        if !shard.sized {
            shard.make_room_with(table);
        }
        return true;
    }
    false
}

/// An empty table for `n` entries whose pages have all been written: an entry placed every
/// 64 slots (512 bytes), then all removed. A table places an entry by its hash's low bits, at
/// the first free slot from there.
fn touched_table(n: usize) -> HashTable<u64> {
    let mut table = HashTable::with_capacity(n);
    let slots = (table.capacity() * 8 / 7).next_power_of_two();
    for at in (0..slots as u64).step_by(64) {
        table.insert_unique(at, at, |v| *v);
    }
    table.clear();
    table
}

/// Entries a shard of this share has room for: its share, and a margin for shards that fill
/// unevenly (a shard's count spreads by about its square root; the margin is several times
/// that).
fn room(share: usize) -> usize {
    share + share / 8 + 64
}

/// A shard's entries, in segments of [`SEGMENT`] taken as it lengthens; free slots are
/// chained through their `next`.
#[derive(Debug, Default)]
struct Slab {
    segments: Vec<Box<[Held]>>,
    /// Slots in use or freed: the rest of the last segment is untouched by entries yet.
    len: usize,
    free: u32,
}

impl std::ops::Index<usize> for Slab {
    type Output = Held;
    fn index(&self, slot: usize) -> &Held {
        &self.segments[slot / SEGMENT][slot % SEGMENT]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, slot: usize) -> &mut Held {
        &mut self.segments[slot / SEGMENT][slot % SEGMENT]
    }
}

impl Slab {
    fn with_room(room: usize) -> Self {
        Self { segments: Vec::with_capacity(room.div_ceil(SEGMENT) + 1), len: 0, free: NONE }
    }

    /// Record a new entry in a free slot (or a new one) and return the slot.
    fn occupy(&mut self, key: &str, expires_at: u64, lease: Lease, tag: u32, ready: &Arc<Ready>) -> usize {
        let slot = if self.free != NONE {
            let slot = self.free as usize;
            self.free = self[slot].next;
            slot
        } else {
            if self.len == self.segments.len() * SEGMENT {
                self.segments.push(ready.segment());
            }
            self.len += 1;
            self.len - 1
        };
        let held = &mut self[slot];
        held.key.set(key);
        (held.expires_at, held.lease, held.tag) = (expires_at, lease, tag);
        slot
    }

    /// Free a slot whose table entry was removed.
    fn vacate(&mut self, slot: usize) {
        let next = self.free;
        let held = &mut self[slot];
        if let Key::Boxed(_) = held.key {
            held.key = Key::NONE;
        }
        held.expires_at = Held::FREE;
        held.next = next;
        self.free = slot as u32;
    }
}

/// A shard's expiry queue, first in first out: blocks of [`BLOCK`] expiries chained in order,
/// an emptied block reused before another is taken. So the queue's memory follows its longest
/// length; a ring over the whole room would touch every page of it as it cycles.
///
/// When its front is due and which block its back is are kept beside the queue's counters: a
/// consume with nothing due reads none of the queue's own memory, and a push reads only its
/// back block. Reaching the front otherwise takes three dependent loads (the block order, the
/// block list, the block), each a likely cache miss once the store outgrows the caches: most of
/// a consume's CPU time in a Node paywall whose store fills faster than it drains (perf,
/// cpu-clock samples, 180k live nonces).
#[derive(Debug)]
struct Expiries {
    /// The blocks; one is added only when none is spare.
    blocks: Vec<Box<[Expiry]>>,
    /// The blocks in use, the front one first.
    order: VecDeque<u32>,
    /// Emptied blocks, the last emptied on top.
    spare: Vec<u32>,
    /// Next to pop in the front block, next to fill in the back block.
    head: usize,
    tail: usize,
    len: usize,
    /// When the front expiry is due (`u64::MAX`: the queue is empty).
    front_at: u64,
    /// The back block (`order`'s last, while it has one).
    back: u32,
}

impl Default for Expiries {
    fn default() -> Self {
        Self::with_capacities(0)
    }
}

impl Expiries {
    /// A queue that holds `room` expiries without growing any of its parts but its blocks.
    fn with_room(room: usize) -> Self {
        Self::with_capacities(room.div_ceil(BLOCK) + 1)
    }

    fn with_capacities(blocks: usize) -> Self {
        Self {
            blocks: Vec::with_capacity(blocks),
            order: VecDeque::with_capacity(blocks),
            spare: Vec::with_capacity(blocks),
            head: 0,
            tail: 0,
            len: 0,
            front_at: u64::MAX,
            back: 0,
        }
    }

    /// Whether the front expiry is due at `now` (expired: `expires_at < now`), without reading
    /// the queue.
    fn due(&self, now: u64) -> bool {
        self.front_at < now
    }

    fn front(&self) -> Option<&Expiry> {
        let block = *self.order.front()? as usize;
        (self.len > 0).then(|| &self.blocks[block][self.head])
    }

    fn push_back(&mut self, x: Expiry, ready: &Arc<Ready>) {
        if self.order.is_empty() || self.tail == BLOCK {
            let block = self.spare.pop().unwrap_or_else(|| {
                self.blocks.push(ready.block());
                (self.blocks.len() - 1) as u32
            });
            self.order.push_back(block);
            self.back = block;
            self.tail = 0;
        }
        self.blocks[self.back as usize][self.tail] = x;
        if self.len == 0 {
            self.front_at = x.expires_at;
        }
        self.tail += 1;
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<Expiry> {
        let x = *self.front()?;
        self.head += 1;
        self.len -= 1;
        if self.len == 0 {
            // Empty: its one block starts over.
            (self.head, self.tail) = (0, 0);
        } else if self.head == BLOCK {
            let done = self.order.pop_front().expect("a front block");
            self.spare.push(done);
            self.head = 0;
        }
        // The next one is beside the popped one (or starts the next block).
        self.front_at = self.front().map_or(u64::MAX, |f| f.expires_at);
        Some(x)
    }
}

#[derive(Debug)]
struct Shard {
    table: HashTable<u64>,
    slab: Slab,
    expiries: Expiries,
    /// Next lease: a key always lives in the same shard, so a counter per shard (from a random
    /// start) keeps leases of one key distinct without a shared atomic.
    next_lease: u64,
    /// Entries the shard is sized for: by the helper (its table), or else by its first
    /// consume.
    share: usize,
    sized: bool,
}

impl Shard {
    fn new(share: usize, next_lease: u64) -> Self {
        Self {
            table: HashTable::new(),
            slab: Slab::default(),
            expiries: Expiries::default(),
            next_lease,
            share,
            sized: false,
        }
    }

    /// Allocate the shard's parts (once, unless the helper did): room for its share without
    /// growing anything, and a table of more than twice that many slots. The slab and queue
    /// take their segments and blocks as they lengthen.
    fn make_room(&mut self) {
        if !self.sized {
            self.make_room_with(HashTable::with_capacity(2 * room(self.share)));
        }
    }

    fn make_room_with(&mut self, table: HashTable<u64>) {
        let room = room(self.share);
        self.table = table;
        self.slab = Slab::with_room(room);
        self.expiries = Expiries::with_room(room);
        self.sized = true;
    }

    /// Remove up to `budget` entries expired at `now` (live while `now <= expires_at`) from the
    /// front of the queue; returns how many entries left the table.
    fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut freed = 0;
        for _ in 0..budget {
            if !self.expiries.due(now) {
                break;
            }
            let Some(x) = self.expiries.pop_front() else { break };
            let held = &self.slab[x.slot as usize];
            if held.tag != x.tag || held.expires_at >= now {
                continue;
            }
            let entry = pack(x.tag, x.slot as usize);
            if let Ok(e) = self.table.find_entry(spread(x.tag), |&v| v == entry) {
                e.remove();
                self.slab.vacate(x.slot as usize);
                freed += 1;
            }
        }
        freed
    }

    /// Remove every entry expired at `now`, wherever its expiry is queued (a full store, and
    /// `purge`: exact, and O(shard)). Their queued expiries go stale and are skipped when popped.
    fn sweep(&mut self, now: u64) -> usize {
        let Shard { table, slab, .. } = self;
        let mut freed = 0;
        table.retain(|v| {
            let slot = slot_of(*v);
            if slab[slot].expires_at >= now {
                return true;
            }
            slab.vacate(slot);
            freed += 1;
            false
        });
        freed
    }
}

/// How a [`MemoryStore`] is made ([`MemoryStore::with_options`]); also read from a store URL
/// (`memory://?capacity=N&pages_thread=false`, [`super::StoreSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// Live nonces the store holds at most (at least 1; default [`DEFAULT_CAPACITY`]).
    pub capacity: usize,
    /// Whether the process's page-making thread ([`PAGES_THREAD`], started by the first store
    /// that wants it) writes this store's memory before its consumes need it (default: yes).
    /// Off, no thread is started for the store, and its consumes touch new memory themselves.
    pub pages_thread: bool,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self { capacity: DEFAULT_CAPACITY, pages_thread: true }
    }
}

impl MemoryOptions {
    /// These options with this capacity.
    pub fn capacity(self, capacity: usize) -> Self {
        Self { capacity, ..self }
    }

    /// These options with the page-making thread on or off for the store.
    pub fn pages_thread(self, on: bool) -> Self {
        Self { pages_thread: on, ..self }
    }
}

/// Sharded in-memory [`NonceStore`]. Entries live until they expire or are released; the total
/// is bounded by the capacity and a full store answers `nonce_store_full`.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Arc<[Mutex<Shard>]>,
    /// Entries across all shards; slots are reserved with a compare-and-swap so the bound holds
    /// exactly under concurrency.
    len: AtomicUsize,
    capacity: usize,
    /// `now` of the last store-wide expiry pass triggered by a full store (at most one per
    /// second).
    full_sweep_at: AtomicU64,
    /// Hashes keys: the low half picks the shard, the high half is the key's tag in it.
    hasher: Hasher,
    /// Slab segments and queue blocks made ahead for the shards.
    ready: Arc<Ready>,
}

/// Shards for a store of `capacity` live nonces: about [`NONCES_PER_SHARD`] each when full.
fn shard_count(capacity: usize) -> usize {
    capacity.div_ceil(NONCES_PER_SHARD).clamp(MIN_SHARDS, MAX_SHARDS)
}

/// A shard's share of a full store, which it is sized for up front (at most [`MAX_SHARE`]).
fn shard_share(capacity: usize, shards: usize) -> usize {
    capacity.div_ceil(shards).min(MAX_SHARE)
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
        Self::with_options(MemoryOptions::default().capacity(capacity))
    }

    /// A store made as `options` say.
    pub fn with_options(options: MemoryOptions) -> Self {
        let capacity = options.capacity.max(1);
        let start = Leases::new();
        let count = shard_count(capacity);
        let share = shard_share(capacity, count);
        let shards: Arc<[Mutex<Shard>]> =
            (0..count).map(|_| Mutex::new(Shard::new(share, start.next().0))).collect();
        let ready = Ready::new(count, options.pages_thread);
        // A table's pages are touched at random as entries land, so all of them within a
        // shard's first few dozen nonces: the helper writes them all up front, for stores whose
        // tables are not too large to hold before they are needed (the default's: 24 MB).
        let slots = (2 * room(share) * 8 / 7).next_power_of_two();
        if options.pages_thread && count * slots * 9 <= TABLES_AHEAD_BYTES {
            helper::send(helper::Job::Tables(Arc::downgrade(&shards)));
        }
        Self {
            shards,
            len: AtomicUsize::new(0),
            capacity,
            full_sweep_at: AtomicU64::new(0),
            hasher: Hasher::default(),
            ready,
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

    /// The key's shard (its index) and tag.
    fn place(&self, key: &str) -> (usize, u32) {
        let hash = self.hasher.hash_one(key);
        // The low half, spread over the shards by a multiply (any count, no modulo).
        let shard = ((hash & 0xffff_ffff) * self.shards.len() as u64) >> 32;
        (shard as usize, tag_of(hash))
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

/// What a shard holds, for `store_latency`'s attribution of its slowest consumes (a shard's
/// table rebuilt, its slab or queue lengthened, a part made inside a consume). Test support
/// only: read under the shard's lock, never by a consume.
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardProbe {
    /// The shard's index.
    pub shard: usize,
    /// Whether its table was made (by the helper, or by its first consume).
    pub sized: bool,
    /// Its table's entries, and its capacity (entries + inserts left before a rebuild: it rises
    /// by more than one only when the table is rebuilt or grown).
    pub entries: usize,
    pub table_capacity: usize,
    /// Segments its slab and blocks its queue hold.
    pub segments: usize,
    pub blocks: usize,
    /// Segments and blocks made inside consumes, store-wide (none was ready).
    pub made_in_consume: u64,
}

#[cfg(feature = "testing")]
impl MemoryStore {
    /// The shard `key` lives in.
    #[doc(hidden)]
    pub fn shard_of(&self, key: &str) -> usize {
        self.place(key).0
    }

    /// Shards of this store.
    #[doc(hidden)]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// What shard `i` holds now.
    #[doc(hidden)]
    pub fn probe(&self, i: usize) -> ShardProbe {
        let shard = self.shards[i].lock();
        ShardProbe {
            shard: i,
            sized: shard.sized,
            entries: shard.table.len(),
            table_capacity: shard.table.capacity(),
            segments: shard.slab.segments.len(),
            blocks: shard.expiries.blocks.len(),
            made_in_consume: self.ready.made_in_consume.load(Ordering::Relaxed),
        }
    }
}

impl NonceStore for MemoryStore {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        check_key(key)?;
        let (place, tag) = self.place(key);
        // Second pass only after a store-wide expiry pass freed room elsewhere.
        for pass in 0..2 {
            let mut guard = self.shards[place].lock();
            let shard = &mut *guard;
            shard.make_room();
            self.forget(shard.expire(now, EXPIRE_PER_CONSUME));
            shard.next_lease = shard.next_lease.wrapping_add(1);
            let lease = Lease(shard.next_lease);
            let Shard { table, slab, expiries, .. } = shard;
            let same = |v: &u64| tag_of(*v) == tag && slab[slot_of(*v)].key.is(key);
            match table.entry(spread(tag), same, |v| spread(tag_of(*v))) {
                Slot::Occupied(e) => {
                    let slot = slot_of(*e.get());
                    let held = &mut slab[slot];
                    if held.expires_at >= now {
                        return Ok(Consume::Replayed);
                    }
                    // Expired (its expiry not popped yet): re-recording it is a fresh use and
                    // takes no new slot.
                    held.expires_at = expires_at;
                    held.lease = lease;
                    expiries.push_back(Expiry { expires_at, slot: slot as u32, tag }, &self.ready);
                    return Ok(Consume::Fresh(lease));
                }
                Slot::Vacant(e) => {
                    if self.try_reserve_slot() {
                        let slot = slab.occupy(key, expires_at, lease, tag, &self.ready);
                        e.insert(pack(tag, slot));
                        expiries.push_back(Expiry { expires_at, slot: slot as u32, tag }, &self.ready);
                        return Ok(Consume::Fresh(lease));
                    }
                }
            }
            // Full: remove every expired entry of this shard first (we hold its lock already).
            let freed = shard.sweep(now);
            self.forget(freed);
            if freed > 0 && self.try_reserve_slot() {
                let slot = shard.slab.occupy(key, expires_at, lease, tag, &self.ready);
                shard.table.insert_unique(spread(tag), pack(tag, slot), |v| spread(tag_of(*v)));
                shard.expiries.push_back(Expiry { expires_at, slot: slot as u32, tag }, &self.ready);
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
        let (place, tag) = self.place(key);
        let mut guard = self.shards[place].lock();
        let shard = &mut *guard;
        let slab = &shard.slab;
        let held = |v: &u64| {
            let h = &slab[slot_of(*v)];
            tag_of(*v) == tag && h.lease == lease && h.key.is(key)
        };
        if let Ok(e) = shard.table.find_entry(spread(tag), held) {
            // Its queued expiry stays until it is due, and is skipped then (the slot is free or
            // holds another entry).
            let (v, _) = e.remove();
            shard.slab.vacate(slot_of(v));
            drop(guard);
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
    #[cfg(target_os = "linux")]
    use crate::store::tests::{in_forked_child, in_own_process};
    use std::fmt::Write;

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
        s.release("a:0", lease_of(&s, "a:0")).unwrap();
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
        let want = s.place(like).0;
        (0..).map(|i| format!("b:{i}")).filter(|k| s.place(k).0 == want).take(n).collect()
    }

    /// The lease `key` is held under.
    fn lease_of(s: &MemoryStore, key: &str) -> Lease {
        let (i, tag) = s.place(key);
        let shard = s.shards[i].lock();
        let v = *shard.table.find(spread(tag), |v| shard.slab[slot_of(*v)].key.is(key)).unwrap();
        shard.slab[slot_of(v)].lease
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
            counts[s.place(&format!("acct_123:{i:022}")).0] += 1;
        }
        let mean = 1_000;
        assert!(counts.iter().all(|&c| c > mean * 7 / 10 && c < mean * 13 / 10), "{counts:?}");
        // The largest store's shards are all reached.
        let s = MemoryStore::with_capacity(MAX_SHARDS * NONCES_PER_SHARD);
        assert_eq!(s.shards.len(), MAX_SHARDS);
        let reached: std::collections::HashSet<usize> =
            (0..64 * MAX_SHARDS).map(|i| s.place(&format!("acct_123:{i:022}")).0).collect();
        assert_eq!(reached.len(), MAX_SHARDS);
    }

    /// A shard's table, slab and queue capacities (the slab's and queue's lists of their
    /// segments and blocks, and of the queue's order and spare blocks).
    fn shard_sizes(g: &Shard) -> [usize; 4] {
        [
            g.table.capacity(),
            g.slab.segments.capacity(),
            g.expiries.blocks.capacity(),
            g.expiries.order.capacity(),
        ]
    }

    fn sizes(s: &MemoryStore) -> Vec<[usize; 4]> {
        s.shards.iter().map(|m| shard_sizes(&m.lock())).collect()
    }

    #[test]
    fn a_full_store_never_grows_a_shard() {
        // A table grew inside a consume while the store filled, and at a steady live count once
        // removals had left enough tombstones (a table over ~44 % full): each moved every entry.
        // 16 shards at the default store's share, full, turned over 25 times (75,000 removals
        // a shard: a table of whole entries 48 % full grew within 30,000-90,000).
        let cap = (MIN_SHARDS * NONCES_PER_SHARD) as u64;
        let s = MemoryStore::with_capacity(cap as usize);
        let share = shard_share(s.capacity, s.shards.len());
        assert_eq!(share, NONCES_PER_SHARD);
        let mut sized = Shard::new(share, 0);
        sized.make_room();
        let full = shard_sizes(&sized);
        // Nonces living 100 s at cap / 100 per second: the store runs full.
        let rate = cap / 100;
        let mut key = String::new();
        for i in 0..25 * cap {
            let now = i / rate;
            key.clear();
            write!(key, "acct_123:{i:022}").unwrap();
            assert!(s.consume(&key, now + 99, now).unwrap().is_fresh());
        }
        assert!(s.len() as u64 > cap * 9 / 10, "len {}", s.len());
        // Tombstones may lower a table's capacity until it is rebuilt in place; never raise it.
        for now in sizes(&s) {
            assert!(now[0] <= full[0] && now[1..] == full[1..], "{now:?} {full:?}");
        }
    }

    #[test]
    fn the_expiry_queue_keeps_order_and_reuses_its_blocks() {
        let ready = Ready::new(1, true);
        let mut q = Expiries::with_room(3 * BLOCK);
        let capacity = q.blocks.capacity();
        let x = |i: u64| Expiry { expires_at: i, slot: i as u32, tag: 7 };
        let (mut pushed, mut popped) = (0u64, 0u64);
        // Lengths wandering below 2.5 blocks, about a hundred blocks' worth through the queue.
        let longest = 5 * BLOCK as u64 / 2;
        for round in 0..200u64 {
            let fill = (round * 7919) % longest;
            while pushed - popped < fill {
                q.push_back(x(pushed), &ready);
                pushed += 1;
            }
            // The front's due time is kept beside the queue: always the front's.
            assert_eq!(q.front_at, q.front().map_or(u64::MAX, |e| e.expires_at));
            while pushed - popped > fill / 3 {
                assert_eq!(q.front().map(|e| e.expires_at), Some(popped));
                assert!(q.due(popped + 1) && !q.due(popped));
                assert_eq!(q.pop_front().map(|e| e.expires_at), Some(popped));
                popped += 1;
                assert_eq!(q.front_at, q.front().map_or(u64::MAX, |e| e.expires_at));
            }
        }
        assert!(pushed > 100 * BLOCK as u64, "{pushed}");
        while let Some(e) = q.pop_front() {
            assert_eq!(e.expires_at, popped);
            popped += 1;
        }
        assert_eq!(popped, pushed);
        assert!(q.front().is_none());
        assert!(!q.due(u64::MAX));
        q.push_back(x(1), &ready);
        assert!(q.due(2) && !q.due(1));
        assert_eq!(q.pop_front().map(|e| e.slot), Some(1));
        assert!(!q.due(u64::MAX));
        // A queue of n spans at most n / BLOCK + 1 blocks: no more were ever touched.
        let most = (longest as usize).div_ceil(BLOCK) + 1;
        assert!(q.blocks.len() <= most, "{} blocks", q.blocks.len());
        assert_eq!(q.blocks.capacity(), capacity);
    }

    /// Wait (bounded) until `n` segments and blocks are ready.
    fn await_ready(ready: &Ready, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ready.segments.lock().len() < n || ready.blocks.lock().len() < n {
            assert!(std::time::Instant::now() < deadline, "no parts made ahead within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    #[test]
    fn slabs_and_queues_lengthen_with_parts_made_ahead() {
        let s = MemoryStore::with_capacity(MIN_SHARDS * NONCES_PER_SHARD);
        let high = s.ready.high;
        assert_eq!(high, MIN_SHARDS);
        await_ready(&s.ready, high);
        // A shard lengthening by as many segments (and half as many blocks) as are ready takes
        // them: no consume makes one.
        let keys = same_shard(&s, "b:0", 2 * high * SEGMENT);
        let (first, then) = keys.split_at(high * SEGMENT);
        let taken = |s: &MemoryStore| {
            let shard = s.shards[s.place("b:0").0].lock();
            (shard.slab.segments.len(), shard.expiries.blocks.len())
        };
        assert_eq!(taken(&s), (0, 0));
        for k in first {
            assert!(s.consume(k, 100, 0).unwrap().is_fresh());
        }
        assert_eq!(taken(&s), (high, high * SEGMENT / BLOCK));
        assert_eq!(s.ready.made_in_consume.load(Ordering::Relaxed), 0);
        // It took every one made at first; once fewer than `low` were left, the helper made more.
        await_ready(&s.ready, s.ready.low);
        // The first ones expired and removed as others come, their slots and blocks are reused.
        for k in then {
            assert!(s.consume(k, 300, 200).unwrap().is_fresh());
        }
        assert_eq!(taken(&s).0, high);
        assert!(taken(&s).1 <= high * SEGMENT / BLOCK + 1, "{:?}", taken(&s));
        assert_eq!(s.ready.made_in_consume.load(Ordering::Relaxed), 0);
    }

    /// Wait (bounded) until every shard has its table.
    fn await_tables(s: &MemoryStore) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !s.shards.iter().all(|m| m.lock().sized) {
            assert!(std::time::Instant::now() < deadline, "tables not made within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    #[test]
    fn the_helper_makes_every_shards_table_ahead() {
        let s = MemoryStore::with_capacity(100_000);
        await_tables(&s);
        let mut inline = Shard::new(shard_share(s.capacity, s.shards.len()), 0);
        inline.make_room();
        for m in s.shards.iter() {
            let shard = m.lock();
            assert!(shard.table.is_empty());
            assert_eq!(shard_sizes(&shard), shard_sizes(&inline));
        }
        // Tables too large to hold before they are needed are left to the shards' consumes.
        let big = MemoryStore::with_capacity(64 << 20);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(big.shards.iter().all(|m| !m.lock().sized));
        assert!(big.consume("a:1", 10, 0).unwrap().is_fresh());
        assert_eq!(big.shards.iter().filter(|m| m.lock().sized).count(), 1);
    }

    /// Threads of this process named for the helper.
    #[cfg(target_os = "linux")]
    fn helpers_running() -> usize {
        crate::store::tests::threads_named(PAGES_THREAD)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_store_without_the_pages_thread_starts_none() {
        if !in_own_process("store::memory::tests::a_store_without_the_pages_thread_starts_none") {
            return;
        }
        let options = MemoryOptions::default().capacity(MIN_SHARDS * NONCES_PER_SHARD);
        let s = MemoryStore::with_options(options.pages_thread(false));
        for i in 0..20_000 {
            assert!(s.consume(&format!("a:{i}"), 100, 0).unwrap().is_fresh());
        }
        assert_eq!(helpers_running(), 0);
        // Its consumes made their own parts and tables.
        assert!(s.ready.made_in_consume.load(Ordering::Relaxed) >= MIN_SHARDS as u64);
        assert!(s.ready.segments.lock().is_empty() && s.ready.blocks.lock().is_empty());
        // The default starts it.
        let with = MemoryStore::with_options(options);
        await_ready(&with.ready, with.ready.high);
        await_tables(&with);
        assert_eq!(helpers_running(), 1);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_forked_child_starts_a_helper_of_its_own() {
        if !in_own_process("store::memory::tests::a_forked_child_starts_a_helper_of_its_own") {
            return;
        }
        let s = MemoryStore::with_capacity(MIN_SHARDS * NONCES_PER_SHARD);
        let high = s.ready.high;
        // Once every table is made the helper is done with the store's locks (ready parts
        // come first), and waits for a job.
        await_ready(&s.ready, high);
        await_tables(&s);
        assert_eq!(helpers_running(), 1);
        let keys = same_shard(&s, "b:0", high * SEGMENT);
        in_forked_child(|| {
            assert_eq!(helpers_running(), 0, "the parent's helper is not in the child");
            // The store made in the parent: its shard takes every segment made before the
            // fork (none is made in a consume), so any ready now is the child's helper's,
            // which keeps at least `low` of them.
            for k in &keys {
                assert!(s.consume(k, 100, 0).unwrap().is_fresh());
            }
            assert_eq!(s.ready.made_in_consume.load(Ordering::Relaxed), 0);
            await_ready(&s.ready, s.ready.low);
            assert_eq!(helpers_running(), 1);
            // A store made in the child has its tables made too.
            await_tables(&MemoryStore::with_capacity(100_000));
        });
        // The parent's store and helper are untouched by the child's consumes.
        assert_eq!(s.len(), 0);
        assert_eq!(s.ready.segments.lock().len(), high);
    }

    #[test]
    fn keys_longer_than_a_slot_holds_are_held_too() {
        assert_eq!(std::mem::size_of::<Held>(), 88);
        let s = MemoryStore::with_capacity(100);
        let long = format!("acct_3f9c2a71d04e8b65a1c7:{}", "n".repeat(super::super::MAX_KEY_LEN - 26));
        let edge = "k".repeat(INLINE);
        let over = "k".repeat(INLINE + 1);
        for k in [&long, &edge, &over] {
            let Consume::Fresh(lease) = s.consume(k, 10, 0).unwrap() else { panic!("fresh {}", k.len()) };
            assert_eq!(s.consume(k, 10, 0).unwrap(), Consume::Replayed);
            s.release(k, lease).unwrap();
            assert!(s.consume(k, 10, 0).unwrap().is_fresh());
        }
        // Keys that share an inline prefix stay apart.
        assert!(s.consume(&edge[1..], 10, 0).unwrap().is_fresh());
        assert!(s.consume(&format!("{over}x"), 10, 0).unwrap().is_fresh());
        assert_eq!(s.len(), 5);
        assert_eq!(s.purge(11).unwrap(), 5);
    }

    #[test]
    fn shard_count_follows_the_capacity() {
        assert_eq!(shard_count(0), MIN_SHARDS);
        assert_eq!(shard_count(10), MIN_SHARDS);
        assert_eq!(shard_count(100_000), 34);
        assert_eq!(shard_count(DEFAULT_CAPACITY), 334);
        assert_eq!(shard_count(64 << 20), MAX_SHARDS);
        assert_eq!(shard_count(usize::MAX), MAX_SHARDS);
    }
}
