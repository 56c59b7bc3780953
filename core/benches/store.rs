//! Nonce store hot path: one `consume` of a fresh key, as on every paid request.
//!
//! Simulated time advances one second per 10,000 consumes and entries live 60 s, so the live set
//! levels off near 600k and the stores' sweeping/purging is part of what is measured.

use criterion::{Criterion, criterion_group, criterion_main};
use std::fmt::Write;
use std::hint::black_box;
use vlexivo_core::store::{MemoryStore, NonceStore};

const START: u64 = 1_700_000_000;
const TTL: u64 = 60;

fn bench_store(c: &mut Criterion, name: &str, store: &dyn NonceStore) {
    let mut i: u64 = 0;
    let mut key = String::with_capacity(64);
    c.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            key.clear();
            // Account prefix + 22 chars, the shape of a real key (128-bit base64url nonce).
            write!(key, "acct_01HZX3K9Q2:{i:022x}").unwrap();
            let now = START + i / 10_000;
            let r = store.consume(black_box(&key), now + TTL, now).unwrap();
            debug_assert!(r.is_fresh());
            black_box(r)
        })
    });
}

fn consume_memory(c: &mut Criterion) {
    bench_store(c, "consume_memory", &MemoryStore::new());
}

#[cfg(feature = "sqlite")]
fn consume_sqlite_wal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = vlexivo_core::store::SqliteStore::open(dir.path().join("nonces.db")).unwrap();
    bench_store(c, "consume_sqlite_wal", &store);
}

#[cfg(not(feature = "sqlite"))]
fn consume_sqlite_wal(_: &mut Criterion) {}

criterion_group!(benches, consume_memory, consume_sqlite_wal);
criterion_main!(benches);
