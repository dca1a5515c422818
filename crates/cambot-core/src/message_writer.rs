//! What the writer thread remembers between transactions: the newest message of each chat.
//!
//! It is a cache of what the database says, kept exact by two rules: it changes only when a
//! transaction commits (a rollback drops what it staged), and at the start of each transaction
//! that stores a message the writer asks SQLite whether another connection has committed since
//! (`PRAGMA data_version`; an admin command in another process): if so, the memory is dropped.

use std::collections::HashMap;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::batch::Written;
use crate::error::Result;
use crate::messages::ensure_chat;
use crate::messages::insert_message_row;
use crate::messages::update_repeated_message;

/// Most chats remembered; past it the map starts over (only a statement or a read per message
/// is at stake while it refills).
const CHAT_TAILS_CAP: usize = 100_000;

type ChatKey = (TenantId, ChatJid);

/// The writer's memory, with what the open transaction staged kept apart until it commits.
#[derive(Default)]
pub(crate) struct MessageWriter {
    /// `PRAGMA data_version` as last seen: it changes when another connection commits.
    data_version: Option<i64>,
    /// Whether the open transaction has checked `data_version` yet.
    checked: bool,
    /// Per chat, the seq of the newest message. An entry also proves the chat row exists.
    tails: HashMap<ChatKey, i64>,
    staged_tails: HashMap<ChatKey, i64>,
}

impl MessageWriter {
    /// Drops the memory if another connection has committed since the last transaction.
    fn check_data_version(&mut self, conn: &Connection) -> Result<()> {
        if !self.checked {
            let version = data_version(conn)?;
            if self.data_version != Some(version) {
                self.tails.clear();
                self.data_version = Some(version);
            }
            self.checked = true;
        }
        Ok(())
    }

    /// Stores `msg` in the open transaction (idempotent on `(tenant, chat_jid, id)`).
    pub(crate) fn store(&mut self, conn: &Connection, msg: &InboundMessage) -> Result<Written> {
        self.check_data_version(conn)?;
        let chat = (msg.tenant.clone(), msg.chat_jid.clone());
        let previous = self
            .staged_tails
            .get(&chat)
            .or_else(|| self.tails.get(&chat))
            .copied();
        if previous.is_none() {
            ensure_chat(conn, msg)?;
        }
        let Some(seq) = insert_message_row(conn, msg)? else {
            let seq = update_repeated_message(conn, msg)?;
            // A repeated delivery keeps its seq and is not the chat's newest message.
            return Ok(Written {
                value: seq,
                previous_in_chat: None,
            });
        };
        self.staged_tails.insert(chat, seq);
        Ok(Written {
            value: seq,
            previous_in_chat: previous,
        })
    }

    pub(crate) fn committed(&mut self) {
        self.checked = false;
        if self.tails.len() + self.staged_tails.len() > CHAT_TAILS_CAP {
            self.tails.clear();
        }
        self.tails.extend(self.staged_tails.drain());
    }

    pub(crate) fn rolled_back(&mut self) {
        self.checked = false;
        self.staged_tails.clear();
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> InboundMessage {
        InboundMessage {
            tenant: TenantId::default_tenant(),
            chat_jid: ChatJid::new("a@g.us").expect("valid jid"),
            id: id.into(),
            sender: "s".into(),
            sender_name: "S".into(),
            content: "hi".into(),
            timestamp: "2024-01-01T00:00:00.000Z".into(),
            is_from_me: false,
            is_bot_message: false,
        }
    }

    #[test]
    fn a_rolled_back_message_is_never_named_as_the_previous_one() {
        let store = crate::Store::open_in_memory().expect("store");
        let conn = store.conn().expect("connection");
        let mut writer = MessageWriter::default();
        conn.execute_batch("BEGIN").expect("begin");
        let first = writer.store(&conn, &message("1")).expect("stored");
        conn.execute_batch("COMMIT").expect("commit");
        writer.committed();
        conn.execute_batch("BEGIN").expect("begin");
        let lost = writer.store(&conn, &message("2")).expect("stored");
        assert_eq!(lost.previous_in_chat, Some(first.value));
        conn.execute_batch("ROLLBACK").expect("rollback");
        writer.rolled_back();
        conn.execute_batch("BEGIN").expect("begin");
        let next = writer.store(&conn, &message("3")).expect("stored");
        conn.execute_batch("COMMIT").expect("commit");
        writer.committed();
        assert_eq!(next.previous_in_chat, Some(first.value));
    }
}
