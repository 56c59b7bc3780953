//! A nonce store in one SQLite file: survives restarts and is shared by every process on the
//! machine that opens the same file (WAL lets readers and the one writer proceed together; the
//! busy timeout serializes writers across processes). For many machines use Redis or PostgreSQL.

use super::{Consume, Lease, Leases, NonceStore, check_key};
use crate::error::{Error, Result};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every this many consumes, delete a few expired rows on the request's connection, so the table
/// stays near its live size with no request paying for more than a few deletes (a batch of
/// 4,096 every 1,024 consumes made one consume in a thousand take milliseconds; each row is a
/// random page of the table).
const PURGE_EVERY: u64 = 8;
/// Rows deleted per periodic purge: twice PURGE_EVERY, so purging keeps up with inserts.
const PURGE_BATCH: u32 = 16;
/// The periodic purge leaves a row this long after it expired: nothing depends on its absence
/// (a consume takes an expired row over), and `purge` itself stays exact.
const PURGE_LAG_SECS: u64 = 60;
/// Every this many consumes, add up the WAL frames the store's connection wrote meanwhile.
const FRAMES_LOOK_EVERY: u64 = 64;
/// WAL frames (pages) the store's connection writes between two passive checkpoints on the
/// checkpointer's connection: about 4 MB. Counted, not read from the WAL file's size: SQLite
/// writes the WAL again from its start after a checkpoint without shrinking the file, so once it
/// had reached any size a size test passed at every look (a checkpoint every look, new frames or
/// not).
const CHECKPOINT_FRAMES: u64 = 1_024;
/// Past this many WAL pages a consume's commit checkpoints itself. SQLite's default, 1,000 pages,
/// put a whole checkpoint and its fsyncs into one consume in a few hundred: 10-14 ms stalls at
/// p99.9. Now the checkpointer has copied most pages by then; this pass copies the rest, and
/// the WAL, fully copied, starts over (under consumes that never pause, passive checkpoints
/// alone never catch up, and the WAL would only grow).
const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 8_192;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of the open-time configuration on SQLITE_BUSY: 1, 2, 4 … 64 ms, about 5 s in all.
const OPEN_RETRIES: u32 = 80;

// `lease` names the consume that holds the key (release is compare-and-delete on it).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vlexivo_nonces (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    lease      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vlexivo_nonces_expires_at ON vlexivo_nonces (expires_at);
";
// Files made before leases existed: their rows keep lease 0, which no consume hands out twice.
const ADD_LEASE: &str = "ALTER TABLE vlexivo_nonces ADD COLUMN lease INTEGER NOT NULL DEFAULT 0";

// Insert-if-absent in one statement; a row that already expired is taken over (a fresh use),
// a live one is left alone and changes() stays 0 (a replay).
const SQL_CONSUME: &str = "INSERT INTO vlexivo_nonces (key, expires_at, lease) VALUES (?1, ?2, ?4) \
     ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at, lease = excluded.lease \
     WHERE vlexivo_nonces.expires_at < ?3";
const SQL_RELEASE: &str = "DELETE FROM vlexivo_nonces WHERE key = ?1 AND lease = ?2";
const SQL_PURGE: &str = "DELETE FROM vlexivo_nonces WHERE expires_at < ?1";
const SQL_PURGE_BATCH: &str = "DELETE FROM vlexivo_nonces WHERE key IN \
     (SELECT key FROM vlexivo_nonces WHERE expires_at < ?1 LIMIT ?2)";

struct Inner {
    /// This process's connection; for a file, opened at the first call (see [`Inner::conn`]).
    conn: Option<Connection>,
    consumes: u64,
    /// WAL frames written since the checkpointer was last woken, by this process.
    frames: u64,
    /// The checkpointer thread (files only; `None` where one could not be started).
    checkpointer: Option<CheckpointerHandle>,
    /// The process that `conn`, `checkpointer` and `frames` belong to (0 for a file store not
    /// called yet).
    pid: u32,
}

