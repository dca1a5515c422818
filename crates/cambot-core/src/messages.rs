//! Chats and messages.

use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::batch::WriteOp;
use crate::db::Store;
use crate::error::Result;
use crate::error::StoreError;

/// The special chat row the seed used to remember the last metadata sync.
pub const GROUP_SYNC_JID: &str = "__group_sync__";

/// A stored message with its arrival sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub id: String,
    pub sender: String,
    pub sender_name: String,
    pub content: String,
    pub timestamp: String,
    pub is_from_me: bool,
    pub is_bot_message: bool,
}

impl StoredMessage {
    pub(crate) fn stored(msg: InboundMessage, seq: i64) -> Self {
        Self {
            seq,
            tenant: msg.tenant,
            chat_jid: msg.chat_jid,
            id: msg.id,
            sender: msg.sender,
            sender_name: msg.sender_name,
            content: msg.content,
            timestamp: msg.timestamp,
            is_from_me: msg.is_from_me,
            is_bot_message: msg.is_bot_message,
        }
    }
}

/// A message just stored, as [`Store::store_message_arrival`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub message: StoredMessage,
    /// The seq of the chat's message stored just before this one, when known.
    pub previous_in_chat: Option<i64>,
}

/// A chat as listed for group registration (seed "available groups").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableGroup {
    pub jid: String,
    pub name: String,
    pub last_activity: Option<String>,
    pub is_registered: bool,
    pub folder: Option<String>,
}

/// The columns [`row_to_message`] reads, in its order (a macro so that `concat!` can build
/// whole statements at compile time).
macro_rules! message_columns {
    () => {
        "seq, tenant, chat_jid, id, sender, sender_name, content, timestamp, is_from_me, is_bot_message"
    };
}
const MESSAGE_COLUMNS: &str = message_columns!();

type RawMessage = (i64, [String; 7], bool, bool);

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawMessage> {
    Ok((
        row.get(0)?,
        [
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
        ],
        row.get(8)?,
        row.get(9)?,
    ))
}

fn build_message(raw: RawMessage) -> Result<StoredMessage> {
    let (
        seq,
        [
            tenant,
            chat_jid,
            id,
            sender,
            sender_name,
            content,
            timestamp,
        ],
        from_me,
        bot,
    ) = raw;
    let corrupt = |e: cambot_protocol::IdError| StoreError::CorruptRow {
        table: "messages",
        reason: e.to_string(),
    };
    Ok(StoredMessage {
        seq,
        tenant: TenantId::new(&tenant).map_err(corrupt)?,
        chat_jid: ChatJid::new(&chat_jid).map_err(corrupt)?,
        id,
        sender,
        sender_name,
        content,
        timestamp,
        is_from_me: from_me,
        is_bot_message: bot,
    })
}

impl Store {
    /// Records chat metadata. With a name: sets the name, keeps the newest activity time, and
    /// fills channel/is_group when given. Without a name: creates the chat named after its JID,
    /// or only advances the activity time of an existing chat.
    pub fn store_chat_metadata(&self, meta: &ChatMetadata) -> Result<()> {
        self.writer()
            .submit_blocking(WriteOp::ChatMetadata(meta.clone()))
            .map(|_| ())
    }

    /// [`Store::store_chat_metadata`] for async callers: committed with the other writes queued
    /// meanwhile, without blocking a runtime thread.
    pub async fn store_chat_metadata_async(&self, meta: ChatMetadata) -> Result<()> {
        self.writer()
            .submit(WriteOp::ChatMetadata(meta))
            .await
            .map(|_| ())
    }

    /// [`Store::store_chat_metadata_async`] without waiting for the commit: queued for the
    /// writer's next batch (a failure is logged). For channels reporting metadata with every
    /// message, where the next report restores a write a crash lost.
    pub async fn queue_chat_metadata(&self, meta: ChatMetadata) -> Result<()> {
        self.writer()
            .submit_detached(WriteOp::ChatMetadata(meta))
            .await
    }

    /// Stores a message idempotently on `(tenant, chat_jid, id)`; a repeat updates the content
    /// and keeps the original `seq`. Creates the chat row if needed. Returns the message's seq.
    pub fn store_message(&self, msg: &InboundMessage) -> Result<i64> {
        self.writer()
            .submit_blocking(WriteOp::StoreMessage(msg.clone()))
            .map(|w| w.value)
    }

