//! [`MessageStore`] and [`SessionStore`] on SQLite: chats, messages (each with a seq unique
//! across chats and never reused), router cursors, the reply outbox, agent sessions.

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::SqliteStore;
use super::corrupt;
use super::limit;
use super::query;
use super::writer::WriteOp;
use crate::error::Result;
use crate::error::StoreError;
use crate::model::Arrival;
use crate::model::AvailableGroup;
use crate::model::GROUP_SYNC_JID;
use crate::model::NewReply;
use crate::model::OutboxEntry;
use crate::model::StoredMessage;
use crate::store::MessageStore;
use crate::store::SessionStore;
use crate::store::StoreFuture;

/// The columns [`row_to_message`] reads, in its order (a macro so that `concat!` can build
/// whole statements at compile time).
macro_rules! message_columns {
    () => {
        "seq, tenant, chat_jid, id, sender, sender_name, content, timestamp, is_from_me, is_bot_message"
    };
}

/// The tenant and chat in columns `at` and `at + 1`; an id that no longer validates is a
/// corrupt row of `table`.
fn chat_key(
    r: &rusqlite::Row<'_>,
    at: usize,
    table: &'static str,
) -> rusqlite::Result<Result<(TenantId, ChatJid)>> {
    let (tenant, chat): (String, String) = (r.get(at)?, r.get(at + 1)?);
    Ok(TenantId::new(&tenant)
        .and_then(|t| Ok((t, ChatJid::new(&chat)?)))
        .map_err(corrupt(table)))
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredMessage>> {
    let (tenant, chat_jid) = match chat_key(r, 1, "messages")? {
        Ok(key) => key,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(StoredMessage {
        seq: r.get(0)?,
        tenant,
        chat_jid,
        id: r.get(3)?,
        sender: r.get(4)?,
        sender_name: r.get(5)?,
        content: r.get(6)?,
        timestamp: r.get(7)?,
        is_from_me: r.get(8)?,
        is_bot_message: r.get(9)?,
    }))
}

impl SqliteStore {
    async fn write_op(&self, op: WriteOp) -> Result<i64> {
        self.writer
            .submit(op)
            .await
            .map(|(written, _)| written.value)
    }
}

impl MessageStore for SqliteStore {
    fn store_message(&self, msg: InboundMessage) -> StoreFuture<'_, Arrival> {
        Box::pin(async move {
            let (written, op) = self.writer.submit(WriteOp::StoreMessage(msg)).await?;
            let WriteOp::StoreMessage(msg) = op else {
                return Err(StoreError::Invalid(
                    "the writer handed back another operation than the message stored".into(),
                ));
            };
            Ok(Arrival {
                message: StoredMessage::stored(msg, written.value),
                previous_in_chat: written.previous_in_chat,
            })
        })
    }

    fn store_chat_metadata(&self, meta: ChatMetadata) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.write_op(WriteOp::ChatMetadata(meta)).await.map(drop) })
    }

    fn messages_since<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        since_seq: i64,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            query(
                conn,
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages
                     WHERE tenant = ?1 AND chat_jid = ?2 AND seq > ?3 AND is_bot_message = 0
                     ORDER BY seq LIMIT ?4"
                ),
                params![tenant.as_str(), chat.as_str(), since_seq, limit(max)],
                row_to_message,
            )
        })
    }

    fn pending_messages<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        max: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            query(
                conn,
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages
                     WHERE tenant = ?1 AND chat_jid = ?2 AND is_bot_message = 0
                       AND seq > COALESCE((SELECT last_seq FROM router_cursors
                                           WHERE tenant = ?1 AND chat_jid = ?2), 0)
                     ORDER BY seq LIMIT ?3"
                ),
                params![tenant.as_str(), chat.as_str(), limit(max)],
                row_to_message,
            )
        })
    }

    fn latest_message_seq<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, i64> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            let seq: Option<i64> = conn
                .prepare_cached(
                    "SELECT MAX(seq) FROM messages
                     WHERE tenant = ?1 AND chat_jid = ?2 AND is_bot_message = 0",
                )?
                .query_row(params![tenant.as_str(), chat.as_str()], |r| r.get(0))?;
            Ok(seq.unwrap_or(0))
        })
    }

    fn chat_name<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, Option<String>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT name FROM chats WHERE tenant = ?1 AND jid = ?2")?
                .query_row(params![tenant.as_str(), chat.as_str()], |r| r.get(0))
                .optional()?)
        })
    }

    fn available_groups<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> StoreFuture<'a, Vec<AvailableGroup>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT c.jid, c.name, c.last_message_time, g.folder
                     FROM chats c
                     LEFT JOIN registered_groups g ON g.tenant = c.tenant AND g.jid = c.jid
                     WHERE c.tenant = ?1 AND c.is_group = 1 AND c.jid != ?2
                     ORDER BY COALESCE(c.last_message_time, '') DESC, c.jid",
                )?
                .query_map(params![tenant.as_str(), GROUP_SYNC_JID], |r| {
                    let folder: Option<String> = r.get(3)?;
                    Ok(AvailableGroup {
                        jid: r.get(0)?,
                        name: r.get(1)?,
                        last_activity: r.get(2)?,
                        is_registered: folder.is_some(),
                        folder,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn cursor<'a>(&'a self, tenant: &'a TenantId, chat_jid: &'a ChatJid) -> StoreFuture<'a, i64> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT last_seq FROM router_cursors WHERE tenant = ?1 AND chat_jid = ?2",
                )?
                .query_row(params![tenant.as_str(), chat.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
    }

    fn advance_cursor<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        seq: i64,
    ) -> StoreFuture<'a, ()> {
        let op = WriteOp::AdvanceCursor {
            tenant: tenant.clone(),
            chat_jid: chat_jid.clone(),
            seq,
        };
        Box::pin(async move { self.write_op(op).await.map(drop) })
    }

    fn commit_reply(&self, reply: NewReply) -> StoreFuture<'_, i64> {
        Box::pin(self.write_op(WriteOp::CommitReply(reply)))
    }

    fn pending_outbox(&self, max: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, tenant, chat_jid, text, origin, attempts FROM outbox
                 WHERE delivered_at IS NULL ORDER BY id LIMIT ?1",
            )?
            .query_map(params![limit(max)], |r| {
                let (tenant, chat_jid) = match chat_key(r, 1, "outbox")? {
                    Ok(key) => key,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(OutboxEntry {
                    id: r.get(0)?,
                    tenant,
                    chat_jid,
                    text: r.get(3)?,
                    origin: r.get(4)?,
                    attempts: r.get(5)?,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .collect()
        })
    }

    fn mark_delivered(&self, id: i64) -> StoreFuture<'_, ()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            )?
            .execute(params![id, crate::time::now_rfc3339()])?;
            Ok(())
        })
    }

    fn mark_delivery_failed<'a>(&'a self, id: i64, error: &'a str) -> StoreFuture<'a, ()> {
        let error = error.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
            )?
            .execute(params![id, error])?;
            Ok(())
        })
    }

    fn delivered_replies<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
    ) -> StoreFuture<'a, Vec<(i64, String)>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, text FROM outbox WHERE tenant = ?1 AND chat_jid = ?2
                     AND delivered_at IS NOT NULL ORDER BY id",
                )?
                .query_map(params![tenant.as_str(), chat.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}

impl SessionStore for SqliteStore {
    fn session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, Option<String>> {
        let (tenant, folder) = (tenant.clone(), folder.clone());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT session_id FROM sessions WHERE tenant = ?1 AND group_folder = ?2",
                )?
                .query_row(params![tenant.as_str(), folder.as_str()], |r| r.get(0))
                .optional()?)
        })
    }

    fn set_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
        session_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        let op = WriteOp::SetSession {
            tenant: tenant.clone(),
            folder: folder.clone(),
            session_id: session_id.to_owned(),
        };
        Box::pin(async move { self.write_op(op).await.map(drop) })
    }

    fn clear_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, ()> {
        let (tenant, folder) = (tenant.clone(), folder.clone());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE tenant = ?1 AND group_folder = ?2",
                params![tenant.as_str(), folder.as_str()],
            )?;
            Ok(())
        })
    }
}

