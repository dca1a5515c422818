//! Group commit for the hot writes: storing a message, moving a cursor, committing a reply, a
//! chat's metadata, a group's session.
//!
//! One dedicated thread owns the commit loop: it takes every queued operation, runs them in ONE
//! transaction (a failing one is retried alone so it fails only its caller), commits, and
//! answers each caller. Under load the commit cost (WAL append, locks) is shared by every write
//! queued meanwhile; alone, a write is one transaction. Callers are answered after the commit,
//! so an acknowledged write survives a crash of the process.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::params;

use crate::error::Result;
use crate::error::StoreError;
use crate::model::NewReply;

/// Most operations committed together.
const MAX_BATCH: usize = 1024;
/// Operations waiting for the writer before callers wait for room.
const QUEUE_CAPACITY: usize = 8192;
/// Most chats whose newest message the writer remembers; past it the map starts over.
const CHAT_TAILS_CAP: usize = 100_000;

#[derive(Debug)]
pub(super) enum WriteOp {
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
    CommitReply(NewReply),
}

/// What a committed operation reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// The message seq or the outbox id.
    pub(super) value: i64,
    /// For a newly stored message: the seq of the message this writer stored just before it in
    /// the same chat (`None` when unknown, or for a repeated delivery).
    pub(super) previous_in_chat: Option<i64>,
}

impl Written {
    fn value(value: i64) -> Self {
        Self {
            value,
            previous_in_chat: None,
        }
    }
}

/// An outcome, with the operation handed back (the router keeps the message it stored).
type Completed = (Result<Written>, WriteOp);
type Job = (WriteOp, tokio::sync::oneshot::Sender<Completed>);

/// Handle to the writer thread. The thread ends when the last handle is dropped.
pub(super) struct Writer {
    /// A tokio channel although the writer is a plain thread: when the queue is full, async
    /// callers wait for room without holding a runtime thread.
    tx: tokio::sync::mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn spawn(conn: Arc<Mutex<Connection>>) -> Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("cambot-dbwriter".into())
            .spawn(move || writer_loop(&conn, rx))
            .map_err(StoreError::WriterThread)?;
        Ok(Self { tx })
    }

    /// Queues `op` and waits until it is committed; hands the operation back.
    pub(super) async fn submit(&self, op: WriteOp) -> Result<(Written, WriteOp)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((op, tx))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let (result, op) = rx.await.map_err(|_| StoreError::WriterGone)?;
        result.map(|written| (written, op))
    }
}

fn writer_loop(conn: &Mutex<Connection>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    let mut tails = ChatTails::default();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&super::lock(conn), batch, &mut tails);
    }
}

fn run_op(conn: &Connection, op: &WriteOp, tails: &mut ChatTails, now: &str) -> Result<Written> {
    match op {
        WriteOp::StoreMessage(msg) => tails.store(conn, msg),
        WriteOp::ChatMetadata(meta) => {
            super::messages::upsert_chat(conn, meta)?;
            Ok(Written::value(0))
        }
        WriteOp::SetSession {
            tenant,
            folder,
            session_id,
        } => {
            conn.prepare_cached(
                "INSERT INTO sessions (tenant, group_folder, session_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, group_folder) DO UPDATE SET
                     session_id = excluded.session_id, updated_at = excluded.updated_at",
            )?
            .execute(params![tenant.as_str(), folder.as_str(), session_id, now])?;
            Ok(Written::value(0))
        }
        WriteOp::AdvanceCursor {
            tenant,
            chat_jid,
            seq,
        } => {
            advance_cursor(conn, tenant, chat_jid, *seq, now)?;
            Ok(Written::value(*seq))
        }
        WriteOp::CommitReply(reply) => {
            let id = conn
                .prepare_cached(
                    "INSERT INTO outbox (tenant, chat_jid, text, origin, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )?
                .query_row(
                    params![
                        reply.tenant.as_str(),
                        reply.chat_jid.as_str(),
                        reply.text,
                        reply.origin,
                        now
                    ],
                    |r| r.get(0),
                )?;
            if let Some(seq) = reply.advance_to {
                advance_cursor(conn, &reply.tenant, &reply.chat_jid, seq, now)?;
            }
            Ok(Written::value(id))
        }
    }
}

fn advance_cursor(
    conn: &Connection,
    tenant: &TenantId,
    chat_jid: &ChatJid,
    seq: i64,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO router_cursors (tenant, chat_jid, last_seq, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, chat_jid) DO UPDATE SET
             last_seq = MAX(router_cursors.last_seq, excluded.last_seq),
             updated_at = excluded.updated_at",
    )?
    .execute(params![tenant.as_str(), chat_jid.as_str(), seq, now])?;
    Ok(())
}

