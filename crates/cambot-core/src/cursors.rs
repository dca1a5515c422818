//! Router cursors and the reply outbox.
//!
//! A chat's cursor is the seq of the last message whose handling is finished (its reply is
//! committed to the outbox, or it needed none). Replies and cursor moves are committed in one
//! transaction, so after a crash either both happened or neither did.

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::batch::WriteOp;
use crate::db::Store;
use crate::error::Result;
use crate::error::StoreError;

/// A reply waiting for (or past) delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Unique and stable: channels may use it as an idempotency key.
    pub id: i64,
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub text: String,
    /// Who produced it: `router`, `ipc`, `task:<id>`.
    pub origin: String,
    pub attempts: i64,
}

pub(crate) fn advance_cursor_in(
    conn: &rusqlite::Connection,
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
    .execute(params![
        tenant.as_str(),
        chat_jid.as_str(),
        seq,
        now
    ])?;
    Ok(())
}

pub(crate) fn insert_outbox(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    chat_jid: &ChatJid,
    text: &str,
    origin: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (tenant, chat_jid, text, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING id",
    )?
    .query_row(
        params![
            tenant.as_str(),
            chat_jid.as_str(),
            text,
            origin,
            crate::time::now_rfc3339()
        ],
        |r| r.get(0),
    )
}

impl Store {
    /// The chat's cursor (0 before anything was handled).
    pub fn cursor(&self, tenant: &TenantId, chat_jid: &ChatJid) -> Result<i64> {
        let conn = self.reader()?;
        Ok(conn
            .prepare_cached(
                "SELECT last_seq FROM router_cursors WHERE tenant = ?1 AND chat_jid = ?2",
            )?
            .query_row(params![tenant.as_str(), chat_jid.as_str()], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Moves the cursor forward (never backward).
    pub fn advance_cursor(&self, tenant: &TenantId, chat_jid: &ChatJid, seq: i64) -> Result<()> {
        self.writer().submit_blocking(WriteOp::AdvanceCursor {
            tenant: tenant.clone(),
            chat_jid: chat_jid.clone(),
            seq,
        })?;
        Ok(())
    }

    /// [`Store::advance_cursor`] for async callers.
    pub async fn advance_cursor_async(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        seq: i64,
    ) -> Result<()> {
        self.writer()
            .submit(WriteOp::AdvanceCursor {
                tenant: tenant.clone(),
                chat_jid: chat_jid.clone(),
                seq,
            })
            .await?;
        Ok(())
    }

    /// [`Store::advance_cursor_async`] without waiting for the commit: queues the move and
    /// returns. The writer commits in queue order, so the caller's later writes commit after it;
    /// whoever reads the cursor next must first wait for [`CursorMove::committed`].
    pub async fn queue_cursor_advance(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        seq: i64,
    ) -> Result<CursorMove> {
        let write = self
            .writer()
            .submit_pending(WriteOp::AdvanceCursor {
                tenant: tenant.clone(),
                chat_jid: chat_jid.clone(),
                seq,
            })
            .await?;
        Ok(CursorMove { write })
    }

    /// Commits a reply and (optionally) the cursor move it completes, atomically. Returns the
    /// outbox id.
    pub fn commit_reply(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        text: &str,
        origin: &str,
        advance_to: Option<i64>,
    ) -> Result<i64> {
        self.writer()
            .submit_blocking(reply_op(tenant, chat_jid, text, origin, advance_to))
            .map(|w| w.value)
    }

    /// [`Store::commit_reply`] for async callers.
    pub async fn commit_reply_async(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        text: &str,
        origin: &str,
        advance_to: Option<i64>,
    ) -> Result<i64> {
        self.writer()
            .submit(reply_op(tenant, chat_jid, text, origin, advance_to))
            .await
            .map(|w| w.value)
    }

    /// Undelivered replies, oldest first.
    pub fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(
                "SELECT id, tenant, chat_jid, text, origin, attempts FROM outbox
                 WHERE delivered_at IS NULL ORDER BY id LIMIT ?1",
            )?
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, tenant, jid, text, origin, attempts)| {
                let corrupt = |e: cambot_protocol::IdError| StoreError::CorruptRow {
                    table: "outbox",
                    reason: e.to_string(),
                };
                Ok(OutboxEntry {
                    id,
                    tenant: TenantId::new(&tenant).map_err(corrupt)?,
                    chat_jid: ChatJid::new(&jid).map_err(corrupt)?,
                    text,
                    origin,
                    attempts,
                })
            })
            .collect()
    }

    /// Marks a reply as delivered.
    pub fn mark_delivered(&self, id: i64) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
        )?
        .execute(params![id, crate::time::now_rfc3339()])?;
        Ok(())
    }

    /// Records a failed delivery attempt; the reply stays pending.
    pub fn mark_delivery_failed(&self, id: i64, error: &str) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        )?
        .execute(params![id, error])?;
        Ok(())
    }

    /// Delivered replies to one chat, oldest first (history views, tests).
    pub fn delivered_replies(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
    ) -> Result<Vec<(i64, String)>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(
                "SELECT id, text FROM outbox WHERE tenant = ?1 AND chat_jid = ?2
                 AND delivered_at IS NOT NULL ORDER BY id",
            )?
            .query_map(params![tenant.as_str(), chat_jid.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

fn reply_op(
    tenant: &TenantId,
    chat_jid: &ChatJid,
    text: &str,
    origin: &str,
    advance_to: Option<i64>,
) -> WriteOp {
    WriteOp::CommitReply {
        tenant: tenant.clone(),
        chat_jid: chat_jid.clone(),
        text: text.to_owned(),
        origin: origin.to_owned(),
        advance_to,
    }
}

/// A cursor move queued by [`Store::queue_cursor_advance`].
pub struct CursorMove {
    write: crate::batch::PendingWrite,
}

impl CursorMove {
    /// The move's outcome once it has committed or failed; `None` while it is queued.
    pub fn try_committed(&mut self) -> Option<Result<()>> {
        self.write.try_outcome()
    }

    /// Waits until the move has committed.
    pub async fn committed(self) -> Result<()> {
        self.write.outcome().await
    }
}

impl std::fmt::Debug for CursorMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorMove").finish_non_exhaustive()
    }
}