    /// [`Store::store_message`] for async callers: waits without blocking a runtime thread.
    pub async fn store_message_async(&self, msg: InboundMessage) -> Result<i64> {
        self.store_message_arrival(msg).await.map(|a| a.message.seq)
    }

    /// [`Store::store_message_async`] for the router: returns the message as stored, and the
    /// seq of the message stored just before it in the same chat when this store knows it
    /// (`None` for a repeated delivery, or for a chat's first message since the store opened).
    /// A reader that has seen exactly that previous message has nothing to read back. The
    /// message is acknowledged once its transaction has committed.
    pub async fn store_message_arrival(&self, msg: InboundMessage) -> Result<Arrival> {
        let (written, op) = self
            .writer()
            .submit_returning(WriteOp::StoreMessage(msg))
            .await?;
        let WriteOp::StoreMessage(msg) = op else {
            return Err(StoreError::Invalid(
                "the writer handed back another operation than the message stored".into(),
            ));
        };
        Ok(Arrival {
            message: StoredMessage::stored(msg, written.value),
            previous_in_chat: written.previous_in_chat,
        })
    }

    /// Messages of one chat after `since_seq` (exclusive), oldest first, bot messages excluded.
    /// Only the `is_bot_message` flag decides what is a bot message (seed DEFECT (b): a user
    /// message that happens to start with `Andy:` is still the user's).
    pub fn messages_since(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        since_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages
             WHERE tenant = ?1 AND chat_jid = ?2 AND seq > ?3 AND is_bot_message = 0
             ORDER BY seq LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    tenant.as_str(),
                    chat_jid.as_str(),
                    since_seq,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row_to_message,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(build_message).collect()
    }

    /// A chat's non-bot messages after its router cursor, oldest first (the cursor and the
    /// messages read in one statement).
    pub fn pending_messages(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages
             WHERE tenant = ?1 AND chat_jid = ?2 AND is_bot_message = 0
               AND seq > COALESCE((SELECT last_seq FROM router_cursors
                                   WHERE tenant = ?1 AND chat_jid = ?2), 0)
             ORDER BY seq LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    tenant.as_str(),
                    chat_jid.as_str(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                row_to_message,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(build_message).collect()
    }

    /// New non-bot messages across several chats of a tenant after a global seq cursor, oldest
    /// first, plus the new cursor (the largest seq returned, or the old one when nothing is new).
    /// An empty chat list asks nothing and returns the cursor unchanged.
    pub fn new_messages(
        &self,
        tenant: &TenantId,
        chat_jids: &[ChatJid],
        since_seq: i64,
    ) -> Result<(Vec<StoredMessage>, i64)> {
        if chat_jids.is_empty() {
            return Ok((Vec::new(), since_seq));
        }
        let conn = self.reader()?;
        let placeholders = (0..chat_jids.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE tenant = ?1 AND seq > ?2 AND is_bot_message = 0 AND chat_jid IN ({placeholders})
             ORDER BY seq"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut values: Vec<rusqlite::types::Value> =
            vec![tenant.as_str().to_owned().into(), since_seq.into()];
        values.extend(chat_jids.iter().map(|j| j.as_str().to_owned().into()));
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), row_to_message)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let messages = rows
            .into_iter()
            .map(build_message)
            .collect::<Result<Vec<_>>>()?;
        let cursor = messages.iter().map(|m| m.seq).max().unwrap_or(since_seq);
        Ok((messages, cursor))
    }

    /// The newest non-bot message seq of a chat (0 when none).
    pub fn latest_message_seq(&self, tenant: &TenantId, chat_jid: &ChatJid) -> Result<i64> {
        let conn = self.reader()?;
        let seq: Option<i64> = conn
            .prepare_cached(
                "SELECT MAX(seq) FROM messages WHERE tenant = ?1 AND chat_jid = ?2 AND is_bot_message = 0",
            )?
            .query_row(params![tenant.as_str(), chat_jid.as_str()], |r| r.get(0))?;
        Ok(seq.unwrap_or(0))
    }

    /// Looks up one chat's display name.
    pub fn chat_name(&self, tenant: &TenantId, jid: &ChatJid) -> Result<Option<String>> {
        let conn = self.reader()?;
        Ok(conn
            .prepare_cached("SELECT name FROM chats WHERE tenant = ?1 AND jid = ?2")?
            .query_row(params![tenant.as_str(), jid.as_str()], |r| r.get(0))
            .optional()?)
    }

