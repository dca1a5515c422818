//! Per-session event streams with sequence numbers, so a client whose socket dropped can
//! reconnect and replay what it missed.
//!
//! Each session keeps a short buffer of numbered events (the deltas of the reply being written
//! and the latest replies). A reply supersedes the deltas before it, so those are pruned; the
//! buffer is also capped. A client subscribes with the last sequence number it saw (and the
//! server epoch it saw it in); when the buffer cannot cover the gap, the client is told to
//! re-read the durable history over HTTP instead.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_protocol::ChatJid;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::locks;

/// Most events kept per session for replay.
const BUFFER_EVENTS: usize = 512;
/// Live events queued per subscriber before it counts as lagging (it then replays).
const LIVE_CAPACITY: usize = 256;
/// Sessions kept in memory before idle ones (no subscriber) are dropped.
const MAX_IDLE_SESSIONS: usize = 10_000;

/// What a session's subscribers receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A piece of the reply being generated.
    Delta { seq: u64, text: String },
    /// A finished reply; `id` is its durable outbox id (also in the history).
    Reply { seq: u64, id: i64, text: String },
}

impl StreamEvent {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Delta { seq, .. } | Self::Reply { seq, .. } => *seq,
        }
    }
}

struct SessionStream {
    /// Sequence number of the last event published.
    head: u64,
    /// Events up to here may be missing from `events` (evicted by the cap).
    floor: u64,
    events: VecDeque<Arc<StreamEvent>>,
    live: broadcast::Sender<Arc<StreamEvent>>,
}

impl SessionStream {
    fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            head: 0,
            floor: 0,
            events: VecDeque::new(),
            live,
        }
    }
}

/// A subscription: what to replay, then the live feed.
pub struct Subscription {
    /// Events after the requested sequence number, in order.
    pub replay: Vec<Arc<StreamEvent>>,
    /// The gap could not be covered: the client must re-read the history.
    pub resync: bool,
    /// Sequence number of the newest event at subscription time.
    pub head: u64,
    pub live: broadcast::Receiver<Arc<StreamEvent>>,
}

/// All sessions' streams.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<ChatJid, SessionStream>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publish_delta(&self, jid: &ChatJid, text: &str) {
        self.publish(jid, |seq| StreamEvent::Delta {
            seq,
            text: text.to_owned(),
        });
    }

    pub fn publish_reply(&self, jid: &ChatJid, id: i64, text: &str) {
        self.publish(jid, |seq| StreamEvent::Reply {
            seq,
            id,
            text: text.to_owned(),
        });
    }

    fn publish(&self, jid: &ChatJid, make: impl FnOnce(u64) -> StreamEvent) {
        let mut sessions = locks::lock("web sessions", &self.sessions);
        if sessions.len() >= MAX_IDLE_SESSIONS && !sessions.contains_key(jid) {
            sessions.retain(|_, s| s.live.receiver_count() > 0);
        }
        let stream = sessions
            .entry(jid.clone())
            .or_insert_with(SessionStream::new);
        stream.head += 1;
        let event = Arc::new(make(stream.head));
        if matches!(*event, StreamEvent::Reply { .. }) {
            // The reply replaces the text streamed so far; replaying those deltas adds nothing.
            stream
                .events
                .retain(|e| matches!(**e, StreamEvent::Reply { .. }));
        }
        stream.events.push_back(Arc::clone(&event));
        while stream.events.len() > BUFFER_EVENTS {
            if let Some(old) = stream.events.pop_front() {
                stream.floor = old.seq();
            }
        }
        // No receiver is fine: the event stays buffered for the next subscriber.
        let _ = stream.live.send(event);
    }

    /// Subscribes to a session's stream, replaying events after `after`. `after` is only
    /// meaningful within the same epoch; callers pass 0 otherwise.
    pub fn subscribe(&self, jid: &ChatJid, after: u64) -> Subscription {
        let mut sessions = locks::lock("web sessions", &self.sessions);
        let stream = sessions
            .entry(jid.clone())
            .or_insert_with(SessionStream::new);
        let resync = after < stream.floor || after > stream.head;
        let replay = if resync {
            Vec::new()
        } else {
            stream
                .events
                .iter()
                .filter(|e| e.seq() > after)
                .cloned()
                .collect()
        };
        Subscription {
            replay,
            resync,
            head: stream.head,
            live: stream.live.subscribe(),
        }
    }

    /// Events after `after` still buffered, or `None` when the gap cannot be covered (used
    /// when a subscriber lagged behind the live feed).
    pub fn replay(&self, jid: &ChatJid, after: u64) -> Option<Vec<Arc<StreamEvent>>> {
        let sessions = locks::lock("web sessions", &self.sessions);
        let stream = sessions.get(jid)?;
        if after < stream.floor {
            return None;
        }
        Some(
            stream
                .events
                .iter()
                .filter(|e| e.seq() > after)
                .cloned()
                .collect(),
        )
    }

    /// Number of sessions held in memory.
    pub fn len(&self) -> usize {
        locks::lock("web sessions", &self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
