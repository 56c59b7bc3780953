//! One in-process lock per payer, held while its balance is checked and its reservation made.
//! An entry lives only while someone holds or waits for it: payers are as many as addresses
//! anyone can sign with, so a map that kept every payer it saw would grow without bound.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::OwnedMutexGuard;
use vlexivo_core::wallet::Address;

#[derive(Default)]
pub struct PayerLocks {
    locks: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds `payer`'s lock; dropping it lets the next waiter in, or forgets the payer if none.
pub struct PayerGuard<'a> {
    locks: &'a PayerLocks,
    payer: Address,
    guard: Option<OwnedMutexGuard<()>>,
}

impl PayerLocks {
    pub async fn lock(&self, payer: Address) -> PayerGuard<'_> {
        // The clone counts this task as a user of the entry until its guard is dropped.
        let lock = self.locks.lock().entry(payer).or_default().clone();
        PayerGuard { locks: self, payer, guard: Some(lock.lock_owned().await) }
    }

    /// Payers with an entry: held or waited for right now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().len()
    }
}

impl Drop for PayerGuard<'_> {
    fn drop(&mut self) {
        // Under the map's lock nobody can take a new reference, so a count of one (the map's)
        // means nobody holds or waits for this payer.
        let mut map = self.locks.locks.lock();
        drop(self.guard.take());
        if map.get(&self.payer).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.payer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn addr(i: u32) -> Address {
        let mut b = [0u8; 20];
        b[16..].copy_from_slice(&i.to_be_bytes());
        Address(b)
    }

    #[tokio::test]
    async fn a_payer_is_forgotten_once_nobody_holds_or_waits_for_it() {
        let locks = PayerLocks::default();
        for i in 0..10_000 {
            let g = locks.lock(addr(i)).await;
            assert_eq!(locks.len(), 1);
            drop(g);
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_holder_at_a_time_and_waiters_keep_the_entry() {
        let locks = Arc::new(PayerLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
            tasks.spawn(async move {
                for _ in 0..20 {
                    let _g = locks.lock(addr(7)).await;
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_micros(50)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two holders of one payer");
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_same_lock_after_the_holder_leaves() {
        let locks = Arc::new(PayerLocks::default());
        let held = locks.lock(addr(1)).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _g = locks.lock(addr(1)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the waiter waits for the holder");
        drop(held);
        assert_eq!(locks.len(), 1, "the waiter keeps the entry when the holder leaves");
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
