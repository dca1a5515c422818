//! Messages acknowledged through the ingest journal but not yet moved into SQLite.
//!
//! Every read of messages consults the overlay first and the database second, and merges the
//! two by seq (the overlay's version wins). A message leaves the overlay only after the
//! transaction that moved it has committed, so a message missing from the overlay is in the
//! snapshot of any read that starts afterwards: nothing is ever missed, and a message seen in
//! both places is shown once.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;

use crate::messages::StoredMessage;

/// One version of a message: `record` numbers the journal record that carried it, so that a
/// move of an older version never removes a newer one (a repeated delivery with new content).
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) record: u64,
    pub(crate) message: Arc<StoredMessage>,
}

#[derive(Default)]
struct ChatOverlay {
    by_seq: BTreeMap<i64, Version>,
    by_id: HashMap<String, i64>,
    /// The largest seq of this chat that SQLite holds (0: none). Raised under the same lock
    /// that drops moved messages, so every message above it is still here.
    stored_through: i64,
}

impl ChatOverlay {
    /// Copies of the messages with a seq above `after`, oldest first.
    fn messages_after(&self, after: i64) -> Vec<StoredMessage> {
        self.by_seq
            .range(after.saturating_add(1)..)
            .map(|(_, v)| StoredMessage::clone(&v.message))
            .collect()
    }
}

pub(crate) struct Overlay {
    chats: Mutex<Chats>,
}

impl Overlay {
    /// An overlay for a database whose chats hold messages up to these seqs: every chat of the
    /// database must be listed (a chat left out counts as holding none).
    pub(crate) fn with_stored(stored: impl Iterator<Item = (TenantId, ChatJid, i64)>) -> Self {
        let mut chats = Chats::new();
        for (tenant, chat, seq) in stored {
            chats
                .entry(tenant)
                .or_default()
                .entry(chat)
                .or_default()
                .stored_through = seq;
        }
        Self {
            chats: Mutex::new(chats),
        }
    }

    fn with_chat<T>(
        &self,
        tenant: &TenantId,
        chat: &ChatJid,
        read: impl FnOnce(&ChatOverlay) -> T,
    ) -> Option<T> {
        let chats = self.chats.lock().ok()?;
        chats.get(tenant).and_then(|t| t.get(chat)).map(read)
    }

    /// For each key, the seq of an unmoved message with that id, if there is one. Under one
    /// hold of the lock: the ingest state asks for every message of a batch, and each hold is a
    /// chance to wait behind a reader.
    pub(crate) fn find_all<'a>(
        &self,
        keys: impl Iterator<Item = (&'a TenantId, &'a ChatJid, &'a str)>,
    ) -> Vec<Option<i64>> {
        let Ok(chats) = self.chats.lock() else {
            return keys.map(|_| None).collect();
        };
        keys.map(|(tenant, chat, id)| {
            chats
                .get(tenant)
                .and_then(|t| t.get(chat))
                .and_then(|c| c.by_id.get(id).copied())
        })
        .collect()
    }

    /// Adds (or replaces) versions of messages, under one lock.
    pub(crate) fn insert_all(&self, versions: impl Iterator<Item = Version>) {
        let Ok(mut chats) = self.chats.lock() else {
            return;
        };
        for version in versions {
            insert_locked(&mut chats, version);
        }
    }

    /// Drops the versions a committed move carried (not newer versions of the same messages).
    ///
    /// Whoever works the ingest state calls this for the mover (see [`crate::mover`]), so that
    /// no thread of lowered priority holds the lock. In slices of [`REMOVE_SLICE`], each under its own hold
    /// of the lock, so that readers get in between. Each message leaves with its chat's
    /// `stored_through` raised in the same hold, so what a read sees stays exact.
    pub(crate) fn remove_moved(&self, moved: &[Version]) {
        for slice in moved.chunks(REMOVE_SLICE) {
            let Ok(mut chats) = self.chats.lock() else {
                return;
            };
            for v in slice {
                remove_locked(&mut chats, v);
            }
        }
    }

    /// A chat's unmoved messages with a seq above `after`, oldest first (bot messages included).
    pub(crate) fn chat_after(
        &self,
        tenant: &TenantId,
        chat: &ChatJid,
        after: i64,
    ) -> Vec<StoredMessage> {
        self.with_chat(tenant, chat, |c| c.messages_after(after))
            .unwrap_or_default()
    }

    /// [`Overlay::chat_after`] when that is the whole answer: when SQLite holds no message of
    /// the chat above `after`, so a read needs no SQLite transaction. `None` otherwise.
    pub(crate) fn only_unstored_after(
        &self,
        tenant: &TenantId,
        chat: &ChatJid,
        after: i64,
    ) -> Option<Vec<StoredMessage>> {
        let chats = self.chats.lock().ok()?;
        let Some(c) = chats.get(tenant).and_then(|t| t.get(chat)) else {
            return Some(Vec::new());
        };
        (c.stored_through <= after).then(|| c.messages_after(after))
    }

    /// The largest seq of a chat's unmoved non-bot messages.
    pub(crate) fn latest_non_bot(&self, tenant: &TenantId, chat: &ChatJid) -> Option<i64> {
        self.with_chat(tenant, chat, |c| {
            c.by_seq
                .iter()
                .rev()
                .find(|(_, v)| !v.message.is_bot_message)
                .map(|(seq, _)| *seq)
        })
        .flatten()
    }

    /// How many messages are waiting to be moved (for tests and logs).
    pub(crate) fn len(&self) -> usize {
        self.chats
            .lock()
            .map(|c| {
                c.values()
                    .flat_map(|t| t.values())
                    .map(|c| c.by_seq.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

type Chats = HashMap<TenantId, HashMap<ChatJid, ChatOverlay>>;

/// Moved messages dropped per hold of the overlay's lock (see [`Overlay::remove_moved`]).
const REMOVE_SLICE: usize = 32;

fn remove_locked(chats: &mut Chats, v: &Version) {
    let m = &v.message;
    let Some(chat) = chats
        .get_mut(&m.tenant)
        .and_then(|t| t.get_mut(&m.chat_jid))
    else {
        return;
    };
    chat.stored_through = chat.stored_through.max(m.seq);
    if chat
        .by_seq
        .get(&m.seq)
        .is_some_and(|o| o.record == v.record)
    {
        chat.by_seq.remove(&m.seq);
        chat.by_id.remove(&m.id);
    }
}

fn insert_locked(chats: &mut Chats, version: Version) {
    let m = &version.message;
    let chat = match chats.get_mut(&m.tenant) {
        Some(t) => t,
        None => chats.entry(m.tenant.clone()).or_default(),
    };
    let chat = match chat.get_mut(&m.chat_jid) {
        Some(c) => c,
        None => chat.entry(m.chat_jid.clone()).or_default(),
    };
    if !chat.by_id.contains_key(&m.id) {
        chat.by_id.insert(m.id.clone(), m.seq);
    }
    chat.by_seq.insert(m.seq, version);
}

/// Merges rows read from the database with overlay rows (both oldest first): sorted by seq,
/// the overlay's version of a seq wins.
pub(crate) fn merge(db: Vec<StoredMessage>, overlay: Vec<StoredMessage>) -> Vec<StoredMessage> {
    if overlay.is_empty() {
        return db;
    }
    let mut all: BTreeMap<i64, StoredMessage> = db.into_iter().map(|m| (m.seq, m)).collect();
    for m in overlay {
        all.insert(m.seq, m);
    }
    all.into_values().collect()
}
