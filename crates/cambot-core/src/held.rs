//! The journaled messages the mover holds back, per chat, so that each move carries many
//! messages of few chats.
//!
//! Why: every moved row goes into two chat-keyed b-trees (the `(tenant, chat_jid, id)` unique
//! index and `messages_chat_seq`). A move of a few hundred messages that arrived together
//! touches a different leaf of each for nearly every row, when 1,000 chats are active: about
//! two WAL frames per message, each written, checksummed and checkpointed. Held until a chat
//! has gathered some, a chat's messages share their leaves. A standalone run of the messages
//! schema (200k rows, 200 per transaction, 1,000 interleaved chats): 34–46 µs per row moved
//! in arrival order, 17–18 µs grouped by chat half a second's worth at a time
//! (docs/benchmarks.md, thirteenth pass).
//!
//! Each tick the mover takes the chats holding the oldest messages: every chat whose oldest
//! message has waited [`MOVE_HOLD`], and beyond those, oldest first, a share of all it holds
//! (the share one tick of [`MOVE_HOLD`] is), so that the chats do not all come due together
//! after a burst. A chat's messages always leave in the order they came (one chat's rows are
//! never split out of order), which the overlay's `stored_through` relies on.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;

use crate::overlay::Version;

/// How long the mover holds a chat's oldest message at most.
pub(crate) const MOVE_HOLD: Duration = Duration::from_millis(500);
/// Past this many held messages, the oldest chats leave whatever their age (SQLite fell
/// behind, or a flood of messages): memory and the journal's size stay bounded.
const HOLD_MAX: usize = 50_000;

struct HeldChat {
    /// When the oldest of `versions` reached the mover.
    since: Instant,
    /// In the order they reached the mover (record order).
    versions: Vec<Version>,
}

/// Messages waiting for the mover, by chat.
#[derive(Default)]
pub(crate) struct Held {
    chats: HashMap<(TenantId, ChatJid), HeldChat>,
    count: usize,
    /// The largest record received.
    last_record: u64,
}

