//! Many threads consuming nonces at once: exactly one wins each nonce, for every store, and for
//! SQLite also across independent connections to one file (as separate processes would be).

use std::sync::{Arc, Barrier};
#[cfg(feature = "sqlite")]
use vlexivo_core::store::SqliteStore;
use vlexivo_core::store::{MemoryStore, NonceStore, nonce_key};

const THREADS: usize = 64;
const ROUNDS: usize = 5;
const NOW: u64 = 1_700_000_000;

/// Each thread gets its own store handle from `store_for(i)`; all race on `key_for(round, i)`.
/// Returns the number of `Fresh` answers per round.
fn race(
    store_for: &(dyn Fn(usize) -> Arc<dyn NonceStore> + Sync),
    key_for: &(dyn Fn(usize, usize) -> String + Sync),
) -> Vec<usize> {
    let stores: Vec<_> = (0..THREADS).map(store_for).collect();
    (0..ROUNDS)
        .map(|round| {
            let barrier = Barrier::new(THREADS);
            std::thread::scope(|s| {
                let handles: Vec<_> = stores
                    .iter()
                    .enumerate()
                    .map(|(i, store)| {
                        let (barrier, key) = (&barrier, key_for(round, i));
                        s.spawn(move || {
                            barrier.wait();
                            store.consume(&key, NOW + 300, NOW).expect("consume")
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("thread")).filter(|c| c.is_fresh()).count()
            })
        })
        .collect()
}

fn same(round: usize, _: usize) -> String {
    nonce_key("acct_race", &format!("shared-{round}"))
}

fn distinct(round: usize, i: usize) -> String {
    nonce_key("acct_race", &format!("own-{round}-{i}"))
}

#[test]
fn memory_one_winner_per_nonce() {
    let store: Arc<dyn NonceStore> = Arc::new(MemoryStore::new());
    let shared = |_| Arc::clone(&store);
    assert_eq!(race(&shared, &same), vec![1; ROUNDS]);
    assert_eq!(race(&shared, &distinct), vec![THREADS; ROUNDS]);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_shared_store_one_winner_per_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn NonceStore> = Arc::new(SqliteStore::open(dir.path().join("n.db")).unwrap());
    let shared = |_| Arc::clone(&store);
    assert_eq!(race(&shared, &same), vec![1; ROUNDS]);
    assert_eq!(race(&shared, &distinct), vec![THREADS; ROUNDS]);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_many_connections_one_winner_per_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.db");
    // Every thread opens its own connection, all at once, on a file that does not exist yet.
    let barrier = Barrier::new(THREADS);
    let stores: Vec<Arc<dyn NonceStore>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (barrier, path) = (&barrier, &path);
                s.spawn(move || {
                    barrier.wait();
                    Arc::new(SqliteStore::open(path).expect("open")) as Arc<dyn NonceStore>
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let own = |i: usize| Arc::clone(&stores[i]);
    assert_eq!(race(&own, &same), vec![1; ROUNDS]);
    assert_eq!(race(&own, &distinct), vec![THREADS; ROUNDS]);
}
