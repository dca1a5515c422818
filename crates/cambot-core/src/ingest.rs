//! The ingest path of the daemon's store: a message is acknowledged once it is in the journal
//! (see [`crate::journal`]), and a mover thread puts journaled messages into SQLite in batches.
//!
//! Why: a message stored through SQLite waits for its transaction, and under sustained writes
//! SQLite's WAL can only start over inside a commit that first copies every frame into the
//! database file and fsyncs it. On the development VM's disk that pause measured 20–100 ms, and
//! every message arriving meanwhile waited it out. With the journal, that pause stalls only the
//! mover (docs/ingest-journal.md has the measurements).
//!
//! Who does what (the mover ends when the ingest state closes or goes, and releases the
//! journal lock last):
//! - the **ingest state** ([`crate::ingest_loop`]) decides repeat-or-new for each message (the
//!   batch, then the [`Overlay`] of unmoved messages, then the chat's id filter, reading SQLite
//!   only when the filter says "maybe"; see [`crate::known_ids`]), assigns seqs, appends one
//!   batch of records with one `write()`, publishes the messages in the overlay, and hands the
//!   batch to the mover. It has no thread of its own: each caller queues its message and works
//!   the state if it is free, taking every queued message with its own ([`Shared`]);
//! - `cambot-ingest` works the state every [`IDLE_ROUND`] as a caller would: it drops what the
//!   mover has committed from the overlay while no message comes, and takes what was held back
//!   while the mover was too far behind;
//! - `cambot-mover` ([`crate::mover`]) wakes every [`MOVE_EVERY`] and commits the chats that
//!   are due (each chat's messages wait up to [`crate::held::MOVE_HOLD`], so that a move
//!   carries many messages of few chats, see [`crate::held`]) through the batch writer, at most
//!   [`MOVE_MAX`] messages per transaction, then hands them back for the overlay to drop;
//! - the checkpoint thread syncs the journal before the WAL, and empties a sealed segment once
//!   every record in it is moved and the WAL holding them is synced ([`Durability`]).
//!
//! Seqs: this store is the only one that writes messages while it holds the journal's lock
//! (other stores on the same file refuse to, see [`crate::journal_lock`]), so it counts seqs in
//! memory from the largest one in the database.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicIsize;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OpenFlags;

use crate::batch::WriteOp;
use crate::batch::Writer;
use crate::batch::queue_blocking;
use crate::error::Result;
use crate::error::StoreError;
use crate::ingest_loop::IngestLoop;
use crate::journal;
use crate::journal::Record;
use crate::journal_lock::lock_exclusive;
use crate::known_ids::KnownIds;
use crate::messages::Arrival;
use crate::messages::StoredMessage;
use crate::mover::Mover;
use crate::overlay::Overlay;
use crate::overlay::Version;

/// Messages waiting for the ingest state before callers are pushed back.
const INGEST_QUEUE: usize = 8192;
/// Most records one move commits: small enough that a move never holds the writer (and a core)
/// for long.
pub(crate) const MOVE_MAX: usize = 500;
/// How long the mover lets records accumulate before it commits them.
pub(crate) const MOVE_EVERY: Duration = Duration::from_millis(10);
/// How often the ingest thread works the queue itself: for the moved versions the mover hands
/// back while no message comes, and for messages held back while the mover was behind.
const IDLE_ROUND: Duration = Duration::from_millis(10);
/// Most drains one caller makes for others before it goes back to its own work.
const COMBINE_ROUNDS: usize = 4;

pub(crate) enum Reply {
    Sync(mpsc::SyncSender<Result<Arrival>>),
    Async(tokio::sync::oneshot::Sender<Result<Arrival>>),
}

