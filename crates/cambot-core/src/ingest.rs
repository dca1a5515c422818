//! The ingest path of the daemon's store: a message is acknowledged once it is in the journal
//! (see [`crate::journal`]), and a mover thread puts journaled messages into SQLite in batches.
//!
//! Why: a message stored through SQLite waits for its transaction, and under sustained writes
//! SQLite's WAL can only start over inside a commit that first copies every frame into the
//! database file and fsyncs it. On the development VM's disk that pause measured 20–100 ms, and
//! every message arriving meanwhile waited it out. With the journal, that pause stalls only the
//! mover (docs/ingest-journal.md has the measurements).
//!
//! Threads (each ends when what feeds it closes; the last one out releases the journal lock):
//! - `cambot-ingest` decides repeat-or-new for each message (the batch, then the [`Overlay`] of
//!   unmoved messages, then the chat's id filter, reading SQLite only when the filter says
//!   "maybe"; see [`crate::known_ids`]), assigns seqs, appends one batch of records with one
//!   `write()`, publishes the messages in the overlay, answers the callers, and hands the batch
//!   to the mover;
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
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OpenFlags;
use rusqlite::OptionalExtension;

use crate::batch::WriteOp;
use crate::batch::Writer;
use crate::error::Result;
use crate::error::StoreError;
use crate::journal;
use crate::journal::Record;
use crate::journal_lock::lock_exclusive;
use crate::known_ids::KnownIds;
use crate::messages::Arrival;
use crate::messages::StoredMessage;
use crate::mover::Mover;
use crate::overlay::Overlay;
use crate::overlay::Version;

/// Most messages taken into one journal write.
const INGEST_BATCH: usize = 1024;
/// Messages waiting for the ingest thread before callers are pushed back.
const INGEST_QUEUE: usize = 8192;
/// Journal batches waiting for the mover before the ingest thread is pushed back (SQLite fell
/// behind for longer than a stall).
const MOVER_QUEUE: usize = 4_096;
/// Most records one move commits: small enough that a move never holds the writer (and a core)
/// for long.
pub(crate) const MOVE_MAX: usize = 500;
/// How long the mover lets records accumulate before it commits them.
pub(crate) const MOVE_EVERY: Duration = Duration::from_millis(10);
/// A segment past this size is sealed once the other one is free.
const SEGMENT_BYTES: u64 = 8 << 20;

enum Reply {
    Sync(mpsc::SyncSender<Result<Arrival>>),
    Async(tokio::sync::oneshot::Sender<Result<Arrival>>),
}

