//! Group commit for the hot write paths (storing a message, moving a cursor, committing a reply,
//! a chat's metadata, a group's session).
//!
//! One dedicated writer thread owns the commit loop: it takes every queued operation, runs them
//! in ONE transaction (a failing one is retried alone so it fails only its caller),
//! commits, and answers each caller. Async callers await the answer without blocking a runtime
//! thread; sync callers block on a plain channel. Under load the commit cost (WAL frames, locks,
//! checkpoints) is shared by every write queued meanwhile; alone, a write is one transaction.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc;

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::cursors::advance_cursor_in;
use crate::cursors::insert_outbox;
use crate::error::Result;
use crate::error::StoreError;
use crate::message_writer::MessageWriter;
use crate::messages::upsert_chat;
use crate::sessions::upsert_session;

/// Most operations committed together.
const MAX_BATCH: usize = 1024;
/// Operations waiting for the writer before callers are pushed back.
const QUEUE_CAPACITY: usize = 8192;

/// A batched write. Every write the router makes per message or per run is one of these, so
/// none of them takes the connection's lock on a runtime thread (where it would wait out a
/// checkpoint) or pays a transaction of its own.
#[derive(Debug)]
pub(crate) enum WriteOp {
    StoreMessage(InboundMessage),
    ChatMetadata(ChatMetadata),
    SetSession {
        tenant: TenantId,
        folder: GroupFolder,
        session_id: String,
    },
    AdvanceCursor {
        tenant: TenantId,
        chat_jid: ChatJid,
        seq: i64,
    },
    CommitReply {
        tenant: TenantId,
        chat_jid: ChatJid,
        text: String,
        origin: String,
        advance_to: Option<i64>,
    },
}

/// What a committed operation reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// The message seq, the outbox id, or the cursor's new seq.
    pub(crate) value: i64,
    /// For a newly stored message: the seq of the message this writer stored just before it in
    /// the same chat (`None` when unknown, or when the message was a repeated delivery).
    pub(crate) previous_in_chat: Option<i64>,
}

impl Written {
    fn value(value: i64) -> Self {
        Self {
            value,
            previous_in_chat: None,
        }
    }
}

/// An operation's outcome, with the operation itself handed back, so the router keeps the
/// message it stored instead of storing a copy.
struct Completed {
    result: Result<Written>,
    op: WriteOp,
}

enum Reply {
    Sync(mpsc::SyncSender<Completed>),
    Async(tokio::sync::oneshot::Sender<Completed>),
    /// Nobody waits: a failure is logged.
    Detached,
}

impl Reply {
    fn send(self, result: Result<Written>, op: WriteOp) {
        let done = Completed { result, op };
        // A caller that gave up waiting is fine to ignore.
        match self {
            Self::Sync(tx) => {
                let _ = tx.send(done);
            }
            Self::Async(tx) => {
                let _ = tx.send(done);
            }
            Self::Detached => {
                if let Err(e) = done.result {
                    tracing::error!(error = %e, op = ?done.op, "a queued write failed");
                }
            }
        }
    }
}

type Job = (WriteOp, Reply);

/// A queued write whose commit nobody awaits yet (see [`Writer::submit_pending`]). The writer
/// commits in queue order, so a later write of the same caller commits after it.
pub(crate) struct PendingWrite(tokio::sync::oneshot::Receiver<Completed>);

impl PendingWrite {
    /// The write's outcome once it has committed or failed; `None` while it is queued.
    pub(crate) fn try_outcome(&mut self) -> Option<Result<()>> {
        match self.0.try_recv() {
            Ok(done) => Some(done.result.map(|_| ())),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => None,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                Some(Err(StoreError::WriterGone))
            }
        }
    }

    /// Waits for the write's outcome.
    pub(crate) async fn outcome(self) -> Result<()> {
        let done = self.0.await.map_err(|_| StoreError::WriterGone)?;
        done.result.map(|_| ())
    }
}

/// Handle to the writer thread. The thread ends when the last handle is dropped.
pub(crate) struct Writer {
    /// A tokio channel although the writer is a plain thread: when the queue is full, async
    /// callers wait for room without holding a core.
    tx: tokio::sync::mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; it ends when the last handle is dropped.
    pub(crate) fn spawn(conn: Arc<Mutex<Connection>>) -> Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("cambot-dbwriter".into())
            .spawn(move || writer_loop(&conn, rx))
            .map_err(StoreError::WriterThread)?;
        Ok(Self { tx })
    }

    /// Queues `op` and blocks until it is committed. For sync callers outside async code.
    pub(crate) fn submit_blocking(&self, op: WriteOp) -> Result<Written> {
        self.submit_blocking_returning(op)?.0
    }

    /// [`Writer::submit_blocking`], handing the operation back with its outcome. `Err` only when
    /// the writer thread is gone.
    pub(crate) fn submit_blocking_returning(
        &self,
        op: WriteOp,
    ) -> Result<(Result<Written>, WriteOp)> {
        let (tx, rx) = mpsc::sync_channel(1);
        queue_blocking(&self.tx, (op, Reply::Sync(tx)))?;
        let done = rx.recv().map_err(|_| StoreError::WriterGone)?;
        Ok((done.result, done.op))
    }

    /// Queues `op` and waits (asynchronously) until it is committed.
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<Written> {
        self.submit_returning(op).await.map(|(written, _)| written)
    }

    /// Queues `op` without waiting for its commit (it commits with the writer's next batch; a
    /// failure is logged). Waits only while the queue is full.
    pub(crate) async fn submit_detached(&self, op: WriteOp) -> Result<()> {
        send_from_async(&self.tx, (op, Reply::Detached)).await
    }

    /// Queues `op` and returns at once; the [`PendingWrite`] tells when it has committed.
    pub(crate) async fn submit_pending(&self, op: WriteOp) -> Result<PendingWrite> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        send_from_async(&self.tx, (op, Reply::Async(tx))).await?;
        Ok(PendingWrite(rx))
    }

    /// [`Writer::submit`], handing the committed operation back to the caller.
    pub(crate) async fn submit_returning(&self, op: WriteOp) -> Result<(Written, WriteOp)> {
        let PendingWrite(rx) = self.submit_pending(op).await?;
        let done = rx.await.map_err(|_| StoreError::WriterGone)?;
        done.result.map(|written| (written, done.op))
    }
}

