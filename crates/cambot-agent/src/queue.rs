//! The group queue (seed-spec section 2): at most one run per group, at most
//! `max_concurrent_runs` globally, tasks before messages, follow-ups piped into a live run,
//! retries with backoff, and a shutdown that stops intake and drains with a deadline.
//!
//! Each busy group has one worker task (owned by the queue's tracker) that takes a global permit
//! (an owned semaphore permit, FIFO-fair across groups) before each run and gives it back after,
//! so a group with a stream of work cannot starve a waiting one.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::Weak;
use std::time::Duration;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupKey;
use cambot_protocol::TaskId;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_run::BoxFuture;
use crate::agent_run::RunControl;

/// Processes a group's pending messages (the router). Returns true on success; false schedules
/// a retry.
pub trait MessageProcessor: Send + Sync {
    fn process_messages(&self, key: GroupKey, slot: RunSlot) -> BoxFuture<'static, bool>;
}

/// The body of a queued task run.
pub type TaskFn = Box<dyn FnOnce(RunSlot) -> BoxFuture<'static, ()> + Send>;

/// A task waiting for its group.
pub struct QueuedTask {
    pub id: TaskId,
    pub run: TaskFn,
}

impl std::fmt::Debug for QueuedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedTask")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Retry rules for failed message runs: `base × 2^(n−1)` for n = 1..=max_retries, then drop
/// until the next inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Running {
    Messages,
    Task(TaskId),
}

#[derive(Default)]
struct GroupState {
    /// A worker task owns this group.
    worker: bool,
    running: Option<Running>,
    control: Option<RunControl>,
    /// The chat a live message run answers (pipes go only there).
    chat: Option<ChatJid>,
    idle_waiting: bool,
    /// When the run last became idle (for choosing which idle run to preempt).
    idle_since: Option<tokio::time::Instant>,
    close_requested: bool,
    /// Messages wait that the live run cannot take (another chat of its folder): the run is
    /// closed as soon as it is idle, so the worker runs again for them.
    preempt_when_idle: bool,
    pending_messages: bool,
    pending_tasks: VecDeque<QueuedTask>,
    retry_count: u32,
}

impl GroupState {
    fn is_quiet(&self) -> bool {
        !self.worker
            && self.running.is_none()
            && !self.pending_messages
            && self.pending_tasks.is_empty()
            && self.retry_count == 0
    }

    fn request_close(&mut self) {
        if !self.close_requested
            && let Some(control) = &self.control
        {
            control.close();
            self.close_requested = true;
        }
    }
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupKey, GroupState>,
    shutting_down: bool,
}

struct Inner {
    state: Mutex<State>,
    permits: Arc<Semaphore>,
    processor: Weak<dyn MessageProcessor>,
    tracker: TaskTracker,
    /// Cancelled when shutdown begins: stops waiting workers and retry timers.
    intake: CancellationToken,
    /// Workers waiting for a global slot right now.
    waiting: std::sync::atomic::AtomicUsize,
    retry: RetryPolicy,
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct GroupQueue {
    inner: Arc<Inner>,
}

/// A run's link back to the queue: register the live run, report idleness.
#[derive(Clone)]
pub struct RunSlot {
    queue: GroupQueue,
    key: GroupKey,
}

impl RunSlot {
    pub fn key(&self) -> &GroupKey {
        &self.key
    }

    /// Records the live run so follow-ups can be piped into it (`chat` for message runs) and
    /// shutdown can close it.
    pub fn register_run(&self, control: RunControl, chat: Option<ChatJid>) {
        let mut state = self.queue.lock();
        let shutting_down = state.shutting_down;
        if let Some(g) = state.groups.get_mut(&self.key) {
            g.control = Some(control);
            g.chat = chat;
            g.close_requested = false;
            if shutting_down {
                g.request_close();
            }
        }
    }

    /// The run finished a turn and waits for input; a pending task preempts it.
    pub fn notify_idle(&self) {
        self.queue.notify_idle(&self.key);
    }

    /// Cancelled when shutdown begins.
    pub fn shutdown_started(&self) -> CancellationToken {
        self.queue.inner.intake.clone()
    }
}

impl GroupQueue {
    pub fn new(
        processor: Weak<dyn MessageProcessor>,
        max_concurrent: usize,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
                processor,
                tracker: TaskTracker::new(),
                intake: CancellationToken::new(),
                waiting: std::sync::atomic::AtomicUsize::new(0),
                retry,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters more than stopping all message processing would, so recover the guard.
        crate::locks::lock("group queue", &self.inner.state)
    }

    /// A group has (or may have) unprocessed messages.
    pub fn enqueue_message_check(&self, key: &GroupKey) {
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        let g = state.groups.entry(key.clone()).or_default();
        g.pending_messages = true;
        if !g.worker {
            g.worker = true;
            drop(state);
            self.spawn_worker(key.clone());
        }
    }