/// Runs `body` in one write transaction.
fn in_transaction<T>(
    conn: &Connection,
    tails: &mut ChatTails,
    body: impl FnOnce(&Connection, &mut ChatTails) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let outcome = body(conn, tails).and_then(|v| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(v)
    });
    match outcome {
        Ok(v) => {
            tails.committed();
            Ok(v)
        }
        Err(e) => {
            tails.rolled_back();
            if !conn.is_autocommit()
                && let Err(rollback) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(error = %rollback, "rolling back a batch of writes failed");
            }
            Err(e)
        }
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Job>, tails: &mut ChatTails) {
    // Fast path: the whole batch in one transaction. Failures are rare, so operations are
    // isolated only when one happens.
    let mut failed_op = false;
    let now = crate::time::now_rfc3339();
    let all = in_transaction(conn, tails, |conn, tails| {
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in &batch {
            match run_op(conn, op, tails, &now) {
                Ok(v) => results.push(v),
                Err(e) => {
                    failed_op = true;
                    return Err(e);
                }
            }
        }
        Ok(results)
    });
    match all {
        Ok(results) => {
            for ((op, reply), r) in batch.into_iter().zip(results) {
                // A caller that stopped waiting is fine to ignore: the write is committed.
                let _ = reply.send((Ok(r), op));
            }
        }
        Err(_) if failed_op => {
            // Nothing was committed: run each alone, so only the failing one reports an error.
            for (op, reply) in batch {
                let result =
                    in_transaction(conn, tails, |conn, tails| run_op(conn, &op, tails, &now));
                let _ = reply.send((result, op));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, operations = batch.len(), "committing a batch of writes failed");
            let e = Arc::new(e);
            for (op, reply) in batch {
                let _ = reply.send((Err(StoreError::BatchCommit(Arc::clone(&e))), op));
            }
        }
    }
}

type ChatKey = (TenantId, ChatJid);

/// The newest message of each chat this writer stored, so that an arrival can name the one
/// before it. Exact, not a guess: it changes only when a transaction commits, and it is dropped
/// whenever another connection has committed since (`PRAGMA data_version`), because that one
/// may have stored a message in between.
#[derive(Default)]
struct ChatTails {
    data_version: Option<i64>,
    /// Whether the open transaction has checked `data_version` yet.
    checked: bool,
    tails: HashMap<ChatKey, i64>,
    staged: HashMap<ChatKey, i64>,
}

impl ChatTails {
    /// Stores `msg` in the open transaction (idempotent on `(tenant, chat_jid, id)`).
    fn store(&mut self, conn: &Connection, msg: &InboundMessage) -> Result<Written> {
        if !self.checked {
            let version: i64 = conn
                .prepare_cached("PRAGMA data_version")?
                .query_row([], |r| r.get(0))?;
            if self.data_version != Some(version) {
                self.tails.clear();
                self.data_version = Some(version);
            }
            self.checked = true;
        }
        let chat = (msg.tenant.clone(), msg.chat_jid.clone());
        let previous = self
            .staged
            .get(&chat)
            .or_else(|| self.tails.get(&chat))
            .copied();
        if previous.is_none() {
            super::messages::ensure_chat(conn, msg)?;
        }
        let Some(seq) = super::messages::insert_message(conn, msg)? else {
            // A repeated delivery keeps its seq and is not the chat's newest message.
            return Ok(Written::value(super::messages::update_repeated(conn, msg)?));
        };
        self.staged.insert(chat, seq);
        Ok(Written {
            value: seq,
            previous_in_chat: previous,
        })
    }

    fn committed(&mut self) {
        self.checked = false;
        if self.tails.len() + self.staged.len() > CHAT_TAILS_CAP {
            self.tails.clear();
        }
        self.tails.extend(self.staged.drain());
    }

    fn rolled_back(&mut self) {
        self.checked = false;
        self.staged.clear();
    }
}