impl Inner {
    /// The connection, this process's own. SQLite's rule is that a connection must not be carried
    /// across a fork: a child does not hold the parent's file locks, yet SQLite's per-process
    /// record of them, copied by the fork, says it does, and so would any connection the child
    /// opened while an inherited one stays open. SQLite's cross-process coordination of the WAL
    /// (who may reset its index, who deletes it at the last close) would then rest on locks
    /// nobody holds. So a file store opens its connection and checkpointer at its first call in
    /// each process: a store built at import by a pre-forking server's parent and first used in
    /// its workers gives each worker connections, and locks, of its own. A child of a process
    /// that had used the store reopens too (the parent's thread does not exist in the child), the
    /// best SQLite allows there. Reading the process id is a syscall, a fraction of a percent of
    /// a consume.
    fn conn(&mut self, db: Option<&Path>) -> Result<&Connection> {
        let me = std::process::id();
        if me != self.pid {
            self.open_here(db, me)?;
        }
        Ok(self.current())
    }

    /// The connection, once [`Inner::conn`] has made sure of it in this call.
    fn current(&self) -> &Connection {
        self.conn.as_ref().expect("a called store has a connection")
    }

    fn open_here(&mut self, db: Option<&Path>, me: u32) -> Result<()> {
        if let Some(db) = db {
            // Until this succeeds calls fail as unavailable (and retry here), rather than use a
            // parent's connection.
            let conn = connect(Some(db))?;
            // A parent's connection and checkpointer handle are leaked, not closed: closing runs
            // SQLite's last-connection logic on locks this process does not hold, and the
            // wake-up channel's lock may have been held at the fork by the parent's thread.
            std::mem::forget(self.conn.replace(conn));
            std::mem::forget(self.checkpointer.take());
            // Without one (no thread can start) the commit's fallback checkpoint still bounds
            // the WAL.
            self.checkpointer = Checkpointer::start(db).ok();
        }
        // An in-memory store is copied by a fork: the child's is a private copy, its own.
        self.frames = 0;
        self.pid = me;
        Ok(())
    }

    /// At every [`FRAMES_LOOK_EVERY`]th consume on a file: the frames written since the last look
    /// added up, and the checkpointer woken past [`CHECKPOINT_FRAMES`].
    fn look(&mut self) {
        let written = frames_written(self.current());
        let Some(c) = &self.checkpointer else { return };
        self.frames += written;
        if self.frames >= CHECKPOINT_FRAMES {
            self.frames = 0;
            // Full means a wake-up is already pending: nothing to add.
            let _ = c.tick.try_send(());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A child that never called since the fork still holds the parent's (see `open_here`).
        if self.pid != std::process::id() {
            std::mem::forget(self.conn.take());
            std::mem::forget(self.checkpointer.take());
        }
    }
}

/// SQLite-backed [`NonceStore`] (feature `sqlite`). One connection per store, behind a mutex:
/// SQLite allows one writer at a time anyway, and each call is a single short statement.
pub struct SqliteStore {
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
    leases: Leases,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store in the file at `path`. Any number of processes may
    /// open the same file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Created, upgraded and checked now, so a bad path or file fails here; the connection
        // the calls use is opened at the first of them, in the process that makes it (see
        // `Inner::conn`).
        drop(connect(Some(path))?);
        let inner = Inner { conn: None, consumes: 0, frames: 0, checkpointer: None, pid: 0 };
        Ok(Self { inner: Mutex::new(inner), path: Some(path.to_path_buf()), leases: Leases::new() })
    }

    /// A private, non-persistent store (tests, single-process tools).
    pub fn in_memory() -> Result<Self> {
        let conn = Some(connect(None)?);
        let inner = Inner { conn, consumes: 0, frames: 0, checkpointer: None, pid: std::process::id() };
        Ok(Self { inner: Mutex::new(inner), path: None, leases: Leases::new() })
    }