impl Reply {
    pub(crate) fn send(self, result: Result<Arrival>) {
        // A caller that gave up waiting is fine to ignore.
        match self {
            Self::Sync(tx) => {
                let _ = tx.send(result);
            }
            Self::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

pub(crate) enum Job {
    Store(InboundMessage, Reply),
    /// Versions the mover has committed, to drop from the overlay (see [`MovedNotices`]).
    Moved(Vec<Version>),
    /// Stop taking messages: the mover finishes, then the journal lock is released.
    Close,
}

/// Handle to the ingest state, owned by the daemon's [`crate::Store`].
pub(crate) struct Ingest {
    /// Jobs for whoever works the ingest state next. A tokio channel: senders never take a
    /// lock, and async callers wait for room without blocking a thread.
    tx: tokio::sync::mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

/// The ingest state and the count that tells whether it has work: worked by whichever caller
/// finds it free (flat combining), not by a thread of its own.
///
/// Why: with a thread of its own, every message crossed to it and back (two wake-ups), and
/// each acknowledgement waited for that one thread to be scheduled. On a VM whose cores are
/// taken away for milliseconds at a time (steal), a single thread caught on a stalled core
/// held up every acknowledgement behind it (docs/benchmarks.md, fourteenth pass).
///
/// The work runs on the caller's thread, a runtime worker for async callers. It is short and
/// never waits for SQLite's writer: one `write()` to the journal per batch, and a read through
/// the state's own connection only when a chat's id filter says "maybe" (a WAL reader does not
/// wait for the writer).
pub(crate) struct Shared {
    state: Mutex<IngestLoop>,
    /// Store and close jobs queued and not taken yet. Raised only after the job is in the queue,
    /// so whoever sees it above zero will find the job there (or find it taken).
    queued: AtomicIsize,
    overlay: Arc<Overlay>,
    /// Tests switch the ingest thread's rounds off, to show that callers alone leave no job
    /// behind.
    idle_rounds: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Works off the queue unless someone else is at it.
    ///
    /// No job is left queued while nobody works: a caller counts its job in [`Shared::queued`]
    /// only after queueing it and then tries the state; whoever holds the state takes its jobs
    /// off the count before letting go, and looks at the count again afterwards. Only a drain
    /// held back by the mover's backlog, or a caller that has worked [`COMBINE_ROUNDS`] rounds,
    /// leaves jobs behind: the ingest thread takes them within [`IDLE_ROUND`].
    fn combine(&self) {
        self.work(false);
    }

    /// The ingest thread's round: like [`Shared::combine`], but waits for the state (it is in
    /// no hurry), and goes on until every committed version has left the overlay (a slice per
    /// drain, so that a caller never waits long for the state).
    fn idle_round(&self) {
        while self.work(true) > 0 {}
    }

    /// Drains until the queue is empty; returns how many committed versions are still to leave
    /// the overlay.
    fn work(&self, wait: bool) -> usize {
        let mut moved_left = 0;
        let mut wait = wait;
        for _ in 0..COMBINE_ROUNDS {
            let Some(mut state) = self.take_state(wait) else {
                break;
            };
            wait = false;
            let drained = state.drain();
            self.queued
                .fetch_sub(drained.taken as isize, Ordering::SeqCst);
            drop(state);
            let held_back = drained.held_back;
            moved_left = drained.moved_left;
            drained.finish(&self.overlay);
            std::sync::atomic::fence(Ordering::SeqCst);
            if held_back || self.queued.load(Ordering::SeqCst) <= 0 {
                break;
            }
        }
        moved_left
    }

    /// The state, if free (or at all, when `wait`).
    fn take_state(&self, wait: bool) -> Option<std::sync::MutexGuard<'_, IngestLoop>> {
        let taken = if wait {
            self.state.lock()
        } else {
            match self.state.try_lock() {
                Ok(state) => Ok(state),
                Err(std::sync::TryLockError::WouldBlock) => return None,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Err(poisoned),
            }
        };
        Some(taken.unwrap_or_else(|poisoned| {
            // A drain panicked half way: what it did is unknown (a record may be in the journal
            // and not in the overlay). Take no more messages; the next start replays the
            // journal. Queued callers are still answered, with an error.
            let mut state = poisoned.into_inner();
            if !state.is_closed() {
                tracing::error!(
                    "the ingest path failed half way through a batch; no more messages are \
                     taken until a restart (the journal is replayed then)"
                );
                state.close();
            }
            state
        }))
    }

    /// Counts a job just queued, and works the queue.
    fn queued_one(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.combine();
    }
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

/// What the checkpoint thread needs to keep the journal's durability order and to recycle
/// segments: both segment files, how far the mover has committed, and the sealed segment.
#[derive(Debug)]
pub(crate) struct Durability {
    files: [File; 2],
    /// The last record number the mover has committed.
    pub(crate) moved_through: AtomicU64,
    /// Checkpoints the writer's backstop ran, each after syncing the journal
    /// ([`crate::backstop`]).
    pub(crate) backstop_checkpoints: AtomicU64,
    pub(crate) segments: Mutex<Segments>,
}

#[derive(Debug)]
pub(crate) struct Segments {
    pub(crate) active: usize,
    /// The inactive segment's last record, while it waits to be emptied.
    pub(crate) sealed_through: Option<u64>,
}

impl Durability {
    /// Syncs both segments; call before syncing the WAL, so that a cursor or reply that SQLite
    /// keeps after an OS crash never points past a message the journal lost. Returns the mover's
    /// progress at the time, for [`Durability::wal_synced`].
    pub(crate) fn sync_journal(&self) -> u64 {
        let moved = self.moved_through.load(Ordering::Acquire);
        for f in &self.files {
            if let Err(e) = f.sync_data() {
                tracing::warn!(error = %e, "syncing the ingest journal failed");
            }
        }
        moved
    }

    /// The WAL is synced, so every record up to `moved` is durable in SQLite: a sealed segment
    /// holding only such records is emptied (truncated in place, and reused by the next seal).
    pub(crate) fn wal_synced(&self, moved: u64) {
        let inactive = match self.segments.lock() {
            Ok(segments) if segments.sealed_through.is_some_and(|last| last <= moved) => {
                1 - segments.active
            }
            _ => return,
        };
        // Truncated without the lock: freeing 8 MiB of blocks can take milliseconds, and this
        // thread runs at a lower priority than the callers that take the lock to seal. The
        // ingest state leaves the inactive segment alone while `sealed_through` is set.
        if let Err(e) = self.files[inactive].set_len(0) {
            tracing::warn!(error = %e, "emptying an ingest journal segment failed");
            return;
        }
        if let Ok(mut segments) = self.segments.lock() {
            segments.sealed_through = None;
        }
    }
}

impl Ingest {
    /// Takes ownership of the journal of the database at `db`, replays what a previous owner
    /// left in it, and starts the ingest and mover threads.
    pub(crate) fn start(db: &Path, writer: Arc<Writer>) -> Result<(Self, Arc<Durability>)> {
        let lock = lock_exclusive(db)?;
        let paths = journal::segment_paths(db);
        let generation = replay(db, &paths, &writer)?;
        let mut files = [
            journal::open_segment(&paths[0])?,
            journal::open_segment(&paths[1])?,
        ];
        journal::start_segment(&mut files[0], &paths[0], generation + 1)?;
        // The other segment stays empty (free) until the first one is sealed.
        files[1]
            .set_len(0)
            .map_err(|e| journal::io_error("emptying", &paths[1], &e))?;
        let durability = Arc::new(Durability {
            files: [
                clone_file(&files[0], &paths[0])?,
                clone_file(&files[1], &paths[1])?,
            ],
            moved_through: AtomicU64::new(0),
            backstop_checkpoints: AtomicU64::new(0),
            segments: Mutex::new(Segments {
                active: 0,
                sealed_through: None,
            }),
        });
        let reader = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: db.to_owned(),
            source,
        })?;
        reader.busy_timeout(Duration::from_secs(5))?;
        let next_seq = crate::messages::last_seq(&reader)? + 1;
        let mut known = KnownIds::default();
        known.preload(&reader)?;
        let overlay = Arc::new(Overlay::with_stored(stored_through(&reader)?.into_iter()));
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(INGEST_QUEUE);
        // Unbounded: the ingest state counts what the mover has not committed (`unmoved`) and
        // stops taking messages past `MOVER_BACKLOG`, instead of blocking a caller's thread.
        let (to_mover, mover_rx) = mpsc::channel::<Vec<Version>>();
        let unmoved = Arc::new(AtomicUsize::new(0));
        let mover = Mover {
            rx: mover_rx,
            unmoved: Arc::clone(&unmoved),
            writer,
            notices: MovedNotices(tx.downgrade()),
            overlay: Arc::clone(&overlay),
            durability: Arc::clone(&durability),
            _lock: lock,
        };
        std::thread::Builder::new()
            .name("cambot-mover".into())
            .spawn(move || mover.run())
            .map_err(|e| StoreError::Journal(format!("cannot start the mover thread: {e}")))?;
        let state = IngestLoop {
            rx,
            files,
            paths,
            active: 0,
            active_len: journal::HEADER_LEN,
            generation: generation + 1,
            reader,
            overlay: Arc::clone(&overlay),
            to_mover: Some(to_mover),
            unmoved,
            durability: Arc::clone(&durability),
            next_seq,
            next_record: 1,
            tails: HashMap::new(),
            known,
            buf: Vec::new(),
            moved: VecDeque::new(),
            closed: false,
            #[cfg(test)]
            linger: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            queued: AtomicIsize::new(0),
            overlay,
            idle_rounds: std::sync::atomic::AtomicBool::new(true),
        });
        // Weak: the thread ends once the store is gone, and with it the state (whose mover
        // sender going lets the mover finish). It goes on after a close: the mover still hands
        // back its last moves, and a caller queued meanwhile is answered (with an error).
        let idle = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("cambot-ingest".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(IDLE_ROUND);
                    let Some(shared) = idle.upgrade() else { break };
                    if shared.idle_rounds.load(Ordering::Relaxed) {
                        shared.idle_round();
                    }
                }
            })
            .map_err(|e| StoreError::Journal(format!("cannot start the ingest thread: {e}")))?;
        Ok((Self { tx, shared }, durability))
    }

    /// The messages acknowledged and not yet moved, for reads.
    pub(crate) fn overlay(&self) -> &Overlay {
        &self.shared.overlay
    }

    /// Journals `msg` and waits (asynchronously) for its acknowledgement.
    pub(crate) async fn store(&self, msg: InboundMessage) -> Result<Arrival> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Store(msg, Reply::Async(tx)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        self.shared.queued_one();
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Ingest::store`] for sync callers outside async code.
    pub(crate) fn store_blocking(&self, msg: InboundMessage) -> Result<Arrival> {
        let (tx, rx) = mpsc::sync_channel(1);
        queue_blocking(&self.tx, Job::Store(msg, Reply::Sync(tx)))?;
        self.shared.queued_one();
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Stops or restarts the ingest thread's rounds.
    #[cfg(test)]
    pub(crate) fn set_idle_rounds(&self, on: bool) {
        self.shared.idle_rounds.store(on, Ordering::Relaxed);
    }

    /// Makes each drain wait this long after its last look at the queue.
    #[cfg(test)]
    pub(crate) fn set_linger(&self, linger: std::time::Duration) {
        if let Some(mut state) = self.shared.take_state(true) {
            state.linger = Some(linger);
        }
    }

    /// The mover's backlog as the ingest state sees it (tests raise it to hold messages back).
    #[cfg(test)]
    pub(crate) fn mover_backlog(&self) -> Option<Arc<AtomicUsize>> {
        self.shared
            .take_state(true)
            .map(|state| Arc::clone(&state.unmoved))
    }

    /// Stops taking messages (later stores fail); the mover commits what it holds and then
    /// releases the journal's lock, so that another store may own it. Never blocks for long:
    /// it queues the request and works the queue if nobody else is at it.
    pub(crate) fn close(&self) {
        // Gone already: nothing to close.
        if queue_blocking(&self.tx, Job::Close).is_ok() {
            self.shared.queued_one();
        }
    }
}

/// How the mover hands committed versions back to the ingest state, whose next drain drops them
/// from the overlay: the overlay's lock is then only ever held by threads at the daemon's
/// priority. The mover runs lowered (`crate::priority`); preempted while holding that lock, it
/// stalled the ingest path and with it every acknowledgement. Router bench, paced phase: the
/// ingest thread of the time waited 0.1–1 ms for the lock 43–54 times and 1–5 ms 1–3 times per
/// run, and up to 7 times over 5 ms with 250 ms moves; since, 0–1 waits over 0.1 ms
/// (docs/benchmarks.md, twelfth pass).
///
/// Weak, so that the mover does not keep the ingest state's queue open.
pub(crate) struct MovedNotices(tokio::sync::mpsc::WeakSender<Job>);

impl MovedNotices {
    /// Queues `moved` for the ingest state without waiting; hands it back when the queue is
    /// full or the store is gone (the caller then drops them from the overlay itself). The
    /// mover never waits for room: the queue fills when callers are waiting for the mover.
    pub(crate) fn send(&self, moved: Vec<Version>) -> std::result::Result<(), Vec<Version>> {
        let Some(tx) = self.0.upgrade() else {
            return Err(moved);
        };
        tx.try_send(Job::Moved(moved))
            .map_err(|e| match e.into_inner() {
                Job::Moved(back) => back,
                // What was sent comes back.
                Job::Store(..) | Job::Close => Vec::new(),
            })
    }
}

fn clone_file(file: &File, path: &Path) -> Result<File> {
    file.try_clone()
        .map_err(|e| journal::io_error("duplicating the handle of", path, &e))
}

/// Every chat's largest stored seq (one index probe per chat), for the overlay to tell when a
/// read needs SQLite at all. Every message has its chat's row (a foreign key).
fn stored_through(conn: &Connection) -> Result<Vec<(TenantId, ChatJid, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT c.tenant, c.jid,
                (SELECT MAX(seq) FROM messages m WHERE m.tenant = c.tenant AND m.chat_jid = c.jid)
         FROM chats c",
    )?;
    let mut rows = stmt.query([])?;
    let mut stored = Vec::new();
    while let Some(row) = rows.next()? {
        let Some(seq) = row.get::<_, Option<i64>>(2)? else {
            continue;
        };
        let (tenant, chat): (String, String) = (row.get(0)?, row.get(1)?);
        let corrupt = |e: cambot_protocol::IdError| StoreError::CorruptRow {
            table: "chats",
            reason: e.to_string(),
        };
        stored.push((
            TenantId::new(&tenant).map_err(corrupt)?,
            ChatJid::new(&chat).map_err(corrupt)?,
            seq,
        ));
    }
    Ok(stored)
}

/// Puts every record left in the segments into SQLite (idempotently: a record already moved is
/// written again with the same seq), makes that durable, and empties the segments. Returns the
/// largest generation seen.
fn replay(db: &Path, paths: &[std::path::PathBuf; 2], writer: &Writer) -> Result<u64> {
    let mut segments = Vec::new();
    for path in paths {
        let segment = journal::read_segment(path)?;
        if let Some(why) = &segment.torn {
            tracing::warn!(
                journal = %path.display(),
                why = %why,
                kept = segment.records.len(),
                "the ingest journal ends in a torn record (a crash during a write); replaying \
                 the records before it"
            );
        }
        segments.push(segment);
    }
    segments.sort_by_key(|s| s.generation);
    let generation = segments.iter().map(|s| s.generation).max().unwrap_or(0);
    let records: Vec<Record> = segments.into_iter().flat_map(|s| s.records).collect();
    if !records.is_empty() {
        tracing::info!(
            records = records.len(),
            "replaying the ingest journal into the database"
        );
        let mut rest = records.into_iter().peekable();
        while rest.peek().is_some() {
            let versions = rest
                .by_ref()
                .take(MOVE_MAX)
                .map(|r| Version {
                    record: 0,
                    message: Arc::new(StoredMessage::stored(r.msg, r.seq)),
                })
                .collect();
            writer.submit_blocking(WriteOp::MoveMessages(versions))?;
        }
        // The segments are about to be emptied: what they held must be durable first.
        sync_wal(db)?;
    }
    Ok(generation)
}

fn sync_wal(db: &Path) -> Result<()> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match File::open(&wal) {
        Ok(f) => f
            .sync_data()
            .map_err(|e| journal::io_error("syncing", Path::new(&wal), &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(journal::io_error("opening", Path::new(&wal), &e)),
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
