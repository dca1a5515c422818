//! The cursor moves of a live run that answered without a reply, queued for the writer and not
//! awaited one by one.
//!
//! A silent answer only moves the chat's cursor. Awaiting each move cost a round trip through
//! the writer thread per message: the writer woke the run's task, which had nothing else to do
//! until the run's next event. The moves are queued instead, their outcomes collected at each
//! later event, and all of them awaited before the run ends, which is before anything reads the
//! cursor again (the next run of the group, the check for more pending messages). The writer
//! commits in queue order, so a later reply's commit lands after them.

use cambot_core::CursorMove;
use cambot_core::StoreError;

#[derive(Default)]
pub(super) struct QueuedCursorMoves(Vec<CursorMove>);

impl QueuedCursorMoves {
    pub(super) fn push(&mut self, queued: CursorMove) {
        self.0.push(queued);
    }

    /// Drops the moves that have committed; the first failure, if one failed.
    pub(super) fn reap(&mut self) -> Result<(), StoreError> {
        let mut failed = None;
        self.0.retain_mut(|m| match m.try_committed() {
            None => true,
            Some(Ok(())) => false,
            Some(Err(e)) => {
                failed.get_or_insert(e);
                false
            }
        });
        failed.map_or(Ok(()), Err)
    }

    /// Waits until every queued move has committed; the first failure, if one failed.
    pub(super) async fn settle(&mut self) -> Result<(), StoreError> {
        let mut failed = None;
        for m in self.0.drain(..) {
            if let Err(e) = m.committed().await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