impl Held {
    /// Holds the versions of a journal batch (in record order) that reached the mover at `now`.
    pub(crate) fn add(&mut self, batch: Vec<Version>, now: Instant) {
        self.count += batch.len();
        for version in batch {
            self.last_record = self.last_record.max(version.record);
            let m = &version.message;
            self.chats
                .entry((m.tenant.clone(), m.chat_jid.clone()))
                .or_insert_with(|| HeldChat {
                    since: now,
                    versions: Vec::new(),
                })
                .versions
                .push(version);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Takes the chats due at `now` (one tick of `tick` after the last), oldest first; each
    /// chat's versions stay together and in order.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        tick: Duration,
        hold: Duration,
    ) -> Vec<Version> {
        let share = (self.count as u128 * tick.as_nanos() / hold.as_nanos().max(1)) as usize;
        let mut by_age: Vec<(Instant, &(TenantId, ChatJid), usize)> = self
            .chats
            .iter()
            .map(|(key, chat)| (chat.since, key, chat.versions.len()))
            .collect();
        by_age.sort_unstable_by_key(|(since, _, _)| *since);
        // Chosen first, removed after: only the chats that leave have their key copied.
        let (mut taking, mut left) = (0, self.count);
        let mut chosen = Vec::new();
        for (since, key, len) in by_age {
            let aged = now.duration_since(since) >= hold;
            if !aged && taking >= share && left <= HOLD_MAX {
                break;
            }
            taking += len;
            left -= len;
            chosen.push(key.clone());
        }
        let mut due = Vec::with_capacity(taking);
        for key in chosen {
            if let Some(chat) = self.chats.remove(&key) {
                due.extend(chat.versions);
            }
        }
        self.count = left;
        due
    }

    /// Takes everything, in record order (the mover is closing).
    pub(crate) fn take_all(&mut self) -> Vec<Version> {
        let mut all: Vec<Version> = self
            .chats
            .drain()
            .flat_map(|(_, chat)| chat.versions)
            .collect();
        self.count = 0;
        all.sort_by_key(|v| v.record);
        all
    }

    /// Every record up to this one has been taken: the last record received when nothing is
    /// held, else the one before the oldest held.
    pub(crate) fn taken_through(&self) -> u64 {
        self.chats
            .values()
            .filter_map(|chat| chat.versions.first())
            .map(|v| v.record.saturating_sub(1))
            .min()
            .unwrap_or(self.last_record)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cambot_protocol::InboundMessage;

    use super::*;
    use crate::messages::StoredMessage;

    fn version(record: u64, chat: &str) -> Version {
        let msg = InboundMessage {
            tenant: TenantId::default_tenant(),
            chat_jid: ChatJid::new(chat).unwrap(),
            id: format!("m{record}"),
            sender: "s@x".into(),
            sender_name: "s".into(),
            content: "hi".into(),
            timestamp: "2026-12-02T00:00:00.000Z".into(),
            is_from_me: false,
            is_bot_message: false,
        };
        Version {
            record,
            message: Arc::new(StoredMessage::stored(msg, i64::try_from(record).unwrap())),
        }
    }

    fn records(versions: &[Version]) -> Vec<u64> {
        versions.iter().map(|v| v.record).collect()
    }

    const TICK: Duration = Duration::from_millis(10);
    const HOLD: Duration = Duration::from_millis(500);

    #[test]
    fn a_chat_leaves_whole_and_in_order_once_its_oldest_has_waited() {
        let t0 = Instant::now();
        let mut held = Held::default();
        held.add(vec![version(1, "x:a"), version(2, "x:b")], t0);
        held.add(vec![version(3, "x:a")], t0 + Duration::from_millis(300));
        assert!(
            held.take_due(t0 + Duration::from_millis(100), TICK, HOLD)
                .is_empty()
        );
        assert_eq!(held.taken_through(), 0);
        let due = held.take_due(t0 + HOLD, TICK, HOLD);
        // Both chats' oldest came at t0: both leave, each whole and in order.
        let mut got = records(&due);
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
        let a: Vec<u64> = due
            .iter()
            .filter(|v| v.message.chat_jid.as_str() == "x:a")
            .map(|v| v.record)
            .collect();
        assert_eq!(a, [1, 3]);
        assert!(held.is_empty());
        assert_eq!(held.taken_through(), 3);
    }

    #[test]
    fn the_watermark_stops_before_the_oldest_held_record() {
        let t0 = Instant::now();
        let mut held = Held::default();
        held.add(vec![version(1, "x:a"), version(2, "x:b")], t0);
        held.add(vec![version(3, "x:b"), version(4, "x:c")], t0 + HOLD);
        // x:a and x:b are due (their oldest came at t0); x:c is not.
        let due = held.take_due(t0 + HOLD, TICK, HOLD);
        assert_eq!(due.len(), 3);
        assert_eq!(held.len(), 1);
        assert_eq!(held.taken_through(), 3, "record 4 is still held");
    }

    #[test]
    fn beyond_the_aged_chats_a_share_of_the_oldest_leaves_each_tick() {
        let t0 = Instant::now();
        let mut held = Held::default();
        for n in 0..100u64 {
            held.add(
                vec![version(n + 1, &format!("x:c{n}"))],
                t0 + Duration::from_millis(n),
            );
        }
        // One tick's share of 100 held with a 500 ms hold: 2 messages, the two oldest chats.
        let due = held.take_due(t0 + Duration::from_millis(100), TICK, HOLD);
        assert_eq!(records(&due), [1, 2]);
        assert_eq!(held.taken_through(), 2);
    }

    #[test]
    fn everything_leaves_when_too_much_is_held_and_on_close() {
        let t0 = Instant::now();
        let mut held = Held::default();
        let flood: Vec<Version> = (1..=(HOLD_MAX as u64 + 10))
            .map(|n| version(n, &format!("x:c{}", n % 7)))
            .collect();
        held.add(flood, t0);
        let due = held.take_due(t0, TICK, HOLD);
        assert!(due.len() >= 10, "nothing left over the cap");
        held.add(vec![version(HOLD_MAX as u64 + 11, "x:z")], t0);
        let rest = held.take_all();
        assert!(rest.windows(2).all(|w| w[0].record < w[1].record));
        assert!(held.is_empty());
        assert_eq!(held.taken_through(), HOLD_MAX as u64 + 11);
    }
}
