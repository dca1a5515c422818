//! Live message runs as the router sees them: what each has been given and has answered, and
//! piping later messages into it (including those that arrived while it was starting).

use std::collections::HashMap;
use std::collections::VecDeque;

use cambot_core::Arrival;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupKey;
use cambot_protocol::RegisteredGroup;

use super::Router;
use super::prompt_for;
use crate::formatting::passes_gate;

/// A live message run, as the router sees it.
pub(super) struct LiveRun {
    /// The chat it answers (`None` while its first batch is being read).
    chat: Option<ChatJid>,
    /// The last message seq handed to the run (initial prompt or pipe).
    last_seq: i64,
    /// The last seq of each input batch not yet answered, in order.
    unanswered: VecDeque<i64>,
    /// False until the queue can pipe into the run. A message that arrives before cannot be
    /// piped, and the message check its arrival queues runs only after the run ends (its idle
    /// timeout, 30 minutes by default): the run takes such messages as soon as it is up.
    started: bool,
    /// The chats of messages that arrived before the run was started.
    missed: Vec<ChatJid>,
}

impl LiveRun {
    /// A run whose first batch is about to be read.
    pub(super) fn starting() -> Self {
        Self {
            chat: None,
            last_seq: 0,
            unanswered: VecDeque::new(),
            started: false,
            missed: Vec::new(),
        }
    }

    /// Input batches given and not answered yet.
    pub(super) fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// The run answers `chat`, starting with the batch that ends at `last_seq`.
    pub(super) fn first_batch(&mut self, chat: &ChatJid, last_seq: i64) {
        self.chat = Some(chat.clone());
        self.last_seq = last_seq;
        self.unanswered.push_back(last_seq);
    }
}

impl Router {
    /// The live runs' bookkeeping (never held across an await).
    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, LiveRun>> {
        crate::locks::lock("live runs", &self.live)
    }

    /// Pipes messages newer than what the live run has seen, if a live run answers this chat
    /// and the batch passes the trigger gate. True when nothing is left for a message check.
    pub(super) async fn try_pipe(
        &self,
        key: &GroupKey,
        group: &RegisteredGroup,
        arrival: &Arrival,
    ) -> bool {
        {
            let mut live = self.live();
            let Some(run) = live.get_mut(key) else {
                return false;
            };
            if !run.started {
                // The caller still queues a message check (the message may be for another chat
                // of the folder); the starting run catches up with its own chat once it is up.
                if !run.missed.contains(&group.jid) {
                    run.missed.push(group.jid.clone());
                }
                return false;
            }
            if run.chat.as_ref() == Some(&group.jid) {
                if arrival.message.seq <= run.last_seq {
                    // The run has it already (a repeated delivery, or piped with a later one).
                    return true;
                }
                if arrival.previous_in_chat == Some(run.last_seq) {
                    // The run has seen everything before this message: nothing to read back.
                    let piped =
                        self.pipe_batch(key, group, run, std::slice::from_ref(&arrival.message));
                    drop(live);
                    if piped {
                        self.typing(&group.tenant, &group.jid, true);
                    }
                    return piped;
                }
            }
        }
        if self.live_chat(key).as_ref() != Some(&group.jid) {
            self.make_way_for(key, &group.jid).await;
            return false;
        }
        self.pipe_read_back(key, group).await
    }

    /// The chat the started live run of `key` answers.
    fn live_chat(&self, key: &GroupKey) -> Option<ChatJid> {
        self.live()
            .get(key)
            .filter(|r| r.started)
            .and_then(|r| r.chat.clone())
    }

    /// Reads the chat's messages newer than what the live run has seen and pipes them. The read
    /// happens without the live-run lock; what another arrival piped meanwhile is left out.
    /// True when nothing is left for a message check.
    async fn pipe_read_back(&self, key: &GroupKey, group: &RegisteredGroup) -> bool {
        let Some(since) = self.live_seen(key, &group.jid) else {
            return false;
        };
        let mut pending = match self
            .store
            .messages_since(
                &group.tenant,
                &group.jid,
                since,
                self.settings.max_batch_messages,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(group = %key, error = %e, "reading messages to pipe failed");
                return false;
            }
        };
        let piped = {
            let mut live = self.live();
            let Some(run) = live
                .get_mut(key)
                .filter(|r| r.started && r.chat.as_ref() == Some(&group.jid))
            else {
                return false;
            };
            pending.retain(|m| m.seq > run.last_seq);
            self.pipe_batch(key, group, run, &pending)
        };
        if piped {
            self.typing(&group.tenant, &group.jid, true);
        }
        piped
    }

    /// The last seq the started live run of `key` has seen, if it answers `chat`.
    fn live_seen(&self, key: &GroupKey, chat: &ChatJid) -> Option<i64> {
        self.live()
            .get(key)
            .filter(|r| r.started && r.chat.as_ref() == Some(chat))
            .map(|r| r.last_seq)
    }

    /// Pipes `pending` (the chat's messages the run has not seen, oldest first) into the run if
    /// they pass the trigger gate. True when nothing is left for a message check.
    fn pipe_batch(
        &self,
        key: &GroupKey,
        group: &RegisteredGroup,
        run: &mut LiveRun,
        pending: &[cambot_core::StoredMessage],
    ) -> bool {
        let Some(last) = pending.last().map(|m| m.seq) else {
            return true;
        };
        if !passes_gate(
            &self.settings.trigger,
            group.is_main(),
            group.requires_trigger,
            pending.iter().map(|m| m.content.as_str()),
        ) {
            // Stays stored as context for the next triggered batch.
            return true;
        }
        if !self
            .queue
            .send_message(key, &group.jid, prompt_for(pending))
        {
            return false;
        }
        run.last_seq = last;
        run.unanswered.push_back(last);
        true
    }

    /// The run of `key` is up: from now on arrivals are piped into it, and what arrived while
    /// it was starting is piped now.
    pub(super) async fn run_started(&self, key: &GroupKey, group: &RegisteredGroup) {
        let missed = {
            let mut live = self.live();
            let Some(run) = live.get_mut(key) else {
                return;
            };
            run.started = true;
            std::mem::take(&mut run.missed)
        };
        if missed.contains(&group.jid) {
            self.pipe_read_back(key, group).await;
        }
        for chat in missed.iter().filter(|chat| **chat != group.jid) {
            self.make_way_for(key, chat).await;
        }
    }

    /// `chat` (of the folder `key`) has messages the live run cannot take: if they will be
    /// answered, the run closes once idle so that they get a run of their own.
    async fn make_way_for(&self, key: &GroupKey, chat: &ChatJid) {
        let Some(group) = self.cached_group(&key.tenant, chat) else {
            return;
        };
        // A failed read counts as answerable: closing an idle run early loses nothing.
        if !matches!(self.answerable_batch(&group).await, Ok(None)) {
            self.queue.preempt_idle_run(key);
        }
    }

    pub(super) fn unanswered(&self, key: &GroupKey) -> usize {
        self.live().get(key).map_or(0, |r| r.unanswered.len())
    }

    /// Pops `inputs` answered batches; returns the cursor they complete.
    pub(super) fn take_answered(&self, key: &GroupKey, inputs: u32) -> Option<i64> {
        let mut live = self.live();
        let run = live.get_mut(key)?;
        let mut last = None;
        for _ in 0..inputs {
            match run.unanswered.pop_front() {
                Some(seq) => last = Some(seq),
                None => break,
            }
        }
        last
    }
}
