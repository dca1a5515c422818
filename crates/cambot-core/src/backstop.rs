//! The writer connection's backstop checkpoint, with the ingest journal synced first.
//!
//! SQLite's automatic checkpoint (`wal_autocheckpoint`, at [`crate::checkpoint::BACKSTOP_PAGES`]
//! on the writer) runs inside the commit that crosses its threshold and syncs the WAL. The
//! checkpoint thread syncs the journal before the WAL (docs/ingest-journal.md, "Durability
//! order"); SQLite's own checkpoint did not, so after an OS crash a cursor it had synced could
//! point past a message the journal lost. In the store that owns the journal, [`install`]
//! replaces SQLite's hook with one that, at the same threshold, syncs the journal and then runs
//! the PASSIVE checkpoint SQLite's default hook runs.

use std::collections::HashMap;
use std::ffi::c_char;
use std::ffi::c_int;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use rusqlite::Connection;
use rusqlite::ffi;

use crate::ingest::Durability;

/// Journals by id. The hook's argument is an id and a threshold packed in an integer, not a
/// pointer: a connection that outlives its journal then finds nothing, instead of freed memory,
/// and no commit below the threshold takes a lock.
static JOURNALS: Mutex<Option<HashMap<u32, Weak<Durability>>>> = Mutex::new(None);
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

// The id and the threshold share the hook's pointer-sized argument.
const _: () = assert!(usize::BITS >= 64);

/// From now on, when a commit on `conn` leaves at least `pages` frames in the WAL, `journal` is
/// synced and then the WAL is checkpointed (PASSIVE), all inside that commit as before.
pub(crate) fn install(conn: &Connection, journal: &Arc<Durability>, pages: u32) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut journals) = JOURNALS.lock() {
        let journals = journals.get_or_insert_with(HashMap::new);
        journals.retain(|_, j| j.strong_count() > 0);
        journals.insert(id, Arc::downgrade(journal));
    }
    let packed = (u64::from(id) << 32) | u64::from(pages);
    // SAFETY: the handle is `conn`'s, open for this call. The hook is a plain function and its
    // argument an integer (never dereferenced), so both stay valid for the connection's life.
    unsafe {
        ffi::sqlite3_wal_hook(
            conn.handle(),
            Some(journal_first),
            packed as usize as *mut c_void,
        );
    }
}

/// SQLite's WAL hook: called after every commit with the number of frames in the WAL.
unsafe extern "C" fn journal_first(
    arg: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    let packed = arg as usize as u64;
    let pages = (packed & 0xffff_ffff) as c_int;
    if frames < pages {
        return ffi::SQLITE_OK;
    }
    let id = (packed >> 32) as u32;
    let journal = JOURNALS.lock().ok().and_then(|journals| {
        journals
            .as_ref()
            .and_then(|j| j.get(&id))
            .and_then(Weak::upgrade)
    });
    if let Some(journal) = &journal {
        journal.sync_journal();
        journal.backstop_checkpoints.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `db` and `name` are what SQLite passed to this hook, valid during the call; a
    // checkpoint from inside the hook is what SQLite's default hook does.
    unsafe {
        ffi::sqlite3_wal_checkpoint_v2(
            db,
            name,
            ffi::SQLITE_CHECKPOINT_PASSIVE,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
    ffi::SQLITE_OK
}