    /// The file backing the store (`None` for [`SqliteStore::in_memory`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Rows currently stored, including expired ones not yet purged.
    pub fn len(&self) -> Result<u64> {
        let mut inner = self.inner.lock();
        let n: i64 = inner
            .conn(self.path.as_deref())?
            .prepare_cached("SELECT count(*) FROM vlexivo_nonces")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| unavailable("count", &e))?;
        Ok(n as u64)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl NonceStore for SqliteStore {
    fn consume(&self, key: &str, expires_at: u64, now: u64) -> Result<Consume> {
        check_key(key)?;
        let lease = self.leases.next();
        let mut inner = self.inner.lock();
        let changed = inner
            .conn(self.path.as_deref())?
            .prepare_cached(SQL_CONSUME)
            .and_then(|mut st| {
                st.execute(params![key, to_sql_time(expires_at), to_sql_time(now), lease.0 as i64])
            })
            .map_err(|e| unavailable("consume", &e))?;
        inner.consumes += 1;
        if inner.consumes.is_multiple_of(FRAMES_LOOK_EVERY) {
            inner.look();
        }
        if inner.consumes.is_multiple_of(PURGE_EVERY) {
            // Housekeeping only: a failure here must not fail the request that triggered it.
            let _ = inner.current().prepare_cached(SQL_PURGE_BATCH).and_then(|mut st| {
                st.execute(params![to_sql_time(now.saturating_sub(PURGE_LAG_SECS)), PURGE_BATCH])
            });
        }
        Ok(if changed == 1 { Consume::Fresh(lease) } else { Consume::Replayed })
    }

    fn release(&self, key: &str, lease: Lease) -> Result<()> {
        check_key(key)?;
        let mut inner = self.inner.lock();
        inner
            .conn(self.path.as_deref())?
            .prepare_cached(SQL_RELEASE)
            .and_then(|mut st| st.execute(params![key, lease.0 as i64]))
            .map_err(|e| unavailable("release", &e))?;
        Ok(())
    }

    fn purge(&self, now: u64) -> Result<u64> {
        let mut inner = self.inner.lock();
        let n = inner
            .conn(self.path.as_deref())?
            .prepare_cached(SQL_PURGE)
            .and_then(|mut st| st.execute(params![to_sql_time(now)]))
            .map_err(|e| unavailable("purge", &e))?;
        Ok(n as u64)
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

/// WAL frames (pages) `conn` wrote since the last call (`SQLITE_DBSTATUS_CACHE_WRITE`, read and
/// reset; in WAL mode it counts exactly the frames a commit appends, not a checkpoint's copies).
#[allow(unsafe_code)]
fn frames_written(conn: &Connection) -> u64 {
    let (mut current, mut highwater) = (0, 0);
    // SAFETY: `conn` is an open connection that stays open for the whole call, and the caller
    // has it to itself (the store's lock, or before the store exists); sqlite3_db_status only
    // reads and resets the pager's counters and writes the two integers passed to it.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE,
            &mut current,
            &mut highwater,
            1,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK { u64::try_from(current).unwrap_or(0) } else { 0 }
}

/// The store's side of its checkpointer: the wake-up channel (dropping it stops the thread)
/// and, for the tests, the thread and its count of passes.
struct CheckpointerHandle {
    tick: std::sync::mpsc::SyncSender<()>,
    #[cfg_attr(not(test), allow(dead_code))]
    thread: std::thread::JoinHandle<()>,
    #[cfg_attr(not(test), allow(dead_code))]
    runs: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(test)]
impl SqliteStore {
    /// Stop the checkpointer after its pending pass (no later consume wakes one) and say how
    /// many passes it ran.
    fn stop_checkpointer(&self) -> u64 {
        let c = self.inner.lock().checkpointer.take().expect("a file store has a checkpointer");
        drop(c.tick);
        c.thread.join().expect("the checkpointer ended cleanly");
        c.runs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The thread of a file store's [`Checkpointer`].
const CHECKPOINT_THREAD: &str = "vlexivo-nonce-checkpoint";

/// Keeps the WAL short with passive checkpoints on a thread and connection of its own, so a
/// consume's commit never copies pages into the database or waits for an fsync (a passive
/// checkpoint takes no lock a writer needs). It runs one pass per wake-up: the store wakes it
/// after every [`CHECKPOINT_FRAMES`] frames its connection wrote.
struct Checkpointer {
    conn: Connection,
    runs: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpointer {
    fn start(db: &Path) -> Result<CheckpointerHandle> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(db, flags).map_err(|e| unavailable("open", &e))?;
        // NORMAL, as the store's connection: the checkpoint syncs the WAL before copying and the
        // database after.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| unavailable("configure", &e))?;
        let runs = std::sync::Arc::default();
        let me = Self { conn, runs: std::sync::Arc::clone(&runs) };
        // One pending wake-up is enough: a pass copies whatever the WAL holds when it runs.
        let (tick, ticks) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(CHECKPOINT_THREAD.into())
            .spawn(move || me.run(ticks))
            .map_err(|_| Error::NonceStoreUnavailable("cannot start the checkpoint thread".into()))?;
        Ok(CheckpointerHandle { tick, thread, runs })
    }

    fn run(self, ticks: std::sync::mpsc::Receiver<()>) {
        while ticks.recv().is_ok() {
            // Housekeeping: a failed pass is retried at the next wake-up, and the store's own
            // fallback checkpoint bounds the WAL if they keep failing.
            let _ = passive_checkpoint(&self.conn);
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// One pass of the checkpointer's connection: a passive checkpoint (it takes no lock a writer
/// needs), then the database file flushed to disk.
///
/// SQLite syncs the database file only in the pass that copies the whole WAL, just before the
/// WAL may start over. Under steady writes no passive pass gets there (commits keep appending
/// while it copies), so that pass is the writer's own fallback checkpoint, inside a commit, and
/// its fsync wrote out every page the passive passes had copied since the WAL last started
/// over: a 30 ms fsync on a virtual disk every few thousand nonce consumes. Flushed after each
/// pass, off the request path, that fsync has only the last pass's pages left. (The facilitator's
/// ledger does not flush so: its commits fsync the WAL each, and flushes beside them made its
/// paid calls' p99 worse, `bench_payments`.)
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    // A failed flush loses nothing: SQLite's own sync before the WAL starts over still runs and
    // reports its failure to that commit.
    let _ = sync_database(conn);
    Ok(())
}

/// Flush the database file through SQLite's own handle of it: a descriptor of our own would,
/// when closed, drop the process's POSIX locks on the file, SQLite's locks included.
#[allow(unsafe_code)]
fn sync_database(conn: &Connection) -> std::result::Result<(), i32> {
    use rusqlite::ffi;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the checkpointer's connection is open and used by this thread alone;
    // SQLITE_FCNTL_FILE_POINTER writes the main database's `sqlite3_file` (owned by the
    // connection, valid while it is open) into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    // SAFETY: a non-null `file` is the open file of a live connection, whose `pMethods` is set
    // while it is open; xSync only flushes the file to disk and needs no SQLite lock held.
    let sync = unsafe { file.as_ref().and_then(|f| f.pMethods.as_ref()).and_then(|m| m.xSync) };
    let Some(sync) = sync else { return Err(ffi::SQLITE_NOTFOUND) };
    // SAFETY: as above; `file` stays valid for the call.
    match unsafe { sync(file, ffi::SQLITE_SYNC_NORMAL) } {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rc),
    }
}

/// Journal mode, durability and schema; idempotent, so it can be retried as a whole.
/// A configured connection to the file at `path`, or to a new in-memory database.
fn connect(path: Option<&Path>) -> Result<Connection> {
    let conn = match path {
        Some(p) => {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(p, flags)
        }
        None => Connection::open_in_memory(),
    }
    .map_err(|e| unavailable("open", &e))?;
    // The busy timeout first: the pragmas and schema below may meet another process's lock.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| unavailable("configure", &e))?;
    // Switching a new file to WAL while other connections open it can return SQLITE_BUSY
    // without waiting on the busy handler, so retry that step with backoff (only at open).
    let mut attempt = 0u32;
    loop {
        match configure(&conn, path.is_some()) {
            Ok(()) => break,
            Err((_, e)) if is_busy(&e) && attempt < OPEN_RETRIES => {
                std::thread::sleep(Duration::from_millis(1u64 << attempt.min(6)));
                attempt += 1;
            }
            Err((op, e)) => return Err(unavailable(op, &e)),
        }
    }
    conn.set_prepared_statement_cache_capacity(8);
    if path.is_some() {
        conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)
            .map_err(|e| unavailable("configure", &e))?;
    }
    // Frames written while opening (schema, upgrade) count from zero.
    frames_written(&conn);
    Ok(conn)
}

fn configure(conn: &Connection, on_file: bool) -> std::result::Result<(), (&'static str, rusqlite::Error)> {
    if on_file {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| ("configure", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // E.g. a file system without shared memory support: refuse rather than run slower
            // and lock out other processes.
            return Err(("cannot enable WAL", rusqlite::Error::InvalidQuery));
        }
    }
    // NORMAL in WAL mode: durable against process crashes; a power loss may forget the last
    // few nonces, which only matters for tokens still within their 5 minutes.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| ("configure", e))?;
    // Keys are random, so inserts touch random B-tree pages: a 16 MB cache (default 2 MB) holds
    // the hot part of a few hundred thousand live nonces and avoids a read syscall per insert.
    conn.pragma_update(None, "cache_size", -16_384).map_err(|e| ("configure", e))?;
    conn.execute_batch(SCHEMA).map_err(|e| ("create schema", e))?;
    let has_lease = conn
        .prepare("SELECT 1 FROM pragma_table_info('vlexivo_nonces') WHERE name = 'lease'")
        .and_then(|mut st| st.exists([]))
        .map_err(|e| ("read schema", e))?;
    if !has_lease {
        conn.execute_batch(ADD_LEASE).map_err(|e| ("add the lease column", e))?;
    }
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// SQLite integers are i64; times beyond year 292 billion are clamped, not wrapped.
fn to_sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A short, value-free description: the operation and SQLite's error class, never SQL or keys.
fn unavailable(op: &'static str, e: &rusqlite::Error) -> Error {
    let why = match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => "database busy",
            rusqlite::ErrorCode::CannotOpen => "cannot open database file",
            rusqlite::ErrorCode::ReadOnly => "database is read-only",
            rusqlite::ErrorCode::DiskFull => "disk full",
            rusqlite::ErrorCode::SystemIoFailure => "I/O error",
            rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => {
                "database file is corrupt or not a database"
            }
            rusqlite::ErrorCode::PermissionDenied => "permission denied",
            _ => "sqlite error",
        },
        _ => "sqlite error",
    };
    Error::NonceStoreUnavailable(format!("{op}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{conformance_async, conformance_clock};
    #[cfg(target_os = "linux")]
    use crate::store::tests::{in_forked_child, in_own_process, threads_named};

    #[test]
    fn conforms_in_memory() {
        conformance_clock(&SqliteStore::in_memory().unwrap());
    }

    #[tokio::test]
    async fn conforms_async() {
        conformance_async(&SqliteStore::in_memory().unwrap(), 0, "").await;
    }

    #[test]
    fn conforms_on_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("nonces.db")).unwrap();
        conformance_clock(&s);
        assert_eq!(s.kind(), "sqlite");
    }

    #[test]
    fn reopened_file_keeps_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            assert!(s.consume("a:1", 100, 0).unwrap().is_fresh());
            let Consume::Fresh(l) = s.consume("a:2", 100, 0).unwrap() else { panic!() };
            s.release("a:2", l).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.path(), Some(path.as_path()));
        assert_eq!(s.len().unwrap(), 1);
        assert_eq!(s.consume("a:1", 100, 1).unwrap(), Consume::Replayed);
        assert!(s.consume("a:2", 100, 1).unwrap().is_fresh());
    }

    #[test]
    fn two_connections_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        let Consume::Fresh(l) = a.consume("p:1", 100, 0).unwrap() else { panic!() };
        assert_eq!(b.consume("p:1", 100, 0).unwrap(), Consume::Replayed);
        // Another connection releases with the lease it was handed.
        b.release("p:1", l).unwrap();
        let Consume::Fresh(l2) = a.consume("p:1", 100, 0).unwrap() else { panic!() };
        assert_ne!(l, l2);
        b.release("p:1", l).unwrap();
        assert_eq!(b.consume("p:1", 100, 0).unwrap(), Consume::Replayed);
        assert!(b.consume("p:2", 100, 0).unwrap().is_fresh());
        assert_eq!(a.consume("p:2", 100, 0).unwrap(), Consume::Replayed);
        assert_eq!(a.purge(101).unwrap(), 2);
        assert_eq!(b.len().unwrap(), 0);
    }

    #[test]
    fn periodic_purge_bounds_the_table() {
        let s = SqliteStore::in_memory().unwrap();
        for i in 0..20_000 {
            // Each entry lives 1 s, one new second per 100 consumes: 200 s in all.
            let now = i / 100;
            s.consume(&format!("a:{i}"), now + 1, now).unwrap();
        }
        // Live and lagging rows only: 100 per second for the 1 s of life, the lag and the second
        // in progress, and a batch.
        let bound = 100 * (PURGE_LAG_SECS + 2) + 2 * PURGE_EVERY;
        assert!(s.len().unwrap() <= bound, "len {} > {bound}", s.len().unwrap());
        assert!(s.len().unwrap() >= 100 * PURGE_LAG_SECS, "purged early: {}", s.len().unwrap());
    }

    #[test]
    fn checkpoints_run_off_the_request_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.db");
        let s = SqliteStore::open(&path).unwrap();
        // A request's commit checkpoints only as a fallback, far past SQLite's 1,000 pages.
        let pages: i64 = s
            .inner
            .lock()
            .conn(s.path())
            .unwrap()
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        assert_eq!(pages, FALLBACK_AUTOCHECKPOINT_PAGES);
        // A few times CHECKPOINT_FRAMES of WAL, well under the fallback: only the checkpointer
        // copies pages into the database file.
        let db_bytes = || std::fs::metadata(&path).unwrap().len();
        let before = db_bytes();
        for i in 0..1_500u64 {
            s.consume(&format!("acct_3f9c2a71d04e8b65a1c7:{i:024}"), 1_000, 0).unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("nonces.db-wal")).unwrap().len();
        assert!(
            wal > 4096 * CHECKPOINT_FRAMES && wal < 4096 * FALLBACK_AUTOCHECKPOINT_PAGES as u64,
            "WAL {wal}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while db_bytes() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint in 20 s ({} bytes)", db_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The checkpointer's flush goes through SQLite's own handle of the database file (no
    /// descriptor of ours to close, which would drop the process's locks on it).
    #[test]
    fn the_checkpointer_flushes_the_database_through_sqlites_handle() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("nonces.db")).unwrap();
        assert!(s.consume("acct_3f9c2a71d04e8b65a1c7:1", 1_000, 0).unwrap().is_fresh());
        let conn = connect(Some(&dir.path().join("nonces.db"))).unwrap();
        assert_eq!(sync_database(&conn), Ok(()));
        // The store's connection still writes after another connection's flush, and counts
        // both rows.
        assert!(s.consume("acct_3f9c2a71d04e8b65a1c7:2", 1_000, 0).unwrap().is_fresh());
        assert_eq!(s.len().unwrap(), 2);
        // An in-memory database has no file to flush.
        assert!(sync_database(&Connection::open_in_memory().unwrap()).is_err());
    }

    #[test]
    fn checkpoints_follow_the_frames_written_not_the_wal_file_size() {
        // SQLite writes the WAL again from its start after a checkpoint without shrinking the
        // file: decided by the file's size, a checkpoint ran at every look once the file had
        // grown, whether anything had been written since or not.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.db");
        let wal_bytes = || std::fs::metadata(dir.path().join("nonces.db-wal")).unwrap().len();
        let key = |i: u64| format!("acct_3f9c2a71d04e8b65a1c7:{i:024}");
        let grown = SqliteStore::open(&path).unwrap();
        // A reader keeps the WAL file: the last connection to close would checkpoint and delete it.
        let reader = Connection::open(&path).unwrap();
        reader.query_row("SELECT count(*) FROM vlexivo_nonces", [], |r| r.get::<_, i64>(0)).unwrap();
        for i in 0..3_000 {
            assert!(grown.consume(&key(i), 1_000, 0).unwrap().is_fresh());
        }
        assert!(grown.stop_checkpointer() >= 1, "no checkpoint after 3,000 fresh consumes");
        drop(grown);
        assert!(wal_bytes() >= 4096 * CHECKPOINT_FRAMES, "WAL file {} bytes", wal_bytes());

        // A replay writes nothing: thousands of them on the grown file wake no checkpoint.
        let s = SqliteStore::open(&path).unwrap();
        for _ in 0..8 * 256 {
            assert_eq!(s.consume(&key(7), 1_000, 1).unwrap(), Consume::Replayed);
        }
        let runs = s.stop_checkpointer();
        assert_eq!(runs, 0, "checkpoints with no frames written (WAL file {} bytes)", wal_bytes());
        drop(reader);
    }

    /// A store opened before a fork, as a pre-forking server's workers get one built at import:
    /// at its first call the child opens a connection and a checkpointer of its own (SQLite's
    /// rule: no connection carried across a fork), counts its own frames only, and its commits
    /// wake its checkpointer.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_forked_child_opens_a_connection_and_checkpointer_of_its_own() {
        if !in_own_process(
            "store::sqlite::tests::a_forked_child_opens_a_connection_and_checkpointer_of_its_own",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("nonces.db")).unwrap();
        let key = |i: u64| format!("acct_3f9c2a71d04e8b65a1c7:{i:024}");
        // A thread names itself as it starts: its count, once a started one has had time to.
        let checkpointers = || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while threads_named(CHECKPOINT_THREAD) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            threads_named(CHECKPOINT_THREAD)
        };
        // A temporary table lives on one connection only: it marks the parent's.
        let on_parents_connection = |s: &SqliteStore| -> bool {
            s.inner
                .lock()
                .current()
                .query_row("SELECT count(*) FROM temp.sqlite_master WHERE name = 'parent'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
                == 1
        };
        s.inner.lock().conn(s.path()).unwrap().execute_batch("CREATE TEMP TABLE parent (x)").unwrap();
        // The parent's frames count towards a wake-up, short of one.
        for i in 0..2 * FRAMES_LOOK_EVERY {
            assert!(s.consume(&key(i), 1_000, 0).unwrap().is_fresh());
        }
        let parent_frames = s.inner.lock().frames;
        assert!(parent_frames > 0 && parent_frames < CHECKPOINT_FRAMES, "{parent_frames}");
        assert_eq!(checkpointers(), 1);
        in_forked_child(|| {
            assert_eq!(threads_named(CHECKPOINT_THREAD), 0, "the parent's checkpointer is not in the child");
            // The first call: a connection and a checkpointer of the child's, none of the
            // parent's frames.
            assert!(s.consume(&key(10_000), 1_000, 0).unwrap().is_fresh());
            assert!(!on_parents_connection(&s), "the child consumed on the parent's connection");
            assert_eq!(checkpointers(), 1, "no checkpointer in the child");
            let inner = s.inner.lock();
            assert_eq!(inner.pid, std::process::id());
            assert!(inner.frames < FRAMES_LOOK_EVERY, "the parent's frames were counted: {}", inner.frames);
            drop(inner);
            // The parent's rows are seen through the child's own connection.
            assert_eq!(s.consume(&key(7), 1_000, 0).unwrap(), Consume::Replayed);
            for i in 0..3_000 {
                assert!(s.consume(&key(20_000 + i), 1_000, 0).unwrap().is_fresh());
            }
            assert!(s.stop_checkpointer() >= 1, "no checkpoint after 3,000 fresh consumes in the child");
        });
        // The parent's connection, count and checkpointer are its own; the file holds the
        // child's rows too.
        assert!(on_parents_connection(&s));
        assert_eq!(s.inner.lock().frames, parent_frames);
        assert_eq!(s.len().unwrap(), 2 * FRAMES_LOOK_EVERY + 1 + 3_000);
        assert_eq!(s.stop_checkpointer(), 0);
    }

