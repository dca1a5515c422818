//! The ingest state: what decides, numbers and journals each message (see [`crate::ingest`]).
//!
//! It is worked by whichever caller finds it free ([`crate::ingest::Shared::combine`]), so it
//! takes every queued job, not only the caller's own; and it only gathers the answers, which
//! the caller sends after letting go of the state: waking the other callers' tasks is work that
//! needs no lock.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OptionalExtension;

use crate::error::Result;
use crate::error::StoreError;
use crate::ingest::Durability;
use crate::ingest::Job;
use crate::ingest::Reply;
use crate::journal;
use crate::known_ids::KnownIds;
use crate::messages::Arrival;
use crate::messages::StoredMessage;
use crate::overlay::Overlay;
use crate::overlay::Version;

/// Most messages taken into one journal write.
const INGEST_BATCH: usize = 1024;
/// Most journal writes one drain makes before it lets go of the state (the rest waits for the
/// next caller, or the ingest thread's next round): a caller's own message is answered at the
/// first, and it should not work for everyone else for long.
const DRAIN_BATCHES: usize = 8;
/// Messages handed to the mover and not yet committed, past which no more are taken (SQLite has
/// fallen behind for longer than a stall; callers then wait in the queue).
pub(crate) const MOVER_BACKLOG: usize = 100_000;
/// Versions dropped from the overlay per drain when no message was taken.
const MOVED_SLICE: usize = 64;
/// A segment past this size is sealed once the other one is free.
const SEGMENT_BYTES: u64 = 8 << 20;

pub(crate) struct IngestLoop {
    pub(crate) rx: tokio::sync::mpsc::Receiver<Job>,
    pub(crate) files: [File; 2],
    pub(crate) paths: [std::path::PathBuf; 2],
    /// The segment appended to; only the ingest state changes it (mirrored in
    /// `Segments::active`).
    pub(crate) active: usize,
    pub(crate) active_len: u64,
    pub(crate) generation: u64,
    pub(crate) reader: Connection,
    pub(crate) overlay: Arc<Overlay>,
    /// `None` once closed: the mover then finishes what it has.
    pub(crate) to_mover: Option<mpsc::Sender<Vec<Version>>>,
    /// Messages handed to the mover and not committed yet (the mover counts them down).
    pub(crate) unmoved: Arc<AtomicUsize>,
    pub(crate) durability: Arc<Durability>,
    pub(crate) next_seq: i64,
    pub(crate) next_record: u64,
    /// Per chat, the seq of its newest message (what `previous_in_chat` reports).
    pub(crate) tails: HashMap<TenantId, HashMap<ChatJid, i64>>,
    pub(crate) known: KnownIds,
    pub(crate) buf: Vec<u8>,
    /// Committed versions still to drop from the overlay, a slice at a time, so that a large
    /// move never holds up the messages behind it.
    pub(crate) moved: VecDeque<Version>,
    pub(crate) closed: bool,
    /// Tests widen the moment between a drain's last look at the queue and the state being let
    /// go, where a job queued by another caller must not be left behind.
    #[cfg(test)]
    pub(crate) linger: Option<std::time::Duration>,
}

/// What one drain took and owes: sent and dropped after the state is let go.
#[derive(Default)]
pub(crate) struct Drained {
    /// Store and close jobs taken off the queue.
    pub(crate) taken: usize,
    /// Stopped because the mover is too far behind (jobs may be left in the queue).
    pub(crate) held_back: bool,
    /// Committed versions still waiting to leave the overlay after this drain's share.
    pub(crate) moved_left: usize,
    answers: Vec<(Reply, Result<Arrival>)>,
    moved: Vec<Version>,
}

impl Drained {
    /// Answers the callers and drops the moved versions from the overlay.
    pub(crate) fn finish(self, overlay: &Overlay) {
        for (reply, result) in self.answers {
            reply.send(result);
        }
        if !self.moved.is_empty() {
            overlay.remove_moved(&self.moved);
        }
    }
}

/// One message of a batch, decided.
struct Decided {
    version: Version,
    /// `None` for a repeated delivery.
    new_in_chat: Option<Option<i64>>,
    reply: Reply,
}

