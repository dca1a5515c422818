//! Which message ids each chat may already have, so that the ingest path reads SQLite only
//! when a message might be a repeated delivery.
//!
//! Deciding repeat-or-new exactly needs the unique index `(tenant, chat_jid, id)`, and that
//! read was most of the ingest path's time (its connection's page cache is emptied at every
//! commit of the mover). A new message is by far the common case, so each chat keeps a Bloom
//! filter of its ids: loaded from the index at the chat's first message since the store opened,
//! and fed every id the ingest path accepts after that. "Not in the filter" is certain (the
//! ingest path is the only writer of messages while it runs); "maybe" is settled by the read.
//!
//! A filter grows by adding a layer twice the size of the last (a scalable Bloom filter), so it
//! never needs the index again. Chats with a very long history, and chats beyond a global budget,
//! are not filtered: every message of theirs is read, as before.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hash::BuildHasherDefault;
use std::hash::DefaultHasher;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::error::Result;

/// Bits per id in each layer; with [`PROBES`] probes a layer's false-positive rate is ~0.2 %.
const BITS_PER_ID: usize = 16;
const PROBES: u64 = 4;
/// Ids a new chat's first layer holds.
const MIN_CAPACITY: usize = 64;
/// A chat with more stored messages than this is not filtered (loading would stall ingest).
const MAX_LOADED: usize = 100_000;
/// At start, the ids of all chats are loaded in one scan when there are at most this many
/// (a fraction of a second); beyond, each chat loads at its first message.
const PRELOAD_MAX: usize = 500_000;
/// All filters together stay under this many bits (8 MiB).
const BUDGET_BITS: usize = 64 << 20;

struct Layer {
    bits: Vec<u64>,
    /// Bit count minus one (the bit count is a power of two).
    mask: u64,
    count: usize,
    capacity: usize,
}

impl Layer {
    fn with_capacity(capacity: usize) -> Self {
        let nbits = (capacity * BITS_PER_ID).next_power_of_two().max(64);
        Self {
            bits: vec![0; nbits / 64],
            mask: nbits as u64 - 1,
            count: 0,
            capacity,
        }
    }

