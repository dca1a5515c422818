//! The message router (seed-spec section 1, event-driven).
//!
//! Inbound: a channel hands a message to [`RouterHost`](crate::host::RouterHost)'s
//! `on_message`; it is stored, then either piped into the chat's live run or wakes the group's
//! queue at once. No polling on this path; a slow sweep ([`Router::recover_pending`]) only
//! re-queues groups after a crash.
//!
//! A run answers batches of messages in order. Each `result` the run reports says how many input
//! batches it answered; the reply and the cursor move past those batches are committed together
//! to the outbox, then delivered. So a crash can neither lose an answered message's reply nor
//! answer a message twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;

use cambot_channels::Channel;
use cambot_core::Arrival;
use cambot_core::NewReply;
use cambot_core::Store;
use cambot_core::StoredMessage;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupKey;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use tokio::time::Instant;

use crate::agent_run::AgentRunner;
use crate::agent_run::BoxFuture;
use crate::agent_run::RunEvent;
use crate::agent_run::RunOutcome;
use crate::agent_run::RunPurpose;
use crate::agent_run::RunRequest;
use crate::agent_run::RunStartError;
use crate::formatting::PromptMessage;
use crate::formatting::Trigger;
use crate::formatting::format_messages;
use crate::formatting::passes_gate;
use crate::group_cache::GroupCache;
use crate::locks;
use crate::outbox::Outbox;
use crate::queue::GroupQueue;
use crate::queue::MessageProcessor;
use crate::queue::RunSlot;
use cambot_protocol::reply::format_outbound;

mod idle;
mod live;
mod tenants;
mod typing;

use typing::TYPING_QUEUE;
use typing::typing_loop;

use idle::IdleDeadline;
use live::LiveRun;
use tenants::DisabledTenants;

/// Router settings (resolved from the config file).
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub assistant_name: String,
    pub trigger: Trigger,
    /// Close a live run after this long without a new result (seed IDLE_TIMEOUT).
    pub idle_timeout: Duration,
    /// Most messages put into one prompt; the rest wait for the next run.
    pub max_batch_messages: usize,
}

/// The router. Cheap to share (`Arc<Router>`).
pub struct Router {
    store: Arc<dyn Store>,
    settings: RouterSettings,
    queue: GroupQueue,
    runner: Arc<dyn AgentRunner>,
    outbox: Outbox,
    channels: Arc<RwLock<Vec<Arc<dyn Channel>>>>,
    groups: RwLock<GroupCache>,
    /// Tenants whose messages wait (see [`tenants`]).
    disabled: DisabledTenants,
    /// Held across a refresh's read of the registrations and its swap, and across a
    /// registration's store write and cache insert: a refresh that read the table just before
    /// a registration committed would otherwise overwrite the cache without it (the chat's
    /// messages were then stored but not routed until the next refresh).
    registrations: tokio::sync::Mutex<()>,
    live: Mutex<HashMap<GroupKey, LiveRun>>,
    /// Typing indicator changes, applied in order by one background task.
    typing_tx: tokio::sync::mpsc::Sender<(TenantId, ChatJid, bool)>,
    /// Our own `Arc`, for futures that must own the router.
    me: std::sync::Weak<Router>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// Why the router refused or failed something.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] cambot_core::StoreError),
}

