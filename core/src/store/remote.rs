//! What the networked stores (Redis, PostgreSQL) share: the small runtime their I/O runs on and
//! the two ways a caller waits for it.
//!
//! A networked store is built and called from anywhere: Node's main thread, a Python thread
//! with or without an asyncio loop, a tokio task of the application. So its connections live on
//! a runtime of its own (two worker threads for the whole process), and every operation is a
//! task spawned there. The async face awaits the task's handle, which any executor can poll; the
//! blocking face waits on a channel, bounded by the operation's timeout. Neither ever runs store
//! I/O on the caller's event loop.

use super::StoreFuture;
use crate::error::{Error, Result};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// Worker threads for every networked store in the process: the work is waiting on sockets,
/// and two keep one slow decode from delaying the other replies.
const WORKERS: usize = 2;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("vlexivo-store")
            .enable_all()
            .build()
            .expect("cannot start the nonce store's I/O threads")
    })
}

/// Run `fut` on the store runtime; the returned future may be awaited on any executor.
pub(crate) fn spawn<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> StoreFuture<T> {
    let task = runtime().spawn(fut);
    Box::pin(async move { task.await.map_err(|e| Error::Internal(format!("nonce store task: {e}")))? })
}

/// Run `fut` on the store runtime and hand its result to `done` there.
pub(crate) fn then<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
    done: super::Done<T>,
) {
    runtime().spawn(async move { done(fut.await) });
}

/// Run `fut` on the store runtime and wait for it on this thread, at most `limit` (the future
/// carries its own timeout; `limit` is a backstop slightly above it).
pub(crate) fn block_on<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
    limit: Duration,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => Err(Error::NonceStoreUnavailable("timed out".into())),
    }
}

/// Await `fut` at most `limit`; past it the store counts as unavailable (fail closed).
pub(crate) async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => {
            Err(Error::NonceStoreUnavailable(format!("{what}: timed out after {} ms", limit.as_millis())))
        }
    }
}