    fn insert(&mut self, hash: u64) {
        for bit in probes(hash, self.mask) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.count += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        probes(hash, self.mask).all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn size_bits(&self) -> usize {
        self.bits.len() * 64
    }
}

/// The bits an id's hash sets in a layer of `mask + 1` bits (double hashing).
fn probes(hash: u64, mask: u64) -> impl Iterator<Item = u64> {
    let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
}

enum ChatIds {
    Filtered(Vec<Layer>),
    /// Too long a history, or over budget: every message is read.
    Unfiltered,
}

/// The ingest state's per-chat filters.
#[derive(Default)]
pub(crate) struct KnownIds {
    chats: HashMap<TenantId, HashMap<ChatJid, ChatIds>>,
    bits: usize,
    /// Every chat with stored messages has its filter already ([`KnownIds::preload`]): a chat
    /// without one has none, and needs no read to know it.
    complete: bool,
}

fn hash_id(id: &str) -> u64 {
    // Fixed keys: the filters live in one process, and a crafted collision only costs a read.
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

impl KnownIds {
    /// False when `id` is certainly not stored in the chat; true when it may be (read to know).
    /// Loads the chat's filter from `conn` at its first message.
    pub(crate) fn may_contain(
        &mut self,
        conn: &Connection,
        tenant: &TenantId,
        chat: &ChatJid,
        id: &str,
    ) -> Result<bool> {
        if self.chat(tenant, chat).is_none() {
            let loaded = if self.complete {
                self.filter_of(&[])
            } else {
                self.load(conn, tenant, chat)?
            };
            self.chats
                .entry(tenant.clone())
                .or_default()
                .insert(chat.clone(), loaded);
        }
        let hash = hash_id(id);
        Ok(match self.chat(tenant, chat) {
            Some(ChatIds::Filtered(layers)) => layers.iter().any(|l| l.may_contain(hash)),
            Some(ChatIds::Unfiltered) | None => true,
        })
    }

    /// Records that the chat now has `id` (call for every message accepted as new).
    pub(crate) fn insert(&mut self, tenant: &TenantId, chat: &ChatJid, id: &str) {
        let budget_left = BUDGET_BITS.saturating_sub(self.bits);
        let Some(ChatIds::Filtered(layers)) =
            self.chats.get_mut(tenant).and_then(|t| t.get_mut(chat))
        else {
            return;
        };
        let full = layers.last().is_none_or(|l| l.count >= l.capacity);
        if full {
            let capacity = layers.last().map_or(MIN_CAPACITY, |l| l.capacity * 2);
            let layer = Layer::with_capacity(capacity);
            if layer.size_bits() > budget_left {
                self.bits -= layers.iter().map(Layer::size_bits).sum::<usize>();
                if let Some(t) = self.chats.get_mut(tenant) {
                    t.insert(chat.clone(), ChatIds::Unfiltered);
                }
                return;
            }
            self.bits += layer.size_bits();
            layers.push(layer);
        }
        if let Some(layer) = layers.last_mut() {
            layer.insert(hash_id(id));
        }
    }

    /// Loads every chat's filter in one scan of the unique index, when the table is small
    /// enough; otherwise leaves each chat to load at its first message.
    pub(crate) fn preload(&mut self, conn: &Connection) -> Result<()> {
        let mut stmt = conn.prepare(
            "SELECT tenant, chat_jid, id FROM messages ORDER BY tenant, chat_jid LIMIT ?1",
        )?;
        let limit = i64::try_from(PRELOAD_MAX + 1).unwrap_or(i64::MAX);
        let mut rows = stmt.query([limit])?;
        let mut loaded: Vec<((String, String), Vec<String>)> = Vec::new();
        let mut count = 0;
        while let Some(row) = rows.next()? {
            count += 1;
            if count > PRELOAD_MAX {
                return Ok(());
            }
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            let id: String = row.get(2)?;
            match loaded.last_mut() {
                Some((k, ids)) if *k == key => ids.push(id),
                _ => loaded.push((key, vec![id])),
            }
        }
        let mut all_parsed = true;
        for ((tenant, chat), ids) in loaded {
            // A chat whose key does not parse is left to the lazy path (and its read).
            let (Ok(tenant), Ok(chat)) = (TenantId::new(&tenant), ChatJid::new(&chat)) else {
                all_parsed = false;
                continue;
            };
            let filter = if ids.len() > MAX_LOADED {
                ChatIds::Unfiltered
            } else {
                self.filter_of(&ids)
            };
            self.chats.entry(tenant).or_default().insert(chat, filter);
        }
        self.complete = all_parsed;
        Ok(())
    }

    /// A filter holding `ids`, or none when over budget.
    fn filter_of(&mut self, ids: &[String]) -> ChatIds {
        let mut layer = Layer::with_capacity((ids.len() * 2).max(MIN_CAPACITY));
        if layer.size_bits() > BUDGET_BITS.saturating_sub(self.bits) {
            return ChatIds::Unfiltered;
        }
        for id in ids {
            layer.insert(hash_id(id));
        }
        self.bits += layer.size_bits();
        ChatIds::Filtered(vec![layer])
    }

    fn chat(&self, tenant: &TenantId, chat: &ChatJid) -> Option<&ChatIds> {
        self.chats.get(tenant).and_then(|t| t.get(chat))
    }

    fn load(&mut self, conn: &Connection, tenant: &TenantId, chat: &ChatJid) -> Result<ChatIds> {
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM messages WHERE tenant = ?1 AND chat_jid = ?2 LIMIT ?3",
        )?;
        let limit = i64::try_from(MAX_LOADED + 1).unwrap_or(i64::MAX);
        let ids = stmt
            .query_map((tenant.as_str(), chat.as_str(), limit), |r| {
                r.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if ids.len() > MAX_LOADED {
            return Ok(ChatIds::Unfiltered);
        }
        Ok(self.filter_of(&ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_id_is_always_maybe_and_most_others_are_not() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE messages (tenant TEXT, chat_jid TEXT, id TEXT)")
            .unwrap();
        let (t, c) = (TenantId::default_tenant(), ChatJid::new("x:1").unwrap());
        let mut known = KnownIds::default();
        // The first call loads the (empty) chat.
        assert!(!known.may_contain(&conn, &t, &c, "in0").unwrap());
        for i in 0..10_000 {
            known.insert(&t, &c, &format!("in{i}"));
        }
        for i in 0..10_000 {
            assert!(known.may_contain(&conn, &t, &c, &format!("in{i}")).unwrap());
        }
        let false_positives = (0..10_000)
            .filter(|i| {
                known
                    .may_contain(&conn, &t, &c, &format!("out{i}"))
                    .unwrap()
            })
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }

    #[test]
    fn stored_ids_are_loaded_at_the_chats_first_message() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (tenant TEXT, chat_jid TEXT, id TEXT);
             INSERT INTO messages VALUES ('default', 'x:1', 'old1'), ('default', 'x:1', 'old2'),
                                         ('default', 'x:2', 'other');",
        )
        .unwrap();
        let (t, c) = (TenantId::default_tenant(), ChatJid::new("x:1").unwrap());
        let mut known = KnownIds::default();
        assert!(known.may_contain(&conn, &t, &c, "old1").unwrap());
        assert!(known.may_contain(&conn, &t, &c, "old2").unwrap());
        assert!(!known.may_contain(&conn, &t, &c, "other").unwrap());
    }

    #[test]
    fn a_preload_knows_every_chat_and_that_others_are_empty() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (tenant TEXT, chat_jid TEXT, id TEXT);
             INSERT INTO messages VALUES ('default', 'x:1', 'old1'), ('default', 'x:2', 'other');",
        )
        .unwrap();
        let mut known = KnownIds::default();
        known.preload(&conn).unwrap();
        // Rows added after the preload are not read again: the filters are trusted.
        conn.execute_batch("DROP TABLE messages").unwrap();
        let t = TenantId::default_tenant();
        let (one, two, three) = (
            ChatJid::new("x:1").unwrap(),
            ChatJid::new("x:2").unwrap(),
            ChatJid::new("x:3").unwrap(),
        );
        assert!(known.may_contain(&conn, &t, &one, "old1").unwrap());
        assert!(known.may_contain(&conn, &t, &two, "other").unwrap());
        assert!(!known.may_contain(&conn, &t, &three, "old1").unwrap());
    }
}