impl Router {
    /// Builds the router and its queue. `channels` is filled by the daemon after the channels
    /// (which need the router as their host) are connected.
    pub async fn new(
        store: Arc<dyn Store>,
        settings: RouterSettings,
        runner: Arc<dyn AgentRunner>,
        outbox: Outbox,
        channels: Arc<RwLock<Vec<Arc<dyn Channel>>>>,
        max_concurrent_runs: usize,
        retry: crate::queue::RetryPolicy,
    ) -> Result<Arc<Self>, RouterError> {
        let groups = load_group_cache(store.as_ref()).await?;
        let disabled = DisabledTenants::load(store.as_ref()).await?;
        let (typing_tx, typing_rx) = tokio::sync::mpsc::channel(TYPING_QUEUE);
        let router = Arc::new_cyclic(|weak: &std::sync::Weak<Router>| {
            let processor: std::sync::Weak<dyn MessageProcessor> = weak.clone();
            Router {
                store,
                settings,
                queue: GroupQueue::new(processor, max_concurrent_runs, retry),
                runner,
                outbox,
                channels,
                groups: RwLock::new(groups),
                disabled,
                registrations: tokio::sync::Mutex::new(()),
                live: Mutex::new(HashMap::new()),
                typing_tx,
                me: weak.clone(),
            }
        });
        tokio::spawn(typing_loop(Arc::downgrade(&router), typing_rx));
        Ok(router)
    }

    pub fn queue(&self) -> &GroupQueue {
        &self.queue
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }

    /// The registration of a chat, from the in-memory cache.
    pub fn group_for(&self, tenant: &TenantId, jid: &ChatJid) -> Option<RegisteredGroup> {
        self.cached_group(tenant, jid).map(Arc::unwrap_or_clone)
    }

    /// [`Self::group_for`] without copying the registration (every stored message asks).
    fn cached_group(&self, tenant: &TenantId, jid: &ChatJid) -> Option<Arc<RegisteredGroup>> {
        locks::read("group cache", &self.groups)
            .chat(tenant, jid)
            .cloned()
    }

    /// Re-reads registrations and disabled tenants after a change made outside the router
    /// (admin CLI, IPC).
    pub async fn refresh_groups(&self) -> Result<(), RouterError> {
        {
            let _serial = self.registrations.lock().await;
            let fresh = load_group_cache(self.store.as_ref()).await?;
            *locks::write("group cache", &self.groups) = fresh;
        }
        self.refresh_disabled_tenants().await
    }

    /// Stores a registration with `write` and records it in the cache, with no refresh in
    /// between (see [`Self::refresh_groups`]).
    pub async fn register_group<E, F>(
        &self,
        write: impl FnOnce(Arc<dyn Store>) -> F,
    ) -> Result<RegisteredGroup, E>
    where
        F: std::future::Future<Output = Result<RegisteredGroup, E>>,
    {
        let _serial = self.registrations.lock().await;
        let group = write(Arc::clone(&self.store)).await?;
        locks::write("group cache", &self.groups).insert(group.clone());
        Ok(group)
    }

    /// Handles a stored message: pipe it into the chat's live run, or wake the group's queue.
    pub async fn route_stored(&self, arrival: &Arrival) {
        let message = &arrival.message;
        let Some(group) = self.cached_group(&message.tenant, &message.chat_jid) else {
            return;
        };
        if self.disabled.contains(&group.tenant) {
            // Stored; answered once the tenant is enabled again.
            return;
        }
        let key = GroupKey::new(group.tenant.clone(), group.folder.clone());
        if self.try_pipe(&key, &group, arrival).await {
            return;
        }
        self.queue.enqueue_message_check(&key);
    }