    /// One chat's last activity time.
    pub fn chat_last_message_time(
        &self,
        tenant: &TenantId,
        jid: &ChatJid,
    ) -> Result<Option<String>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT last_message_time FROM chats WHERE tenant = ?1 AND jid = ?2",
                params![tenant.as_str(), jid.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Group chats of a tenant (never the sync marker row), newest activity first, each flagged
    /// with whether it is registered.
    pub fn available_groups(&self, tenant: &TenantId) -> Result<Vec<AvailableGroup>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT c.jid, c.name, c.last_message_time, g.folder
             FROM chats c
             LEFT JOIN registered_groups g ON g.tenant = c.tenant AND g.jid = c.jid
             WHERE c.tenant = ?1 AND c.is_group = 1 AND c.jid != ?2
             ORDER BY COALESCE(c.last_message_time, '') DESC, c.jid",
        )?;
        let rows = stmt
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
    }
}

pub(crate) fn upsert_chat(conn: &rusqlite::Connection, meta: &ChatMetadata) -> Result<()> {
    let is_group = meta.is_group.map(i64::from);
    match &meta.name {
        Some(name) => {
            conn.prepare_cached(
                "INSERT INTO chats (tenant, jid, name, last_message_time, channel, is_group)
                 VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, 0))
                 ON CONFLICT (tenant, jid) DO UPDATE SET
                     name = excluded.name,
                     last_message_time = MAX(COALESCE(chats.last_message_time, ''), excluded.last_message_time),
                     channel = COALESCE(?5, chats.channel),
                     is_group = COALESCE(?6, chats.is_group)",
            )?
            .execute(params![
                meta.tenant.as_str(),
                meta.chat_jid.as_str(),
                name,
                meta.timestamp,
                meta.channel,
                is_group
            ])?;
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO chats (tenant, jid, name, last_message_time, channel, is_group)
                 VALUES (?1, ?2, ?2, ?3, ?4, COALESCE(?5, 0))
                 ON CONFLICT (tenant, jid) DO UPDATE SET
                     last_message_time = MAX(COALESCE(chats.last_message_time, ''), excluded.last_message_time),
                     channel = COALESCE(?4, chats.channel),
                     is_group = COALESCE(?5, chats.is_group)",
            )?
            .execute(params![
                meta.tenant.as_str(),
                meta.chat_jid.as_str(),
                meta.timestamp,
                meta.channel,
                is_group
            ])?;
        }
    }
    Ok(())
}

/// Inserts (or updates) one message; the chat row is created when missing but not rewritten
/// (activity time comes from chat metadata, so the hot path writes no chat page).
/// Creates the message's chat row if it does not exist yet (messages reference their chat).
pub(crate) fn ensure_chat(conn: &rusqlite::Connection, msg: &InboundMessage) -> Result<()> {
    ensure_chat_row(conn, &msg.tenant, &msg.chat_jid, &msg.timestamp)
}

pub(crate) fn ensure_chat_row(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    chat_jid: &ChatJid,
    timestamp: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO chats (tenant, jid, name, last_message_time) VALUES (?1, ?2, ?2, ?3)",
    )?
    .execute(params![tenant.as_str(), chat_jid.as_str(), timestamp])?;
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
/// nothing, when the message is a repeated delivery.
///
/// Seqs come from `message_seq`, so they stay unique across chats and are never reused after a
/// delete. Repeats take [`update_repeated_message`].
pub(crate) fn insert_message_row(
    conn: &rusqlite::Connection,
    msg: &InboundMessage,
) -> Result<Option<i64>> {
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
    conn.prepare_cached("UPDATE message_seq SET last = last + 1")?
        .execute([])?;
    Ok(Some(
        conn.prepare_cached("SELECT last FROM message_seq")?
            .query_row([], |r| r.get(0))?,
    ))
}

/// Updates a repeated delivery in place (its content may have been edited); returns the seq it
/// keeps.
pub(crate) fn update_repeated_message(
    conn: &rusqlite::Connection,
    msg: &InboundMessage,
) -> Result<i64> {
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE messages SET sender = ?4, sender_name = ?5, content = ?6, timestamp = ?7,
                                 is_from_me = ?8, is_bot_message = ?9
             WHERE tenant = ?1 AND chat_jid = ?2 AND id = ?3
             RETURNING seq",
        )?
        .query_row(message_params(msg), |r| r.get(0))?;
    Ok(seq)
}