    /// Messages are pending that the group's live message run cannot take (it answers another
    /// chat of the folder). Like a pending task, they close the run once it is idle (now, if it
    /// is), instead of waiting for its idle timeout; the worker then runs again for them.
    pub fn preempt_idle_run(&self, key: &GroupKey) {
        let mut state = self.lock();
        if let Some(g) = state.groups.get_mut(key)
            && g.running == Some(Running::Messages)
        {
            g.preempt_when_idle = true;
            if g.idle_waiting {
                g.request_close();
            }
        }
    }

    /// Queues a task run. A task already queued or running for this group is not queued again
    /// (seed DEFECT: the running task's id was not checked).
    pub fn enqueue_task(&self, key: &GroupKey, task: QueuedTask) -> bool {
        let mut state = self.lock();
        if state.shutting_down {
            return false;
        }
        let g = state.groups.entry(key.clone()).or_default();
        let running_same = matches!(&g.running, Some(Running::Task(id)) if *id == task.id);
        if running_same || g.pending_tasks.iter().any(|t| t.id == task.id) {
            tracing::debug!(group = %key, task = %task.id, "task already queued or running; not queued again");
            return false;
        }
        g.pending_tasks.push_back(task);
        if g.running.is_some() && g.idle_waiting {
            g.request_close();
        }
        if !g.worker {
            g.worker = true;
            drop(state);
            self.spawn_worker(key.clone());
        }
        true
    }

    /// Pipes a follow-up into the group's live message run for `chat`. False when there is no
    /// such run (then the caller enqueues a message check instead).
    pub fn send_message(&self, key: &GroupKey, chat: &ChatJid, text: String) -> bool {
        let mut state = self.lock();
        let Some(g) = state.groups.get_mut(key) else {
            return false;
        };
        if g.running != Some(Running::Messages)
            || g.chat.as_ref() != Some(chat)
            || g.close_requested
        {
            return false;
        }
        let Some(control) = &g.control else {
            return false;
        };
        if control.send_message(text) {
            g.idle_waiting = false;
            g.idle_since = None;
            true
        } else {
            false
        }
    }

    /// The live run finished a turn and is waiting; a pending task preempts it.
    pub fn notify_idle(&self, key: &GroupKey) {
        let mut state = self.lock();
        let others_waiting = self.inner.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if let Some(g) = state.groups.get_mut(key) {
            g.idle_waiting = true;
            g.idle_since = Some(tokio::time::Instant::now());
            // A pending task of this group, or another group waiting for a slot, preempts the
            // idle run at once.
            if !g.pending_tasks.is_empty() || others_waiting || g.preempt_when_idle {
                g.request_close();
            }
        }
    }

    /// Asks the group's live run to finish (idle timeout).
    pub fn close_stdin(&self, key: &GroupKey) {
        let mut state = self.lock();
        if let Some(g) = state.groups.get_mut(key) {
            g.request_close();
        }
    }

    /// Number of runs executing now.
    pub fn active_runs(&self) -> usize {
        self.lock()
            .groups
            .values()
            .filter(|g| g.running.is_some())
            .count()
    }

    /// Whether shutdown has begun (intake stopped).
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// True when no group has a run, queued work or a pending retry.
    pub fn is_idle(&self) -> bool {
        self.lock().groups.is_empty()
    }

    /// Whether a group has a live run.
    pub fn is_running(&self, key: &GroupKey) -> bool {
        self.lock()
            .groups
            .get(key)
            .is_some_and(|g| g.running.is_some())
    }