/// Queues `item` from async code, waiting for room. `WriterGone` when the receiving thread has
/// ended.
async fn send_from_async<T>(tx: &tokio::sync::mpsc::Sender<T>, item: T) -> Result<()> {
    tx.send(item).await.map_err(|_| StoreError::WriterGone)
}

/// Queues `item` from sync code, which may run on a runtime's thread (where tokio's
/// `blocking_send` panics): waits while the queue is full, which only a stalled receiving
/// thread causes.
pub(crate) fn queue_blocking<T>(tx: &tokio::sync::mpsc::Sender<T>, item: T) -> Result<()> {
    let mut item = item;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                item = back;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(StoreError::WriterGone);
            }
        }
    }
}

fn writer_loop(conn: &Mutex<Connection>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    let mut messages = MessageWriter::default();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match crate::db::lock(conn) {
            Ok(conn) => commit_batch(&conn, batch, &mut messages),
            Err(e) => {
                let reason = e.to_string();
                for (op, reply) in batch {
                    reply.send(Err(StoreError::BatchCommit(reason.clone())), op);
                }
            }
        }
    }
}

fn run_op(
    conn: &Connection,
    op: &WriteOp,
    messages: &mut MessageWriter,
    now: &str,
) -> Result<Written> {
    match op {
        WriteOp::StoreMessage(msg) => messages.store(conn, msg),
        WriteOp::ChatMetadata(meta) => {
            upsert_chat(conn, meta)?;
            Ok(Written::value(0))
        }
        WriteOp::SetSession {
            tenant,
            folder,
            session_id,
        } => {
            upsert_session(conn, tenant, folder, session_id, now)?;
            Ok(Written::value(0))
        }
        WriteOp::AdvanceCursor {
            tenant,
            chat_jid,
            seq,
        } => {
            advance_cursor_in(conn, tenant, chat_jid, *seq, now)?;
            Ok(Written::value(*seq))
        }
        WriteOp::CommitReply {
            tenant,
            chat_jid,
            text,
            origin,
            advance_to,
        } => {
            let id = insert_outbox(conn, tenant, chat_jid, text, origin)?;
            if let Some(seq) = advance_to {
                advance_cursor_in(conn, tenant, chat_jid, *seq, now)?;
            }
            Ok(Written::value(id))
        }
    }
}

/// Runs `body` in one write transaction.
fn in_transaction<T>(
    conn: &Connection,
    messages: &mut MessageWriter,
    body: impl FnOnce(&Connection, &mut MessageWriter) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let outcome = body(conn, messages).and_then(|v| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(v)
    });
    match outcome {
        Ok(v) => {
            messages.committed();
            Ok(v)
        }
        Err(e) => {
            messages.rolled_back();
            if !conn.is_autocommit()
                && let Err(rollback) = conn
                    .prepare_cached("ROLLBACK")
                    .and_then(|mut s| s.execute([]))
            {
                tracing::error!(error = %rollback, "rolling back a batch of writes failed");
            }
            Err(e)
        }
    }
}

/// Why a batch did not commit as a whole.
enum BatchFailure {
    /// One operation failed: the others may succeed alone.
    Operation,
    /// The transaction itself failed (BEGIN or COMMIT).
    Commit(StoreError),
}

fn commit_batch(conn: &Connection, batch: Vec<Job>, messages: &mut MessageWriter) {
    // Fast path: the whole batch in one transaction. Savepoints per operation would cost two
    // more statements each; failures are rare, so isolate them only when one happens.
    let mut failed_op = false;
    // One timestamp per batch: the operations commit together.
    let now = crate::time::now_rfc3339();
    let all = in_transaction(conn, messages, |conn, messages| {
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in &batch {
            match run_op(conn, op, messages, &now) {
                Ok(v) => results.push(v),
                Err(e) => {
                    failed_op = true;
                    return Err(e);
                }
            }
        }
        Ok(results)
    })
    .map_err(|e| {
        if failed_op {
            BatchFailure::Operation
        } else {
            BatchFailure::Commit(e)
        }
    });
    match all {
        Ok(results) => {
            for ((op, reply), r) in batch.into_iter().zip(results) {
                reply.send(Ok(r), op);
            }
        }
        Err(BatchFailure::Operation) => {
            // Nothing was committed: run each alone, so only the failing one reports an error.
            // Every operation is safe to run again after a rollback.
            for (op, reply) in batch {
                let result = in_transaction(conn, messages, |conn, messages| {
                    run_op(conn, &op, messages, &now)
                });
                reply.send(result, op);
            }
        }
        Err(BatchFailure::Commit(e)) => {
            let reason = e.to_string();
            tracing::error!(error = %reason, operations = batch.len(), "committing a batch of writes failed");
            for (op, reply) in batch {
                reply.send(Err(StoreError::BatchCommit(reason.clone())), op);
            }
        }
    }
}
