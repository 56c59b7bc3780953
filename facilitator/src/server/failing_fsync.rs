//! Test only: a SQLite VFS whose fsyncs fail on demand, to test what the ledger does after a
//! failed fsync without a failing disk.
//!
//! It is SQLite's own `unix` VFS with one change: files it opens get a copy of their I/O method
//! table whose `xSync` returns `SQLITE_IOERR_FSYNC` while [`fail`] is on (and otherwise calls the
//! real `xSync`, which fsyncs). So SQLite goes through its real commit path and meets the error
//! exactly where a failing disk would report it. A device-mapper or FUSE filesystem that fails
//! fsync would need privileges and kernel support that CI machines do not all have.
//!
//! The switch is process-wide, but only connections opened with [`NAME`] see it.

use rusqlite::ffi;
use std::ffi::c_int;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub const NAME: &str = "vlexivo-failing-fsync";
const NAME_C: &std::ffi::CStr = c"vlexivo-failing-fsync";

static FAIL: AtomicBool = AtomicBool::new(false);
/// The wrapped `unix` VFS (kept for its `xOpen`).
static BASE: OnceLock<usize> = OnceLock::new();
/// (our method table, the original one) per original table seen; never freed.
static TABLES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Make every later fsync through this VFS fail (true) or work again (false).
pub fn fail(on: bool) {
    FAIL.store(on, Ordering::SeqCst);
}

/// Register the VFS (once per process).
pub fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find returns SQLite's static `unix` VFS (or null). Our copy is
        // leaked, so it outlives every connection; it differs from the original only in its
        // name and xOpen, which delegates to the original.
        unsafe {
            let base = ffi::sqlite3_vfs_find(c"unix".as_ptr());
            assert!(!base.is_null(), "SQLite has no unix VFS");
            BASE.set(base as usize).expect("registered once");
            let mut vfs: ffi::sqlite3_vfs = *base;
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(x_open);
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
            assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_vfs_register");
        }
    });
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = *BASE.get().expect("registered") as *mut ffi::sqlite3_vfs;
    // SAFETY: the arguments come from SQLite and go unchanged to the unix VFS, whose file
    // structure size (`szOsFile`) our copy advertises. After a successful open, `pMethods`
    // points at one of unix's static method tables, which we swap for a leaked copy.
    unsafe {
        let rc = ((*base).xOpen.expect("unix xOpen"))(base, name, file, flags, out_flags);
        if rc == ffi::SQLITE_OK && !(*file).pMethods.is_null() {
            (*file).pMethods = wrapped((*file).pMethods);
        }
        rc
    }
}

/// Our copy of `orig` with `xSync` replaced, made once per original table.
unsafe fn wrapped(orig: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut tables = TABLES.lock().unwrap();
    if let Some((ours, _)) = tables.iter().find(|(_, o)| *o == orig as usize) {
        return *ours as *const _;
    }
    // SAFETY: `orig` is a valid static method table (see x_open).
    let mut copy: ffi::sqlite3_io_methods = unsafe { *orig };
    copy.xSync = Some(x_sync);
    let ours = Box::into_raw(Box::new(copy)) as *const ffi::sqlite3_io_methods;
    tables.push((ours as usize, orig as usize));
    ours
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    if FAIL.load(Ordering::SeqCst) {
        return ffi::SQLITE_IOERR_FSYNC;
    }
    // SAFETY: `file` was opened by x_open, so its table is one of ours and has an original.
    unsafe {
        let ours = (*file).pMethods as usize;
        let orig = TABLES.lock().unwrap().iter().find(|(o, _)| *o == ours).map(|(_, orig)| *orig);
        let orig = orig.expect("a table made by x_open") as *const ffi::sqlite3_io_methods;
        ((*orig).xSync.expect("unix xSync"))(file, flags)
    }
}
