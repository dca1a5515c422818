//! A stand-in for the agent's side of [`TaskDispatcher`]: it keeps the guarantees the real
//! group queue gives (one run per group at a time, at most `max_concurrent` runs, a task never
//! queued twice) and executes each firing through [`Firing::begin`] and
//! [`StartedFiring::finish`], like the agent does, with a scripted run time instead of an agent.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_core::Store;
use cambot_protocol::GroupKey;
use cambot_protocol::TaskId;
use cambot_scheduler::Firing;
use cambot_scheduler::FiringEnd;
use cambot_scheduler::TaskDispatcher;
use tokio::sync::Semaphore;

/// How long the run of a prompt takes.
pub(crate) type RunTime = Arc<dyn Fn(&str) -> Duration + Send + Sync>;

/// Runs firings as scripted sleeps. Cheap to clone.
#[derive(Clone)]
pub(crate) struct FakeExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    run_time: RunTime,
    slots: Arc<Semaphore>,
    groups: Mutex<HashMap<GroupKey, Arc<tokio::sync::Mutex<()>>>>,
    queued: Mutex<HashSet<TaskId>>,
    started: Mutex<Vec<String>>,
    live: Mutex<(usize, usize)>,
}

impl FakeExecutor {
    pub(crate) fn new(store: Arc<dyn Store>, run_time: RunTime, max_concurrent: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                run_time,
                slots: Arc::new(Semaphore::new(max_concurrent)),
                groups: Mutex::new(HashMap::new()),
                queued: Mutex::new(HashSet::new()),
                started: Mutex::new(Vec::new()),
                live: Mutex::new((0, 0)),
            }),
        }
    }

    /// Prompts of the runs started, in order.
    pub(crate) fn started(&self) -> Vec<String> {
        self.inner.started.lock().unwrap().clone()
    }

    /// The most runs that were live at once.
    pub(crate) fn max_live_runs(&self) -> usize {
        self.inner.live.lock().unwrap().1
    }

    async fn execute(self, firing: Firing) {
        let inner = &self.inner;
        let key = GroupKey::new(firing.task.tenant.clone(), firing.task.group_folder.clone());
        let group = Arc::clone(
            inner
                .groups
                .lock()
                .unwrap()
                .entry(key)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        );
        let _group_turn = group.lock().await;
        let _slot = Arc::clone(&inner.slots).acquire_owned().await.unwrap();
        if let Some(started) = firing.begin(inner.store.as_ref()).await {
            inner
                .started
                .lock()
                .unwrap()
                .push(started.task.prompt.clone());
            {
                let mut live = inner.live.lock().unwrap();
                live.0 += 1;
                live.1 = live.1.max(live.0);
            }
            let took = (inner.run_time)(&started.task.prompt);
            tokio::time::sleep(took).await;
            inner.live.lock().unwrap().0 -= 1;
            started
                .finish(
                    inner.store.as_ref(),
                    took,
                    FiringEnd::Success { result: None },
                )
                .await;
        }
        inner.queued.lock().unwrap().remove(&firing.task.id);
    }
}

impl TaskDispatcher for FakeExecutor {
    fn dispatch(&self, firing: Firing) -> bool {
        if !self
            .inner
            .queued
            .lock()
            .unwrap()
            .insert(firing.task.id.clone())
        {
            return false;
        }
        tokio::spawn(self.clone().execute(firing));
        true
    }

    fn is_shutting_down(&self) -> bool {
        false
    }
}