    /// Re-queues every group with messages newer than its cursor (start-up and periodic sweep).
    /// Returns how many groups were queued.
    pub async fn recover_pending(&self) -> Result<usize, RouterError> {
        let groups = self.store.all_registered_groups().await?;
        let mut queued = 0;
        for g in groups.iter().filter(|g| !self.disabled.contains(&g.tenant)) {
            let cursor = self.store.cursor(&g.tenant, &g.jid).await?;
            if self.store.latest_message_seq(&g.tenant, &g.jid).await? > cursor {
                let key = GroupKey::new(g.tenant.clone(), g.folder.clone());
                if !self.queue.is_running(&key) {
                    self.queue.enqueue_message_check(&key);
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Whether some chat has messages that will be answered (they pass the trigger gate) and
    /// have no committed reply yet. Storage errors count as "yes": callers wait rather than
    /// drop work.
    pub async fn has_unanswered(&self) -> bool {
        let Ok(groups) = self.store.all_registered_groups().await else {
            return true;
        };
        // A disabled tenant's messages wait for it to be enabled, not for this process.
        for g in groups.iter().filter(|g| !self.disabled.contains(&g.tenant)) {
            let key = GroupKey::new(g.tenant.clone(), g.folder.clone());
            if !matches!(self.next_batch(&key).await, Ok(None)) {
                return true;
            }
        }
        false
    }

    /// The channel of a tenant's chat: by `(tenant, jid)`, since two tenants may each have a
    /// chat with the same jid.
    fn find_channel(&self, tenant: &TenantId, jid: &ChatJid) -> Option<Arc<dyn Channel>> {
        locks::read("channels", &self.channels)
            .iter()
            .find(|c| c.owns_jid(tenant, jid))
            .cloned()
    }

    /// Queues a typing indicator change; a full queue drops it (indicators are best effort).
    fn typing(&self, tenant: &TenantId, jid: &ChatJid, on: bool) {
        let _ = self.typing_tx.try_send((tenant.clone(), jid.clone(), on));
    }

    /// The chat of this folder whose oldest pending message is oldest, with its pending batch.
    /// A chat whose batch fails the trigger gate is skipped (its messages stay as context).
    async fn next_batch(&self, key: &GroupKey) -> Result<Option<ChatBatch>, RouterError> {
        let mut best: Option<ChatBatch> = None;
        let groups = locks::read("group cache", &self.groups).in_folder(key);
        for group in groups {
            let Some(pending) = self.answerable_batch(&group).await? else {
                continue;
            };
            let older = best.as_ref().is_none_or(|(_, b)| pending[0].seq < b[0].seq);
            if older {
                best = Some((group, pending));
            }
        }
        Ok(best)
    }

    /// The chat's messages after its cursor, if there are any and they pass the trigger gate.
    async fn answerable_batch(
        &self,
        group: &RegisteredGroup,
    ) -> Result<Option<Vec<StoredMessage>>, RouterError> {
        let pending = self
            .store
            .pending_messages(&group.tenant, &group.jid, self.settings.max_batch_messages)
            .await?;
        let answerable = !pending.is_empty()
            && passes_gate(
                &self.settings.trigger,
                group.is_main(),
                group.requires_trigger,
                pending.iter().map(|m| m.content.as_str()),
            );
        Ok(answerable.then_some(pending))
    }

    async fn process(self: Arc<Self>, key: GroupKey, slot: RunSlot) -> bool {
        // In place before the batch is read: a message stored after the read finds the run
        // starting and is piped once it is up (see `LiveRun::started`).
        self.live().insert(key.clone(), LiveRun::starting());
        let (group, request, last_seq) = match self.first_batch(&key).await {
            Ok(Some(found)) => found,
            outcome => {
                self.live().remove(&key);
                return outcome.is_ok();
            }
        };
        if let Some(run) = self.live().get_mut(&key) {
            run.first_batch(&group.jid, last_seq);
        }
        self.typing(&group.tenant, &group.jid, true);
        let ok = self.drive_run(&key, &group, request, last_seq, &slot).await;
        let leftover = self.live().remove(&key).map_or(0, |run| run.unanswered());
        self.typing(&group.tenant, &group.jid, false);
        if !ok {
            return false;
        }
        if leftover > 0
            && self
                .store
                .cursor(&group.tenant, &group.jid)
                .await
                .unwrap_or(0)
                < last_seq
        {
            // The run ended without answering even its first batch: treat as a failure so the
            // retry backoff applies instead of an immediate restart loop.
            tracing::warn!(group = %key, "run ended without answering its messages");
            return false;
        }
        // Piped messages the run never answered, or other chats of this folder that queued up
        // meanwhile: run again.
        match self.next_batch(&key).await {
            Ok(Some(_)) => self.queue.enqueue_message_check(&key),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(group = %key, error = %e, "checking for more pending messages failed")
            }
        }
        true
    }

    /// The run request for the folder's next pending batch, with the batch's last seq. `Ok(None)`
    /// when there is nothing to run now; `Err` (logged) when the run should be retried.
    async fn first_batch(
        &self,
        key: &GroupKey,
    ) -> Result<Option<(Arc<RegisteredGroup>, RunRequest, i64)>, ()> {
        match self.tenant_serves(&key.tenant).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(group = %key, "tenant disabled: messages wait until it is enabled");
                return Ok(None);
            }
            Err(e) => {
                tracing::error!(group = %key, error = %e, "reading the tenant's state failed");
                return Err(());
            }
        }
        let (group, batch) = match self.next_batch(key).await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(group = %key, error = %e, "reading pending messages failed");
                return Err(());
            }
        };
        if self.find_channel(&group.tenant, &group.jid).is_none() {
            // Nothing can deliver the reply; leave the messages for when a channel owns the chat.
            tracing::warn!(chat = %group.jid, "no channel owns this chat; messages stay pending");
            return Ok(None);
        }
        let Some(last_seq) = batch.last().map(|m| m.seq) else {
            return Ok(None);
        };
        let session_id = match self.store.session(&key.tenant, &key.folder).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(group = %key, error = %e, "reading the session failed");
                return Err(());
            }
        };
        let request = RunRequest {
            run_id: RunId::from_bytes(rand::random()),
            group: RegisteredGroup::clone(&group),
            chat_jid: group.jid.clone(),
            prompt: prompt_for(&batch),
            session_id,
            purpose: RunPurpose::Messages,
        };
        Ok(Some((group, request, last_seq)))
    }

    /// Starts the run and follows it to the end. True unless it failed with messages unanswered.
    async fn drive_run(
        &self,
        key: &GroupKey,
        group: &RegisteredGroup,
        request: RunRequest,
        last_seq: i64,
        slot: &RunSlot,
    ) -> bool {
        let run_id = request.run_id.clone();
        let request_session = request.session_id.clone();
        let mut run = match self.runner.start(request).await {
            Ok(run) => run,
            Err(e @ RunStartError::MissingSecret { .. }) => {
                return self.answer_missing_secret(key, group, &e, last_seq).await;
            }
            Err(e) => {
                tracing::error!(group = %key, run = %run_id, error = %e, "run did not start");
                return false;
            }
        };
        slot.register_run(run.control.clone(), Some(group.jid.clone()));
        self.run_started(key, group).await;
        let mut idle = IdleDeadline::default();
        let mut failure: Option<String> = None;
        let mut session = request_session;
        loop {
            let event = tokio::select! {
                event = run.events.recv() => event,
                () = idle.passed() => {
                    if self.unanswered(key) == 0 {
                        tracing::debug!(group = %key, "idle timeout: closing run");
                        self.queue.close_stdin(key);
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                failure.get_or_insert_with(|| "run ended without an exit event".to_owned());
                break;
            };
            match event {
                RunEvent::Result {
                    text,
                    session_id,
                    inputs,
                } => {
                    if let Some(sid) = session_id
                        && session.as_ref() != Some(&sid)
                    {
                        match self.store.set_session(&key.tenant, &key.folder, &sid).await {
                            Ok(()) => session = Some(sid),
                            Err(e) => {
                                tracing::error!(group = %key, error = %e, "saving the session failed")
                            }
                        }
                    }
                    let advance_to = self.take_answered(key, inputs);
                    let reply = text.as_deref().map(format_outbound).unwrap_or_default();
                    if let Err(e) = self.commit(group, reply, advance_to).await {
                        tracing::error!(group = %key, error = %e, "committing a reply failed");
                        failure.get_or_insert_with(|| format!("commit failed: {e}"));
                        run.control.kill().await;
                        continue;
                    }
                    self.typing(&group.tenant, &group.jid, false);
                    if self.unanswered(key) == 0 {
                        slot.notify_idle();
                        idle.set(Instant::now() + self.settings.idle_timeout);
                    }
                }
                RunEvent::TextDelta(text) => {
                    if let Some(channel) = self.find_channel(&group.tenant, &group.jid) {
                        channel.stream_delta(&group.tenant, &group.jid, &text).await;
                    }
                }
                RunEvent::Error { message, retryable } => {
                    tracing::warn!(group = %key, run = %run_id, retryable, error = %message, "run reported an error");
                    failure.get_or_insert(message);
                }
                RunEvent::Exited(exit) => {
                    if exit.limits_degraded {
                        tracing::warn!(group = %key, run = %run_id, "run limits were degraded (no cgroup rights)");
                    }
                    if let RunOutcome::Failed { reason } = exit.outcome {
                        failure.get_or_insert(reason);
                    }
                    break;
                }
                RunEvent::Ready | RunEvent::Activity { .. } | RunEvent::Usage { .. } => {}
            }
        }
        match failure {
            Some(reason) if self.unanswered(key) > 0 => {
                tracing::warn!(group = %key, run = %run_id, reason = %reason, "run failed with unanswered messages");
                false
            }
            Some(reason) => {
                tracing::info!(group = %key, run = %run_id, reason = %reason, "run failed after answering everything");
                true
            }
            None => true,
        }
    }

    /// Answers the batch with why no run starts (the tenant lacks its provider key), so the
    /// messages are not retried in a loop. True once committed.
    async fn answer_missing_secret(
        &self,
        key: &GroupKey,
        group: &RegisteredGroup,
        e: &RunStartError,
        last_seq: i64,
    ) -> bool {
        tracing::warn!(group = %key, error = %e, "run not started: the tenant lacks its provider key");
        let hint = match e {
            RunStartError::MissingSecret { tenant, name } => {
                format!("\nset it with: cambot secrets set --tenant {tenant} {name}")
            }
            _ => String::new(),
        };
        match self
            .commit(group, format!("{e}{hint}"), Some(last_seq))
            .await
        {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(group = %key, error = %err, "committing the missing-secret reply failed");
                false
            }
        }
    }

    /// Commits a reply (when non-empty) with its cursor move, then wakes the outbox. Without a
    /// reply, only moves the cursor.
    async fn commit(
        &self,
        group: &RegisteredGroup,
        reply: String,
        advance_to: Option<i64>,
    ) -> Result<(), RouterError> {
        if reply.is_empty() {
            if let Some(seq) = advance_to {
                self.store
                    .advance_cursor(&group.tenant, &group.jid, seq)
                    .await?;
            }
            return Ok(());
        }
        self.store
            .commit_reply(NewReply {
                tenant: group.tenant.clone(),
                chat_jid: group.jid.clone(),
                text: reply,
                origin: "router".to_owned(),
                advance_to,
            })
            .await?;
        self.outbox.kick();
        Ok(())
    }
}

impl MessageProcessor for Router {
    fn process_messages(&self, key: GroupKey, slot: RunSlot) -> BoxFuture<'static, bool> {
        // The queue holds the router weakly and only calls while it is alive.
        match self.me.upgrade() {
            Some(me) => Box::pin(me.process(key, slot)),
            None => Box::pin(async { false }),
        }
    }
}

/// A chat's registration with its pending messages.
type ChatBatch = (Arc<RegisteredGroup>, Vec<StoredMessage>);

fn prompt_for(batch: &[StoredMessage]) -> String {
    format_messages(batch.iter().map(|m| PromptMessage {
        sender_name: &m.sender_name,
        timestamp: &m.timestamp,
        content: &m.content,
    }))
}

async fn load_group_cache(store: &dyn Store) -> Result<GroupCache, RouterError> {
    Ok(GroupCache::from_groups(
        store.all_registered_groups().await?,
    ))
}
