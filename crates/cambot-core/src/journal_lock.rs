//! Who may write messages: the exclusive `flock` on `<db>-ingest.lock` makes a store the owner of
//! the ingest journal (the daemon); any other store takes the shared side while it writes a
//! message, so it fails while a daemon runs (see [`crate::ingest`]).

use std::fs::File;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use crate::error::Result;
use crate::error::StoreError;
use crate::journal;

/// How long opening waits for a previous owner in this process to finish its last move.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the shared side of the journal lock for a store that does not own the journal, for as
/// long as it writes a message: fails when a daemon owns the journal (it is then the only
/// writer of messages, so that seqs never collide and never go backwards in a chat).
pub(crate) fn shared_message_lock(db: &Path) -> Result<File> {
    let path = journal::lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| journal::io_error("opening", &path, &e))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Journal(format!(
            "a running cambot daemon stores this database's messages ({} is locked); send the \
             message through it",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(journal::io_error("locking", &path, &e)),
    }
}

pub(crate) fn lock_exclusive(db: &Path) -> Result<File> {
    let path = journal::lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| journal::io_error("opening", &path, &e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Journal(format!(
                    "another process stores this database's messages ({} is locked); is a \
                     cambot daemon already running on this data directory?",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(journal::io_error("locking", &path, &e));
            }
        }
    }
}