pub(super) fn upsert_chat(conn: &Connection, meta: &ChatMetadata) -> Result<()> {
    let is_group = meta.is_group.map(i64::from);
    // Without a name the chat is named after its jid when created, and keeps its name after.
    conn.prepare_cached(
        "INSERT INTO chats (tenant, jid, name, last_message_time, channel, is_group)
         VALUES (?1, ?2, COALESCE(?3, ?2), ?4, ?5, COALESCE(?6, 0))
         ON CONFLICT (tenant, jid) DO UPDATE SET
             name = COALESCE(?3, chats.name),
             last_message_time = MAX(COALESCE(chats.last_message_time, ''), excluded.last_message_time),
             channel = COALESCE(?5, chats.channel),
             is_group = COALESCE(?6, chats.is_group)",
    )?
    .execute(params![
        meta.tenant.as_str(),
        meta.chat_jid.as_str(),
        meta.name,
        meta.timestamp,
        meta.channel,
        is_group
    ])?;
    Ok(())
}

/// Creates the message's chat row if it does not exist yet (messages reference their chat).
pub(super) fn ensure_chat(conn: &Connection, msg: &InboundMessage) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO chats (tenant, jid, name, last_message_time) VALUES (?1, ?2, ?2, ?3)",
    )?
    .execute(params![
        msg.tenant.as_str(),
        msg.chat_jid.as_str(),
        msg.timestamp
    ])?;
    Ok(())
}

/// A message's columns as `?1`..`?9`, in the order both statements below number them.
fn message_params(msg: &InboundMessage) -> impl rusqlite::Params + '_ {
    (
        msg.tenant.as_str(),
        msg.chat_jid.as_str(),
        msg.id.as_str(),
        msg.sender.as_str(),
        msg.sender_name.as_str(),
        msg.content.as_str(),
        msg.timestamp.as_str(),
        msg.is_from_me,
        msg.is_bot_message,
    )
}

/// Inserts a new message into a chat whose row exists and returns its seq; `None`, changing
/// nothing, when the message is a repeated delivery. Seqs come from `message_seq`, so they stay
/// unique across chats and are never reused after a delete.
pub(super) fn insert_message(conn: &Connection, msg: &InboundMessage) -> Result<Option<i64>> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (tenant, chat_jid, id, sender, sender_name, content, timestamp,
                                   is_from_me, is_bot_message, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, (SELECT last + 1 FROM message_seq))
             ON CONFLICT (tenant, chat_jid, id) DO NOTHING",
        )?
        .execute(message_params(msg))?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(
        conn.prepare_cached("UPDATE message_seq SET last = last + 1 RETURNING last")?
            .query_row([], |r| r.get(0))?,
    ))
}

/// Updates a repeated delivery in place (its content may have been edited); returns the seq it
/// keeps.
pub(super) fn update_repeated(conn: &Connection, msg: &InboundMessage) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "UPDATE messages SET sender = ?4, sender_name = ?5, content = ?6, timestamp = ?7,
                                 is_from_me = ?8, is_bot_message = ?9
             WHERE tenant = ?1 AND chat_jid = ?2 AND id = ?3
             RETURNING seq",
        )?
        .query_row(message_params(msg), |r| r.get(0))?)
}