    /// The usual pre-forking server: the store built by the parent at import, used only in the
    /// workers. Each worker's connection holds its own lock on the file in the kernel, the lock
    /// SQLite's cross-process rules rest on (had the parent kept a connection open from `open`,
    /// SQLite's inherited record would say the child held it already, and it would not take it).
    #[test]
    #[cfg(target_os = "linux")]
    fn a_store_first_used_in_a_forked_child_holds_locks_of_its_own() {
        use std::os::unix::fs::MetadataExt;
        if !in_own_process(
            "store::sqlite::tests::a_store_first_used_in_a_forked_child_holds_locks_of_its_own",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.db");
        let s = SqliteStore::open(&path).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        // POSIX locks on the database file held by `pid`, from the kernel's table.
        let locks_held_by = |pid: u32| {
            let table = std::fs::read_to_string("/proc/locks").unwrap();
            table
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1) == Some(&"POSIX")
                        && f.get(4) == Some(&pid.to_string().as_str())
                        && f.get(5).and_then(|dev| dev.rsplit(':').next()) == Some(inode.to_string().as_str())
                })
                .count()
        };
        in_forked_child(|| {
            assert!(s.consume("acct_3f9c2a71d04e8b65a1c7:child", 1_000, 0).unwrap().is_fresh());
            assert!(locks_held_by(std::process::id()) > 0, "the child holds no lock on the file");
        });
        // The parent, never called, holds none and has no checkpointer; it reads the child's row.
        assert_eq!(locks_held_by(std::process::id()), 0);
        assert_eq!(threads_named(CHECKPOINT_THREAD), 0);
        assert_eq!(s.consume("acct_3f9c2a71d04e8b65a1c7:child", 1_000, 0).unwrap(), Consume::Replayed);
        assert!(locks_held_by(std::process::id()) > 0);
    }

    #[test]
    fn a_file_from_before_leases_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE vlexivo_nonces (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO vlexivo_nonces VALUES ('a:old', 100);",
        )
        .unwrap();
        drop(old);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.consume("a:old", 100, 1).unwrap(), Consume::Replayed);
        let Consume::Fresh(l) = s.consume("a:new", 100, 1).unwrap() else { panic!() };
        s.release("a:new", l).unwrap();
        assert!(s.consume("a:new", 100, 1).unwrap().is_fresh());
    }

    #[test]
    fn open_failure_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let err = SqliteStore::open(dir.path().join("missing/dir/nonces.db")).unwrap_err();
        assert_eq!(err.code(), "nonce_store_unavailable");
        assert!(!err.to_string().contains("missing"), "{err}");
    }
}