impl IngestLoop {
    /// Takes queued jobs until the queue is empty (or [`DRAIN_BATCHES`] writes were made, or the
    /// mover is too far behind to take more).
    pub(crate) fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        let mut stored = 0;
        for _ in 0..DRAIN_BATCHES {
            if self.unmoved.load(Ordering::Acquire) >= MOVER_BACKLOG {
                drained.held_back = true;
                break;
            }
            let mut batch = Vec::new();
            let mut jobs = 0;
            let mut closing = false;
            while batch.len() < INGEST_BATCH {
                let Ok(job) = self.rx.try_recv() else {
                    break;
                };
                jobs += 1;
                match job {
                    Job::Store(msg, reply) => {
                        drained.taken += 1;
                        if self.closed {
                            drained.answers.push((reply, Err(StoreError::WriterGone)));
                        } else {
                            batch.push((msg, reply));
                        }
                    }
                    Job::Moved(versions) => self.moved.extend(versions),
                    Job::Close => {
                        drained.taken += 1;
                        // Stores queued before the close are still taken (below); later ones
                        // fail (the next batch).
                        closing = true;
                        break;
                    }
                }
            }
            stored += batch.len();
            if !batch.is_empty() {
                self.ingest(batch, &mut drained.answers);
            }
            if closing {
                self.close();
            }
            if jobs == 0 {
                break;
            }
        }
        #[cfg(test)]
        if let Some(linger) = self.linger {
            std::thread::sleep(linger);
        }
        // While messages keep coming, at twice their rate, so the overlay cannot grow without
        // bound.
        let most = MOVED_SLICE.max(2 * stored).min(self.moved.len());
        drained.moved = self.moved.drain(..most).collect();
        drained.moved_left = self.moved.len();
        drained
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stops taking messages; dropping the mover's sender lets it commit what it holds and
    /// release the journal's lock.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.to_mover = None;
    }

    fn ingest(
        &mut self,
        batch: Vec<(InboundMessage, Reply)>,
        answers: &mut Vec<(Reply, Result<Arrival>)>,
    ) {
        self.buf.clear();
        let mut decided: Vec<Decided> = Vec::with_capacity(batch.len());
        let unmoved = self.overlay.find_all(
            batch
                .iter()
                .map(|(m, _)| (&m.tenant, &m.chat_jid, m.id.as_str())),
        );
        for ((msg, reply), unmoved) in batch.into_iter().zip(unmoved) {
            // A repeat within this batch, then of an unmoved message, then of a stored one.
            let repeat_of = decided
                .iter()
                .rev()
                .map(|d| &d.version.message)
                .find(|m| m.id == msg.id && m.chat_jid == msg.chat_jid && m.tenant == msg.tenant)
                .map(|m| m.seq)
                .or(unmoved);
            let repeat_of = match repeat_of {
                Some(seq) => Some(seq),
                None => match self.stored_seq(&msg) {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::error!(error = %e, chat = %msg.chat_jid, "checking for a repeated delivery failed");
                        answers.push((reply, Err(e)));
                        continue;
                    }
                },
            };
            let (seq, new_in_chat) = match repeat_of {
                Some(seq) => (seq, None),
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.known.insert(&msg.tenant, &msg.chat_jid, &msg.id);
                    // Set before the write: if it fails, the tail names a seq no reader has
                    // seen, which only makes the next reader read back.
                    (seq, Some(self.set_tail(&msg, seq)))
                }
            };
            journal::encode(&mut self.buf, seq, &msg);
            let record = self.next_record;
            self.next_record += 1;
            decided.push(Decided {
                version: Version {
                    record,
                    message: Arc::new(StoredMessage::stored(msg, seq)),
                },
                new_in_chat,
                reply,
            });
        }
        if decided.is_empty() {
            return;
        }
        let active = self.active;
        if let Err(e) = self.files[active].write_all(&self.buf) {
            let err = journal::io_error("appending to", &self.paths[active], &e);
            tracing::error!(error = %err, messages = decided.len(), "journaling messages failed");
            // A partial write is a torn tail for replay; truncate it so later records follow
            // whole ones.
            if let Err(e) = self.files[active].set_len(self.active_len) {
                tracing::error!(error = %e, "cutting a partial journal write failed");
            }
            for d in decided {
                answers.push((d.reply, Err(StoreError::Journal(err.to_string()))));
            }
            return;
        }
        self.active_len += self.buf.len() as u64;
        self.overlay
            .insert_all(decided.iter().map(|d| d.version.clone()));
        // One hand-over per batch: the mover is not woken per message.
        let versions: Vec<Version> = decided.iter().map(|d| d.version.clone()).collect();
        let count = versions.len();
        self.unmoved.fetch_add(count, Ordering::AcqRel);
        let mover_gone = self
            .to_mover
            .as_ref()
            .is_none_or(|mover| mover.send(versions).is_err());
        if mover_gone {
            self.unmoved.fetch_sub(count, Ordering::AcqRel);
        }
        for d in decided {
            if mover_gone {
                answers.push((d.reply, Err(StoreError::WriterGone)));
                continue;
            }
            answers.push((
                d.reply,
                Ok(Arrival {
                    message: StoredMessage::clone(&d.version.message),
                    previous_in_chat: d.new_in_chat.flatten(),
                }),
            ));
        }
        self.maybe_switch_segment();
    }

    /// Records `seq` as the chat's newest message; returns the one before it, if known.
    fn set_tail(&mut self, msg: &InboundMessage, seq: i64) -> Option<i64> {
        let tails = match self.tails.get_mut(&msg.tenant) {
            Some(t) => t,
            None => self.tails.entry(msg.tenant.clone()).or_default(),
        };
        match tails.get_mut(&msg.chat_jid) {
            Some(tail) => Some(std::mem::replace(tail, seq)),
            None => {
                tails.insert(msg.chat_jid.clone(), seq);
                None
            }
        }
    }

    /// The seq the database has for this message's id, if it has it (read only when the chat's
    /// filter says it may).
    fn stored_seq(&mut self, msg: &InboundMessage) -> Result<Option<i64>> {
        if !self
            .known
            .may_contain(&self.reader, &msg.tenant, &msg.chat_jid, &msg.id)?
        {
            return Ok(None);
        }
        Ok(self
            .reader
            .prepare_cached(
                "SELECT seq FROM messages WHERE tenant = ?1 AND chat_jid = ?2 AND id = ?3",
            )?
            .query_row(
                (msg.tenant.as_str(), msg.chat_jid.as_str(), msg.id.as_str()),
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Seals the active segment once it is large and the other one has been emptied.
    fn maybe_switch_segment(&mut self) {
        if self.active_len < SEGMENT_BYTES {
            return;
        }
        let Ok(mut segments) = self.durability.segments.lock() else {
            return;
        };
        if segments.sealed_through.is_some() {
            return;
        }
        let next = 1 - segments.active;
        let generation = self.generation + 1;
        if let Err(e) = journal::start_segment(&mut self.files[next], &self.paths[next], generation)
        {
            tracing::warn!(error = %e, "switching ingest journal segments failed; appending on");
            return;
        }
        segments.sealed_through = Some(self.next_record - 1);
        segments.active = next;
        self.active = next;
        self.generation = generation;
        self.active_len = journal::HEADER_LEN;
    }
}