    /// Stops intake, asks every live run to finish, waits up to `grace`, then kills what is left
    /// and waits up to `kill_grace` more. Returns true when everything stopped in time.
    pub async fn shutdown(&self, grace: Duration, kill_grace: Duration) -> bool {
        let live: Vec<RunControl> = {
            let mut state = self.lock();
            state.shutting_down = true;
            state
                .groups
                .values_mut()
                .filter_map(|g| {
                    g.pending_tasks.clear();
                    g.request_close();
                    g.control.clone()
                })
                .collect()
        };
        self.inner.intake.cancel();
        self.inner.tracker.close();
        tracing::info!(live_runs = live.len(), "queue draining");
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        let remaining: Vec<RunControl> = {
            let state = self.lock();
            state
                .groups
                .values()
                .filter_map(|g| g.control.clone())
                .collect()
        };
        tracing::warn!(
            runs = remaining.len(),
            "drain deadline passed; killing runs"
        );
        for control in &remaining {
            control.kill().await;
        }
        tokio::time::timeout(kill_grace, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// Forces every live run to stop now (second signal).
    pub async fn kill_all(&self) {
        let controls: Vec<RunControl> = {
            let state = self.lock();
            state
                .groups
                .values()
                .filter_map(|g| g.control.clone())
                .collect()
        };
        for control in controls {
            control.kill().await;
        }
    }

    fn spawn_worker(&self, key: GroupKey) {
        let queue = self.clone();
        self.inner
            .tracker
            .spawn(async move { queue.worker(key).await });
    }

    /// Another group waits for a slot: ask the run idle the longest to finish, so an idle run
    /// never holds a slot against real work (the seed kept it until the idle timeout).
    fn preempt_idle(&self) {
        let mut state = self.lock();
        let oldest = state
            .groups
            .values_mut()
            .filter(|g| g.idle_waiting && !g.close_requested && g.control.is_some())
            .min_by_key(|g| g.idle_since);
        if let Some(g) = oldest {
            g.request_close();
        }
    }

    async fn worker(self, key: GroupKey) {
        loop {
            let permit = match Arc::clone(&self.inner.permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.inner
                        .waiting
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    self.preempt_idle();
                    let permit = tokio::select! {
                        biased;
                        () = self.inner.intake.cancelled() => None,
                        permit = Arc::clone(&self.inner.permits).acquire_owned() => permit.ok(),
                    };
                    self.inner
                        .waiting
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    permit
                }
            };
            let Some(permit) = permit else {
                self.release_worker(&key);
                return;
            };
            let Some(work) = self.take_work(&key) else {
                return;
            };
            let slot = RunSlot {
                queue: self.clone(),
                key: key.clone(),
            };
            match work {
                Work::Messages => {
                    let ok = match self.inner.processor.upgrade() {
                        Some(processor) => {
                            // Run on its own task so a panic becomes a failed run, not a dead worker.
                            let fut = processor.process_messages(key.clone(), slot);
                            match tokio::spawn(fut).await {
                                Ok(ok) => ok,
                                Err(e) => {
                                    tracing::error!(group = %key, error = %e, "message processing panicked");
                                    false
                                }
                            }
                        }
                        None => false,
                    };
                    self.finish_run(&key, Some(ok));
                }
                Work::Task(task) => {
                    let id = task.id.clone();
                    if let Err(e) = tokio::spawn((task.run)(slot)).await {
                        tracing::error!(group = %key, task = %id, error = %e, "task run panicked");
                    }
                    self.finish_run(&key, None);
                }
            }
            drop(permit);
        }
    }

    /// Picks the group's next work (tasks first), or retires the worker when there is none.
    fn take_work(&self, key: &GroupKey) -> Option<Work> {
        let mut state = self.lock();
        let shutting_down = state.shutting_down;
        let g = state.groups.get_mut(key)?;
        if shutting_down {
            g.worker = false;
            return None;
        }
        if let Some(task) = g.pending_tasks.pop_front() {
            g.running = Some(Running::Task(task.id.clone()));
            return Some(Work::Task(task));
        }
        if g.pending_messages {
            g.pending_messages = false;
            g.running = Some(Running::Messages);
            return Some(Work::Messages);
        }
        g.worker = false;
        if g.is_quiet() {
            state.groups.remove(key);
        }
        None
    }

    fn release_worker(&self, key: &GroupKey) {
        let mut state = self.lock();
        if let Some(g) = state.groups.get_mut(key) {
            g.worker = false;
            if g.is_quiet() {
                state.groups.remove(key);
            }
        }
    }

    /// Clears the run's state; `Some(false)` (a failed message run) schedules a retry.
    fn finish_run(&self, key: &GroupKey, message_outcome: Option<bool>) {
        let retry_in = {
            let mut state = self.lock();
            let Some(g) = state.groups.get_mut(key) else {
                return;
            };
            g.running = None;
            g.control = None;
            g.chat = None;
            g.idle_waiting = false;
            g.idle_since = None;
            g.close_requested = false;
            g.preempt_when_idle = false;
            match message_outcome {
                Some(true) => {
                    g.retry_count = 0;
                    None
                }
                Some(false) => {
                    g.retry_count += 1;
                    if g.retry_count > self.inner.retry.max_retries {
                        tracing::warn!(
                            group = %key,
                            retries = self.inner.retry.max_retries,
                            "message processing keeps failing; dropping until the next message (messages stay stored)"
                        );
                        g.retry_count = 0;
                        None
                    } else {
                        let exp = g.retry_count - 1;
                        Some(self.inner.retry.base.saturating_mul(1u32 << exp.min(16)))
                    }
                }
                None => None,
            }
        };
        if let Some(delay) = retry_in {
            tracing::info!(group = %key, delay_ms = delay.as_millis() as u64, "retrying message processing later");
            let queue = self.clone();
            let key = key.clone();
            let intake = self.inner.intake.clone();
            self.inner.tracker.spawn(async move {
                tokio::select! {
                    () = intake.cancelled() => {}
                    () = tokio::time::sleep(delay) => queue.enqueue_message_check(&key),
                }
            });
        }
    }
}

enum Work {
    Messages,
    Task(QueuedTask),
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
