//! Who may write messages: the exclusive `flock` on `<db>-ingest.lock` makes a store the owner of
//! the ingest journal (the daemon); any other store takes the shared side while it writes a
//! message, so it fails while a daemon runs (see [`crate::ingest`]).

use std::fs::File;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use crate::error::Result;
use crate::error::StoreError;
use crate::journal;

/// How long opening waits for a previous owner in this process to finish its last move.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The shared side of the journal lock, for a store that does not own the journal: held while
/// it has messages being written, so that it fails when a daemon owns the journal (the daemon
/// is then the only writer of messages, so seqs never collide and never go backwards in a chat),
/// and a daemon cannot take ownership in the middle of such a write.
///
/// One file handle per store, locked while at least one write is in flight: a handle per write
/// ran out of file descriptors when a thousand writes waited for one commit.
#[derive(Debug)]
pub(crate) struct SharedMessageLock {
    path: PathBuf,
    state: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    file: Option<File>,
    writers: usize,
}

/// Rows only the daemon writes while it runs: its messages (seqs are counted in its memory),
/// and its router's cursors and sessions (mirrored in its memory, see [`crate::run_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DaemonRows {
    Messages,
    Cursors,
    Sessions,
}

impl DaemonRows {
    fn refusal(self, lock: &Path) -> String {
        let lock = lock.display();
        match self {
            Self::Messages => format!(
                "a running cambot daemon stores this database's messages ({lock} is locked); \
                 send the message through it"
            ),
            Self::Cursors => format!(
                "a running cambot daemon owns this database's router cursors ({lock} is \
                 locked); stop it before moving a cursor"
            ),
            Self::Sessions => format!(
                "a running cambot daemon owns this database's group sessions ({lock} is \
                 locked); stop it before changing a session"
            ),
        }
    }
}

/// One write's hold on a [`SharedMessageLock`]; the last one dropped unlocks the file.
#[derive(Debug)]
pub(crate) struct SharedMessageGuard {
    lock: Arc<SharedMessageLock>,
}

impl SharedMessageLock {
    pub(crate) fn new(db: &Path) -> Self {
        Self {
            path: journal::lock_path(db),
            state: Mutex::new(Shared::default()),
        }
    }

    /// Holds the shared lock for one write of `rows`; fails when a daemon owns the journal.
    pub(crate) fn acquire(self: &Arc<Self>, rows: DaemonRows) -> Result<SharedMessageGuard> {
        let mut state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
        if state.writers == 0 {
            let file = match state.file.take() {
                Some(file) => file,
                None => std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&self.path)
                    .map_err(|e| journal::io_error("opening", &self.path, &e))?,
            };
            let locked = file.try_lock_shared();
            state.file = Some(file);
            match locked {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Journal(rows.refusal(&self.path)));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(journal::io_error("locking", &self.path, &e));
                }
            }
        }
        state.writers += 1;
        Ok(SharedMessageGuard {
            lock: Arc::clone(self),
        })
    }
}

impl Drop for SharedMessageGuard {
    fn drop(&mut self) {
        let Ok(mut state) = self.lock.state.lock() else {
            return;
        };
        state.writers = state.writers.saturating_sub(1);
        if state.writers == 0
            && let Some(file) = &state.file
            && let Err(e) = file.unlock()
        {
            tracing::warn!(error = %e, "unlocking the ingest journal's lock failed");
        }
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
