//! Group commit for the hot write paths (storing a message, moving a cursor, committing a reply).
//!
//! One dedicated writer thread owns the commit loop: it takes every queued operation, runs them
//! in ONE transaction (a failing one is retried alone so it fails only its caller),
//! commits, and answers each caller. Async callers await the answer without blocking a runtime
//! thread; sync callers block on a plain channel. Under load the commit cost (WAL frames, locks,
//! checkpoints) is shared by every write queued meanwhile; alone, a write is one transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::checkpoint::Checkpointer;
use crate::cursors::advance_cursor_in;
use crate::cursors::insert_outbox;
use crate::error::Result;
use crate::error::StoreError;
use crate::messages::ensure_chat;
use crate::messages::insert_message_row;

/// Most operations committed together.
const MAX_BATCH: usize = 1024;
/// Operations waiting for the writer before callers are pushed back.
const QUEUE_CAPACITY: usize = 8192;

/// A batched write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    StoreMessage(InboundMessage),
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

enum Reply {
    Sync(mpsc::SyncSender<Result<i64>>),
    Async(tokio::sync::oneshot::Sender<Result<i64>>),
}

impl Reply {
    fn send(self, result: Result<i64>) {
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

type Job = (WriteOp, Reply);

/// Handle to the writer thread. The thread ends when the last handle is dropped.
pub(crate) struct Writer {
    tx: mpsc::SyncSender<Job>,
}

impl Writer {
    pub(crate) fn spawn(
        conn: Arc<Mutex<Connection>>,
        checkpointer: Option<Arc<Checkpointer>>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("cambot-dbwriter".into())
            .spawn(move || writer_loop(&conn, &rx, checkpointer.as_deref()))
            .map_err(|e| {
                StoreError::Invalid(format!("cannot start the database writer thread: {e}"))
            })?;
        Ok(Self { tx })
    }

    /// Queues `op` and blocks until it is committed. For sync callers outside async code.
    pub(crate) fn submit_blocking(&self, op: WriteOp) -> Result<i64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send((op, Reply::Sync(tx)))
            .map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Queues `op` and waits (asynchronously) until it is committed.
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<i64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut job = (op, Reply::Async(tx));
        // The queue is bounded; when full, yield to the runtime until there is room.
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(back)) => {
                    job = back;
                    tokio::task::yield_now().await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::WriterGone),
            }
        }
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn writer_loop(
    conn: &Mutex<Connection>,
    rx: &mpsc::Receiver<Job>,
    checkpointer: Option<&Checkpointer>,
) {
    let mut known_chats = KnownChats::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(c) = checkpointer {
            c.poke();
        }
        match conn.lock() {
            Ok(mut conn) => commit_batch(&mut conn, batch, &mut known_chats),
            Err(_) => {
                for (_, reply) in batch {
                    reply.send(Err(StoreError::Poisoned));
                }
            }
        }
    }
}

/// Chats whose row is known to exist (committed by this writer): a message to one of them skips
/// the `INSERT OR IGNORE INTO chats` statement. Chat rows are never deleted.
#[derive(Default)]
struct KnownChats {
    committed: HashSet<(TenantId, ChatJid)>,
}

/// Most chats remembered; past it the set starts over (only a statement per message is at stake).
const KNOWN_CHATS_CAP: usize = 100_000;

impl KnownChats {
    fn remember(&mut self, fresh: Vec<(TenantId, ChatJid)>) {
        if self.committed.len() + fresh.len() > KNOWN_CHATS_CAP {
            self.committed.clear();
        }
        self.committed.extend(fresh);
    }
}

fn run_op(
    conn: &Connection,
    op: &WriteOp,
    known: &KnownChats,
    fresh: &mut Vec<(TenantId, ChatJid)>,
) -> Result<i64> {
    match op {
        WriteOp::StoreMessage(msg) => {
            let chat = (msg.tenant.clone(), msg.chat_jid.clone());
            if !known.committed.contains(&chat) {
                ensure_chat(conn, msg)?;
                fresh.push(chat);
            }
            insert_message_row(conn, msg)
        }
        WriteOp::AdvanceCursor {
            tenant,
            chat_jid,
            seq,
        } => {
            advance_cursor_in(conn, tenant, chat_jid, *seq)?;
            Ok(*seq)
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
                advance_cursor_in(conn, tenant, chat_jid, *seq)?;
            }
            Ok(id)
        }
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>, known: &mut KnownChats) {
    // Fast path: the whole batch in one transaction. Savepoints per operation would cost two
    // more statements each; failures are rare, so isolate them only when one happens.
    let mut fresh = Vec::new();
    let all = (|| -> rusqlite::Result<std::result::Result<Vec<i64>, ()>> {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in &batch {
            match run_op(&tx, op, known, &mut fresh) {
                Ok(v) => results.push(v),
                // Dropping the transaction rolls it back.
                Err(_) => return Ok(Err(())),
            }
        }
        tx.commit()?;
        Ok(Ok(results))
    })();
    match all {
        Ok(Ok(results)) => {
            known.remember(fresh);
            for ((_, reply), r) in batch.into_iter().zip(results) {
                reply.send(Ok(r));
            }
        }
        Ok(Err(())) => {
            // Some operation failed and nothing was committed: run each alone, so only the
            // failing one reports an error. Every operation is safe to run again after a rollback.
            for (op, reply) in batch {
                let mut fresh = Vec::new();
                let r = (|| -> Result<i64> {
                    let tx = conn.transaction()?;
                    let v = run_op(&tx, &op, known, &mut fresh)?;
                    tx.commit()?;
                    Ok(v)
                })();
                if r.is_ok() {
                    known.remember(fresh);
                }
                reply.send(r);
            }
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(error = %reason, operations = batch.len(), "committing a batch of writes failed");
            for (_, reply) in batch {
                reply.send(Err(StoreError::BatchCommit(reason.clone())));
            }
        }
    }
}