impl Reply {
    fn send(self, result: Result<Arrival>) {
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

enum Job {
    Store(InboundMessage, Reply),
    /// Versions the mover has committed, to drop from the overlay (see [`MovedNotices`]).
    Moved(Vec<Version>),
    /// Stop taking messages: the mover finishes, then the journal lock is released.
    Close,
}

/// Handle to the ingest thread, owned by the daemon's [`crate::Store`].
pub(crate) struct Ingest {
    /// A tokio channel even though the ingest thread is a plain thread: a sender wakes the
    /// sleeping thread without a lock. `std`'s channel woke it with a futex call made while
    /// holding the channel's waker lock, which every other sender and the ingest thread (going
    /// back to sleep) then waited for: in a slow run of the router bench, 286 ms in all and up
    /// to 8.5 ms at once.
    tx: tokio::sync::mpsc::Sender<Job>,
    pub(crate) overlay: Arc<Overlay>,
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
    segments: Mutex<Segments>,
}

#[derive(Debug)]
struct Segments {
    active: usize,
    /// The inactive segment's last record, while it waits to be emptied.
    sealed_through: Option<u64>,
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
        // thread runs at a lower priority than the ingest thread that takes the lock to seal.
        // The ingest thread leaves the inactive segment alone while `sealed_through` is set.
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
        let (to_mover, mover_rx) = mpsc::sync_channel::<Vec<Version>>(MOVER_QUEUE);
        let mover = Mover {
            rx: mover_rx,
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
        let ingest = IngestLoop {
            rx,
            files,
            paths,
            active: 0,
            active_len: journal::HEADER_LEN,
            generation: generation + 1,
            reader,
            overlay: Arc::clone(&overlay),
            to_mover,
            durability: Arc::clone(&durability),
            next_seq,
            next_record: 1,
            tails: HashMap::new(),
            known,
            buf: Vec::new(),
        };
        std::thread::Builder::new()
            .name("cambot-ingest".into())
            .spawn(move || ingest.run())
            .map_err(|e| StoreError::Journal(format!("cannot start the ingest thread: {e}")))?;
        Ok((Self { tx, overlay }, durability))
    }

    /// Journals `msg` and waits (asynchronously) for its acknowledgement.
    pub(crate) async fn store(&self, msg: InboundMessage) -> Result<Arrival> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Store(msg, Reply::Async(tx)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// [`Ingest::store`] for sync callers outside async code.
    pub(crate) fn store_blocking(&self, msg: InboundMessage) -> Result<Arrival> {
        let (tx, rx) = mpsc::sync_channel(1);
        queue_blocking(&self.tx, Job::Store(msg, Reply::Sync(tx)))?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Stops taking messages (later stores fail); the mover commits what it holds and then
    /// releases the journal's lock, so that another store may own it. Never blocks for long:
    /// it only queues the request.
    pub(crate) fn close(&self) {
        // Gone already: nothing to close.
        let _ = queue_blocking(&self.tx, Job::Close);
    }
}

/// How the mover hands committed versions back to the ingest thread, which drops them from the
/// overlay: the overlay's lock is then only ever held by threads at the daemon's priority. The
/// mover runs lowered (`crate::priority`); preempted while holding that lock, it stalled the
/// ingest thread and with it every acknowledgement. Router bench, paced phase: the ingest
/// thread waited 0.1–1 ms for the lock 43–54 times and 1–5 ms 1–3 times per run, and up to
/// 7 times over 5 ms with 250 ms moves; since, 0–1 waits over 0.1 ms (docs/benchmarks.md,
/// twelfth pass).
///
/// Weak, so that the mover does not keep the ingest thread's queue open.
pub(crate) struct MovedNotices(tokio::sync::mpsc::WeakSender<Job>);

impl MovedNotices {
    /// Queues `moved` for the ingest thread without waiting; hands it back when the queue is
    /// full or the ingest thread is gone (the caller then drops them from the overlay itself).
    /// Never waiting rules out a deadlock with the ingest thread, which may itself be waiting
    /// for room in the mover's queue.
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

/// Queues `job` from sync code, which may run on a runtime's thread (where tokio's
/// `blocking_send` panics): waits while the queue is full, which only a stalled ingest thread
/// causes.
fn queue_blocking(tx: &tokio::sync::mpsc::Sender<Job>, job: Job) -> Result<()> {
    let mut job = job;
    loop {
        match tx.try_send(job) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                job = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(StoreError::WriterGone);
            }
        }
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

struct IngestLoop {
    rx: tokio::sync::mpsc::Receiver<Job>,
    files: [File; 2],
    paths: [std::path::PathBuf; 2],
    /// The segment appended to; only this thread changes it (mirrored in `Segments::active`).
    active: usize,
    active_len: u64,
    generation: u64,
    reader: Connection,
    overlay: Arc<Overlay>,
    to_mover: mpsc::SyncSender<Vec<Version>>,
    durability: Arc<Durability>,
    next_seq: i64,
    next_record: u64,
    /// Per chat, the seq of its newest message (what `previous_in_chat` reports).
    tails: HashMap<TenantId, HashMap<ChatJid, i64>>,
    known: KnownIds,
    buf: Vec<u8>,
}

/// Versions dropped from the overlay per round of the ingest thread when no message waits.
const MOVED_SLICE: usize = 64;

/// Drops up to `most` of the oldest committed versions from the overlay.
fn drop_moved(overlay: &Overlay, moved: &mut VecDeque<Version>, most: usize) {
    let slice: Vec<Version> = moved.drain(..most.min(moved.len())).collect();
    overlay.remove_moved(&slice);
}

/// One message of a batch, decided.
struct Decided {
    version: Version,
    /// `None` for a repeated delivery.
    new_in_chat: Option<Option<i64>>,
    reply: Reply,
}

impl IngestLoop {
    fn run(mut self) {
        let mut batch = Vec::new();
        // Committed versions still to drop from the overlay. Dropped a slice at a time, so that
        // a large move never holds up the messages behind it.
        let mut moved: VecDeque<Version> = VecDeque::new();
        let mut closing = false;
        while !closing {
            let first = if moved.is_empty() {
                match self.rx.blocking_recv() {
                    Some(job) => job,
                    None => break,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(job) => job,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        drop_moved(&self.overlay, &mut moved, MOVED_SLICE);
                        continue;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
                }
            };
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Store(msg, reply) => batch.push((msg, reply)),
                    Job::Moved(versions) => moved.extend(versions),
                    Job::Close => {
                        closing = true;
                        break;
                    }
                }
                if batch.len() < INGEST_BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            let stored = batch.len();
            if !batch.is_empty() {
                self.ingest(std::mem::take(&mut batch));
            }
            // Also while messages keep coming, at twice their rate, so the overlay cannot grow
            // without bound.
            drop_moved(&self.overlay, &mut moved, MOVED_SLICE.max(2 * stored));
        }
        // Dropping the receiver fails later stores; dropping `to_mover` lets the mover finish.
    }

    fn ingest(&mut self, batch: Vec<(InboundMessage, Reply)>) {
        self.buf.clear();
        let mut decided: Vec<Decided> = Vec::with_capacity(batch.len());
        let unmoved = self.overlay.find_all(
            batch
                .iter()
                .map(|(m, _)| (&m.tenant, &m.chat_jid, m.id.as_str())),
        );
        for ((msg, reply), unmoved) in batch.into_iter().zip(unmoved) {
            // A repeat within this batch, then of an unmoved message, then of a stored one.
            let repeat_of = decided
                .iter()
                .rev()
                .map(|d| &d.version.message)
                .find(|m| m.id == msg.id && m.chat_jid == msg.chat_jid && m.tenant == msg.tenant)
                .map(|m| m.seq)
                .or(unmoved);
            let repeat_of = match repeat_of {
                Some(seq) => Some(seq),
                None => match self.stored_seq(&msg) {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::error!(error = %e, chat = %msg.chat_jid, "checking for a repeated delivery failed");
                        reply.send(Err(e));
                        continue;
                    }
                },
            };
            let (seq, new_in_chat) = match repeat_of {
                Some(seq) => (seq, None),
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.known.insert(&msg.tenant, &msg.chat_jid, &msg.id);
                    // Set before the write: if it fails, the tail names a seq no reader has
                    // seen, which only makes the next reader read back.
                    (seq, Some(self.set_tail(&msg, seq)))
                }
            };
            journal::encode(&mut self.buf, seq, &msg);
            let record = self.next_record;
            self.next_record += 1;
            decided.push(Decided {
                version: Version {
                    record,
                    message: Arc::new(StoredMessage::stored(msg, seq)),
                },
                new_in_chat,
                reply,
            });
        }
        if decided.is_empty() {
            return;
        }
        let active = self.active;
        if let Err(e) = self.files[active].write_all(&self.buf) {
            let err = journal::io_error("appending to", &self.paths[active], &e);
            tracing::error!(error = %err, messages = decided.len(), "journaling messages failed");
            // A partial write is a torn tail for replay; truncate it so later records follow
            // whole ones.
            if let Err(e) = self.files[active].set_len(self.active_len) {
                tracing::error!(error = %e, "cutting a partial journal write failed");
            }
            for d in decided {
                d.reply.send(Err(StoreError::Journal(err.to_string())));
            }
            return;
        }
        self.active_len += self.buf.len() as u64;
        self.overlay
            .insert_all(decided.iter().map(|d| d.version.clone()));
        // One hand-over per batch: the mover is not woken per message.
        let versions = decided.iter().map(|d| d.version.clone()).collect();
        let mover_gone = self.to_mover.send(versions).is_err();
        for d in decided {
            if mover_gone {
                d.reply.send(Err(StoreError::WriterGone));
                continue;
            }
            d.reply.send(Ok(Arrival {
                message: StoredMessage::clone(&d.version.message),
                previous_in_chat: d.new_in_chat.flatten(),
            }));
        }
        self.maybe_switch_segment();
    }

    /// Records `seq` as the chat's newest message; returns the one before it, if known.
    fn set_tail(&mut self, msg: &InboundMessage, seq: i64) -> Option<i64> {
        let tails = match self.tails.get_mut(&msg.tenant) {
            Some(t) => t,
            None => self.tails.entry(msg.tenant.clone()).or_default(),
        };
        match tails.get_mut(&msg.chat_jid) {
            Some(tail) => Some(std::mem::replace(tail, seq)),
            None => {
                tails.insert(msg.chat_jid.clone(), seq);
                None
            }
        }
    }

    /// The seq the database has for this message's id, if it has it (read only when the chat's
    /// filter says it may).
    fn stored_seq(&mut self, msg: &InboundMessage) -> Result<Option<i64>> {
        if !self
            .known
            .may_contain(&self.reader, &msg.tenant, &msg.chat_jid, &msg.id)?
        {
            return Ok(None);
        }
        Ok(self
            .reader
            .prepare_cached(
                "SELECT seq FROM messages WHERE tenant = ?1 AND chat_jid = ?2 AND id = ?3",
            )?
            .query_row(
                (msg.tenant.as_str(), msg.chat_jid.as_str(), msg.id.as_str()),
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Seals the active segment once it is large and the other one has been emptied.
    fn maybe_switch_segment(&mut self) {
        if self.active_len < SEGMENT_BYTES {
            return;
        }
        let Ok(mut segments) = self.durability.segments.lock() else {
            return;
        };
        if segments.sealed_through.is_some() {
            return;
        }
        let next = 1 - segments.active;
        let generation = self.generation + 1;
        if let Err(e) = journal::start_segment(&mut self.files[next], &self.paths[next], generation)
        {
            tracing::warn!(error = %e, "switching ingest journal segments failed; appending on");
            return;
        }
        segments.sealed_through = Some(self.next_record - 1);
        segments.active = next;
        self.active = next;
        self.generation = generation;
        self.active_len = journal::HEADER_LEN;
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
