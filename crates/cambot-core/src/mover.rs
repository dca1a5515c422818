//! The mover: commits journaled messages into SQLite in batches, beside the router (see
//! [`crate::ingest`]). It holds each chat's messages for a while ([`crate::held`]), so that
//! a move carries many messages of few chats.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use crate::batch::WriteOp;
use crate::batch::Writer;
use crate::held::Held;
use crate::held::MOVE_HOLD;
use crate::ingest::Durability;
use crate::ingest::MOVE_EVERY;
use crate::ingest::MOVE_MAX;
use crate::ingest::MovedNotices;
use crate::overlay::Overlay;
use crate::overlay::Version;

pub(crate) struct Mover {
    pub(crate) rx: mpsc::Receiver<Vec<Version>>,
    /// Messages handed over and not committed yet, counted down after each commit (the ingest
    /// state stops taking messages while it is too high).
    pub(crate) unmoved: Arc<AtomicUsize>,
    pub(crate) writer: Arc<Writer>,
    /// Where committed versions go to leave the overlay.
    pub(crate) notices: MovedNotices,
    /// Only for when the ingest state cannot take the notice.
    pub(crate) overlay: Arc<Overlay>,
    pub(crate) durability: Arc<Durability>,
    /// Held until the last move is committed: a new owner replays only once this one is done.
    pub(crate) _lock: File,
}

impl Mover {
    pub(crate) fn run(self) {
        crate::priority::lower_this_thread();
        let mut held = Held::default();
        let mut open = true;
        while open {
            if held.is_empty() {
                match self.rx.recv() {
                    Ok(batch) => held.add(batch, Instant::now()),
                    Err(_) => break,
                }
            }
            // Let records accumulate without being woken for each batch of them.
            std::thread::sleep(MOVE_EVERY);
            loop {
                match self.rx.try_recv() {
                    Ok(batch) => held.add(batch, Instant::now()),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let due = if open {
                held.take_due(Instant::now(), MOVE_EVERY, MOVE_HOLD)
            } else {
                held.take_all()
            };
            let mut rest = due.into_iter().peekable();
            while rest.peek().is_some() {
                let batch: Vec<Version> = rest.by_ref().take(MOVE_MAX).collect();
                if !self.commit(batch) {
                    return;
                }
            }
            self.durability
                .moved_through
                .store(held.taken_through(), Ordering::Release);
        }
    }

    /// Commits one batch, retrying until it commits; false when the writer is gone.
    fn commit(&self, batch: Vec<Version>) -> bool {
        let mut op = WriteOp::MoveMessages(batch);
        loop {
            let Ok(outcome) = self.writer.submit_blocking_returning(op) else {
                // Nothing will be committed any more: callers must not wait for room that never
                // comes. Their next hand-over fails instead, and they see the store gone.
                self.unmoved.store(0, Ordering::Release);
                tracing::warn!(
                    "the database writer stopped before the ingest journal was moved; the next \
                     start replays it"
                );
                return false;
            };
            match outcome {
                (Ok(_), WriteOp::MoveMessages(moved)) => {
                    self.unmoved.fetch_sub(moved.len(), Ordering::AcqRel);
                    if let Err(moved) = self.notices.send(moved) {
                        self.overlay.remove_moved(&moved);
                    }
                    return true;
                }
                (Err(e), back) => {
                    // The messages stay acknowledged: in the journal and in the overlay.
                    tracing::error!(error = %e, "moving journaled messages into the database failed; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                    op = back;
                }
                (Ok(_), other) => {
                    tracing::error!(op = ?other, "the writer handed back another operation");
                    return true;
                }
            }
        }
    }
}
