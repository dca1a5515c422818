//! The router's cursors and the groups' sessions, mirrored in memory by the store that owns
//! messages (the daemon's), so that starting a run reads neither from SQLite.
//!
//! Why: a run start read the chat's cursor (with its pending messages) and the group's session,
//! each in a read transaction of its own. In the router bench's start burst (1,000 runs starting
//! within 50 ms on two cores) those reads were 15 % of all CPU samples, about a quarter of what
//! the runtime's workers (the path from a message to its run) spent.
//!
//! Exact, not a cache:
//! - the writer thread applies a committed cursor move or session to the mirror right after the
//!   COMMIT and before it answers the caller, so a caller that stopped waiting (a cancelled
//!   future) cannot leave the mirror behind SQLite;
//! - while a daemon owns the database, no other store writes these rows: a store that does not
//!   own the ingest journal takes the journal's shared lock to write a cursor or a session, and
//!   fails while a daemon holds it (see [`crate::journal_lock`]);
//! - so the mirror is loaded once, when the daemon's store opens, and is complete from then on.
//!
//! Other stores keep applying their own writes (it costs a map insert) but never answer from
//! the mirror: it was never loaded, and other processes may write the rows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::batch::WriteOp;
use crate::error::Result;
use crate::error::StoreError;

#[derive(Debug, Default)]
pub(crate) struct RunState {
    /// Set once the rows were loaded, in the store that owns messages.
    complete: AtomicBool,
    cursors: Mutex<HashMap<TenantId, HashMap<ChatJid, i64>>>,
    sessions: Mutex<HashMap<TenantId, HashMap<GroupFolder, String>>>,
}

impl RunState {
    /// Loads every cursor and session, then answers from memory. Called before the owning store
    /// is handed out, so no write of a cursor or session runs meanwhile.
    pub(crate) fn load(&self, conn: &Connection) -> Result<()> {
        let mut cursors = self.cursors.lock().map_err(|_| StoreError::Poisoned)?;
        let mut stmt = conn.prepare("SELECT tenant, chat_jid, last_seq FROM router_cursors")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (tenant, chat): (String, String) = (row.get(0)?, row.get(1)?);
            let (tenant, chat) = (
                TenantId::new(&tenant).map_err(|e| corrupt("router_cursors", &e))?,
                ChatJid::new(&chat).map_err(|e| corrupt("router_cursors", &e))?,
            );
            let seq: i64 = row.get(2)?;
            let known = cursors
                .entry(tenant)
                .or_default()
                .entry(chat)
                .or_insert(seq);
            *known = (*known).max(seq);
        }
        drop(rows);
        drop(stmt);
        let mut sessions = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        let mut stmt = conn.prepare("SELECT tenant, group_folder, session_id FROM sessions")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (tenant, folder): (String, String) = (row.get(0)?, row.get(1)?);
            let (tenant, folder) = (
                TenantId::new(&tenant).map_err(|e| corrupt("sessions", &e))?,
                GroupFolder::new(&folder).map_err(|e| corrupt("sessions", &e))?,
            );
            sessions
                .entry(tenant)
                .or_default()
                .entry(folder)
                .or_insert(row.get(2)?);
        }
        self.complete.store(true, Ordering::Release);
        Ok(())
    }

    /// The chat's cursor (0 before anything was handled), or `None` when this store does not
    /// answer from memory.
    pub(crate) fn cursor(&self, tenant: &TenantId, chat: &ChatJid) -> Option<i64> {
        if !self.complete.load(Ordering::Acquire) {
            return None;
        }
        let cursors = self.cursors.lock().ok()?;
        Some(
            cursors
                .get(tenant)
                .and_then(|t| t.get(chat))
                .copied()
                .unwrap_or(0),
        )
    }

    /// The group's session, or `None` when this store does not answer from memory.
    pub(crate) fn session(
        &self,
        tenant: &TenantId,
        folder: &GroupFolder,
    ) -> Option<Option<String>> {
        if !self.complete.load(Ordering::Acquire) {
            return None;
        }
        let sessions = self.sessions.lock().ok()?;
        Some(sessions.get(tenant).and_then(|t| t.get(folder)).cloned())
    }

    /// Applies a committed operation (the writer thread calls this after COMMIT, before it
    /// answers).
    pub(crate) fn committed(&self, op: &WriteOp) {
        match op {
            WriteOp::AdvanceCursor {
                tenant,
                chat_jid,
                seq,
            }
            | WriteOp::CommitReply {
                tenant,
                chat_jid,
                advance_to: Some(seq),
                ..
            } => self.cursor_moved(tenant, chat_jid, *seq),
            WriteOp::SetSession {
                tenant,
                folder,
                session_id,
            } => {
                if let Ok(mut sessions) = self.sessions.lock() {
                    sessions
                        .entry(tenant.clone())
                        .or_default()
                        .insert(folder.clone(), session_id.clone());
                }
            }
            WriteOp::StoreMessage(_)
            | WriteOp::MoveMessages(_)
            | WriteOp::ChatMetadata(_)
            | WriteOp::CommitReply {
                advance_to: None, ..
            } => {}
        }
    }

    /// A session was deleted (committed).
    pub(crate) fn session_cleared(&self, tenant: &TenantId, folder: &GroupFolder) {
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(group) = sessions.get_mut(tenant)
        {
            group.remove(folder);
        }
    }

    fn cursor_moved(&self, tenant: &TenantId, chat: &ChatJid, seq: i64) {
        let Ok(mut cursors) = self.cursors.lock() else {
            return;
        };
        // The row keeps the larger seq (`advance_cursor_in`), and so does the mirror.
        let chats = match cursors.get_mut(tenant) {
            Some(chats) => chats,
            None => cursors.entry(tenant.clone()).or_default(),
        };
        match chats.get_mut(chat) {
            Some(known) => *known = (*known).max(seq),
            None => {
                chats.insert(chat.clone(), seq);
            }
        }
    }
}

fn corrupt(table: &'static str, e: &cambot_protocol::IdError) -> StoreError {
    StoreError::CorruptRow {
        table,
        reason: e.to_string(),
    }
}
