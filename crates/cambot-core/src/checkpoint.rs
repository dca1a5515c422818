//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, on the
//! writer's connection and under its lock: every write queued behind it waits while thousands of
//! pages are copied and the database file is synced (measured: a ~70 ms stall every ~4,000 WAL
//! pages in the scheduler bench). Here a dedicated thread does a `PASSIVE` checkpoint shortly
//! after writes happen, which runs beside the writer instead of in front of it. While it waits
//! for writes to accumulate it syncs the WAL file every few milliseconds ([`sync_wal`] says
//! why). When nothing is written the thread sleeps on its channel: an idle daemon does no
//! checkpoint work at all.
//!
//! The writer connection keeps SQLite's own automatic checkpoint as a backstop at a much larger
//! threshold ([`BACKSTOP_PAGES`]), so the WAL stays bounded even if this thread falls behind; in
//! the store that owns the ingest journal, [`crate::backstop`] replaces it with one that syncs
//! the journal first.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::OpenFlags;

use crate::error::Result;
use crate::error::StoreError;
use crate::ingest::Durability;

/// WAL pages after which the writer connection checkpoints by itself. In bursts the background
/// thread keeps the WAL far below this; under writes that never pause it is this checkpoint that
/// lets the WAL start over, because SQLite does that only once every frame is copied, which a
/// PASSIVE checkpoint beside a busy writer never achieves.
pub(crate) const BACKSTOP_PAGES: u32 = 16_000;
/// How long the thread lets writes accumulate before a checkpoint: one checkpoint per burst
/// instead of one per commit.
const COALESCE: Duration = Duration::from_millis(100);

/// Handle to the checkpoint thread. The thread ends when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    poke: mpsc::SyncSender<()>,
    /// The ingest journal, once its owner has started it.
    journal: Arc<OnceLock<Arc<Durability>>>,
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // One pending poke is enough: the checkpoint after it covers every earlier write.
        let (poke, pokes) = mpsc::sync_channel(1);
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let journal = Arc::new(OnceLock::new());
        let watched = Arc::clone(&journal);
        std::thread::Builder::new()
            .name("cambot-dbcheckpoint".into())
            .spawn(move || checkpoint_loop(&conn, &wal, &pokes, &watched))
            .map_err(|e| {
                StoreError::Invalid(format!("cannot start the database checkpoint thread: {e}"))
            })?;
        Ok(Self { poke, journal })
    }

    /// From now on the journal is synced before the WAL, and its sealed segments are emptied
    /// once the WAL holding their messages is synced.
    pub(crate) fn watch_journal(&self, durability: Arc<Durability>) {
        let _ = self.journal.set(durability);
    }

    /// The journal being watched, if any.
    #[cfg(test)]
    pub(crate) fn journal(&self) -> Option<Arc<Durability>> {
        self.journal.get().cloned()
    }

    /// Something was written: schedule a checkpoint. Never blocks.
    pub(crate) fn poke(&self) {
        let _ = self.poke.try_send(());
    }
}

/// While writes go on, how often the thread syncs the WAL file.
const SYNC_EVERY: Duration = Duration::from_millis(5);

/// Flushes the WAL file's dirty pages to disk. Every fsync of the WAL (SQLite's, before a
/// checkpoint copies frames; and the writer's own, when a commit starts the WAL over) then finds
/// only a few milliseconds of writes left to flush, instead of everything since the last
/// checkpoint: the writer was measured waiting up to 150 ms in such an fsync. It costs no extra
/// disk writes (each frame is written back once either way) and only adds durability.
fn sync_wal(path: &Path, wal: &mut Option<std::fs::File>) {
    // The file may not exist yet; a failed sync drops the handle and the next round reopens it.
    if wal.is_none() {
        *wal = std::fs::File::open(path).ok();
    }
    if let Some(file) = wal
        && let Err(e) = file.sync_data()
    {
        tracing::debug!(error = %e, "syncing the WAL file failed");
        *wal = None;
    }
}

/// Syncs the journal (if any), then the WAL; then recycles what the synced WAL made redundant.
fn sync_all(wal_path: &Path, wal: &mut Option<std::fs::File>, journal: &OnceLock<Arc<Durability>>) {
    let journal = journal.get();
    let moved = journal.map(|j| j.sync_journal());
    sync_wal(wal_path, wal);
    if let (Some(journal), Some(moved), Some(_)) = (journal, moved, wal.as_ref()) {
        journal.wal_synced(moved);
    }
}

fn checkpoint_loop(
    conn: &Connection,
    wal_path: &Path,
    pokes: &mpsc::Receiver<()>,
    journal: &OnceLock<Arc<Durability>>,
) {
    let mut wal = None;
    let mut lowered = false;
    while pokes.recv().is_ok() {
        // Beside the ingest journal no message waits for this thread (see `crate::priority`).
        if !lowered && journal.get().is_some() {
            crate::priority::lower_this_thread();
            lowered = true;
        }
        let checkpoint_at = Instant::now() + COALESCE;
        while Instant::now() < checkpoint_at {
            std::thread::sleep(SYNC_EVERY);
            sync_all(wal_path, &mut wal, journal);
        }
        // Writes during the pause are covered by this checkpoint.
        let _ = pokes.try_recv();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "WAL checkpoint");
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying after the next write")
            }
        }
    }
}
