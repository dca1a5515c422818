//! The seed's group-queue.test.ts cases (limit 2), under paused tokio time.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use pretty_assertions::assert_eq;
use tokio::sync::mpsc;

use super::*;
use crate::agent_run::RunInput;

fn key(folder: &str) -> GroupKey {
    GroupKey::new(
        TenantId::default_tenant(),
        GroupFolder::new(folder).unwrap(),
    )
}

fn chat() -> ChatJid {
    ChatJid::new("chat@g.us").unwrap()
}

/// A processor whose runs block until released, recording what happened.
#[derive(Default)]
struct Scripted {
    log: Mutex<Vec<String>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    per_group: Mutex<HashMap<GroupKey, usize>>,
    max_per_group: AtomicUsize,
    gates: Mutex<HashMap<GroupKey, Arc<Semaphore>>>,
    hold: bool,
    outcomes: Mutex<VecDeque<bool>>,
    /// The input side of every run this processor registered, per group.
    inputs: Mutex<HashMap<GroupKey, mpsc::Receiver<RunInput>>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn holding() -> Arc<Self> {
        Arc::new(Self {
            hold: true,
            ..Self::default()
        })
    }

    fn immediate(outcomes: &[bool]) -> Arc<Self> {
        Arc::new(Self {
            outcomes: Mutex::new(outcomes.iter().copied().collect()),
            ..Self::default()
        })
    }

    fn gate(&self, key: &GroupKey) -> Arc<Semaphore> {
        self.gates
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }

    fn release(&self, key: &GroupKey) {
        self.gate(key).add_permits(1);
    }

    fn closes(&self, key: &GroupKey) -> usize {
        let mut inputs = self.inputs.lock().unwrap();
        let Some(rx) = inputs.get_mut(key) else {
            return 0;
        };
        let mut n = 0;
        while let Ok(input) = rx.try_recv() {
            if input == RunInput::Close {
                n += 1;
            }
        }
        n
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The body shared by message and task runs.
    fn run_body(
        self: &Arc<Self>,
        label: String,
        key: GroupKey,
        slot: RunSlot,
        chat: Option<ChatJid>,
    ) -> BoxFuture<'static, bool> {
        let me = Arc::clone(self);
        Box::pin(async move {
            me.calls.fetch_add(1, Ordering::SeqCst);
            let now = me.active.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_active.fetch_max(now, Ordering::SeqCst);
            {
                let mut pg = me.per_group.lock().unwrap();
                let c = pg.entry(key.clone()).or_default();
                *c += 1;
                me.max_per_group.fetch_max(*c, Ordering::SeqCst);
            }
            me.log.lock().unwrap().push(format!("start:{label}"));
            let (tx, rx) = mpsc::channel(16);
            me.inputs.lock().unwrap().insert(key.clone(), rx);
            slot.register_run(RunControl::new(tx), chat);
            if me.hold {
                let gate = me.gate(&key);
                let permit = gate.acquire().await.unwrap();
                permit.forget();
            }
            me.log.lock().unwrap().push(format!("end:{label}"));
            *me.per_group.lock().unwrap().get_mut(&key).unwrap() -= 1;
            me.active.fetch_sub(1, Ordering::SeqCst);
            me.outcomes.lock().unwrap().pop_front().unwrap_or(true)
        })
    }

    fn task(self: &Arc<Self>, id: &str) -> QueuedTask {
        let me = Arc::clone(self);
        let label = format!("task:{id}");
        QueuedTask {
            id: TaskId::new(id).unwrap(),
            run: Box::new(move |slot: RunSlot| {
                let key = slot.key().clone();
                let fut = me.run_body(label, key, slot, None);
                Box::pin(async move {
                    fut.await;
                })
            }),
        }
    }
}

/// The queue holds its processor weakly; this wrapper owns the `Arc` the runs clone.
struct Handle(Arc<Scripted>);

impl MessageProcessor for Handle {
    fn process_messages(&self, key: GroupKey, slot: RunSlot) -> BoxFuture<'static, bool> {
        let label = format!("messages:{}", key.folder);
        self.0.run_body(label, key, slot, Some(chat()))
    }
}

/// Keeps the processor alive for the queue's lifetime in a test.
struct TestQueue {
    q: GroupQueue,
    _handle: Arc<dyn MessageProcessor>,
}

impl std::ops::Deref for TestQueue {
    type Target = GroupQueue;
    fn deref(&self) -> &GroupQueue {
        &self.q
    }
}

fn queue_for(processor: &Arc<Scripted>, limit: usize) -> TestQueue {
    let handle: Arc<dyn MessageProcessor> = Arc::new(Handle(Arc::clone(processor)));
    let q = GroupQueue::new(Arc::downgrade(&handle), limit, RetryPolicy::default());
    TestQueue { q, _handle: handle }
}

/// Lets every ready task run (paused time: nothing advances the clock by itself here).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn two_enqueues_for_one_group_never_run_concurrently() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("group1");
    q.enqueue_message_check(&g);
    settle().await;
    // The first run is live now (as in the seed, where enqueue starts it at once).
    q.enqueue_message_check(&g);
    settle().await;
    assert_eq!(p.max_per_group.load(Ordering::SeqCst), 1);
    p.release(&g);
    settle().await;
    p.release(&g);
    settle().await;
    assert_eq!(p.max_per_group.load(Ordering::SeqCst), 1);
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        2,
        "the second check runs after the first"
    );
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn three_groups_with_limit_two() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    for g in ["g1", "g2", "g3"] {
        q.enqueue_message_check(&key(g));
    }
    settle().await;
    assert_eq!(q.active_runs(), 2);
    assert_eq!(p.max_active.load(Ordering::SeqCst), 2);
    p.release(&key("g1"));
    settle().await;
    assert!(
        p.log().contains(&"start:messages:g3".to_owned()),
        "{:?}",
        p.log()
    );
    assert_eq!(q.active_runs(), 2);
    assert_eq!(p.max_active.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn task_runs_before_the_next_message_check() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("group1");
    q.enqueue_message_check(&g);
    settle().await;
    q.enqueue_message_check(&g);
    assert!(q.enqueue_task(&g, p.task("task-1")));
    p.release(&g);
    settle().await;
    p.release(&g);
    settle().await;
    p.release(&g);
    settle().await;
    assert_eq!(
        p.log(),
        vec![
            "start:messages:group1",
            "end:messages:group1",
            "start:task:task-1",
            "end:task:task-1",
            "start:messages:group1",
            "end:messages:group1",
        ]
    );
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn failure_retries_after_5s_then_10s() {
    let p = Scripted::immediate(&[false, false, true]);
    let q = queue_for(&p, 2);
    q.enqueue_message_check(&key("g"));
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(4_999)).await;
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn permanent_failure_gives_up_after_five_retries() {
    let p = Scripted::immediate(&[false; 20]);
    let q = queue_for(&p, 2);
    q.enqueue_message_check(&key("g"));
    settle().await;
    let mut expected = 1;
    assert_eq!(p.calls.load(Ordering::SeqCst), expected);
    for delay_s in [5u64, 10, 20, 40, 80] {
        tokio::time::advance(Duration::from_secs(delay_s)).await;
        settle().await;
        expected += 1;
        assert_eq!(
            p.calls.load(Ordering::SeqCst),
            expected,
            "retry after {delay_s}s"
        );
    }
    for _ in 0..200 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        6,
        "1 attempt + 5 retries, then nothing"
    );
    // The next message tries again from scratch.
    q.enqueue_message_check(&key("g"));
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn after_shutdown_enqueues_never_run() {
    let p = Scripted::immediate(&[]);
    let q = queue_for(&p, 2);
    assert!(
        q.shutdown(Duration::from_secs(1), Duration::from_secs(1))
            .await
    );
    q.enqueue_message_check(&key("g"));
    assert!(!q.enqueue_task(&key("g"), p.task("task-1")));
    settle().await;
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn waiting_group_runs_as_soon_as_a_slot_frees() {
    let p = Scripted::holding();
    let q = queue_for(&p, 1);
    q.enqueue_message_check(&key("a"));
    settle().await;
    q.enqueue_message_check(&key("b"));
    settle().await;
    assert_eq!(p.log(), vec!["start:messages:a"]);
    p.release(&key("a"));
    settle().await;
    assert_eq!(
        p.log(),
        vec!["start:messages:a", "end:messages:a", "start:messages:b"]
    );
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn task_enqueued_while_busy_writes_no_close() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.enqueue_task(&g, p.task("task-1"));
    assert_eq!(p.closes(&g), 0);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn task_enqueued_while_idle_writes_exactly_one_close() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.notify_idle(&g);
    q.enqueue_task(&g, p.task("task-1"));
    q.enqueue_task(&g, p.task("task-2"));
    assert_eq!(p.closes(&g), 1);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn send_message_after_notify_idle_clears_idle() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.notify_idle(&g);
    assert!(q.send_message(&g, &chat(), "follow-up".into()));
    q.enqueue_task(&g, p.task("task-1"));
    assert_eq!(p.closes(&g), 0);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn send_message_into_a_task_run_is_refused() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_task(&g, p.task("task-1"));
    settle().await;
    assert!(q.is_running(&g));
    assert!(!q.send_message(&g, &chat(), "hello".into()));
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn send_message_to_another_chat_of_the_folder_is_refused() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("main");
    q.enqueue_message_check(&g);
    settle().await;
    assert!(!q.send_message(&g, &ChatJid::new("cli:console").unwrap(), "x".into()));
    assert!(q.send_message(&g, &chat(), "x".into()));
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn task_pending_then_notify_idle_writes_exactly_one_close() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.enqueue_task(&g, p.task("task-1"));
    q.notify_idle(&g);
    q.notify_idle(&g);
    assert_eq!(p.closes(&g), 1);
}

/// Seed DEFECT: only *pending* task ids were checked, so a task running longer than the
/// scheduler's poll was queued (and run) again.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_running_task_is_not_queued_again() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    assert!(q.enqueue_task(&g, p.task("task-1")));
    settle().await;
    assert!(
        !q.enqueue_task(&g, p.task("task-1")),
        "seed queued it again here"
    );
    assert!(!q.enqueue_task(&g, p.task("task-1")));
    p.release(&g);
    settle().await;
    p.release(&g);
    settle().await;
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn shutdown_closes_live_runs_and_kills_after_the_deadline() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    let q2 = q.q.clone();
    let done = tokio::spawn(async move {
        q2.shutdown(Duration::from_secs(10), Duration::from_secs(1))
            .await
    });
    settle().await;
    assert_eq!(p.closes(&g), 1, "live run asked to finish");
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    // The scripted run ignores Kill; the release lets it end within the kill grace.
    let kills = {
        let mut inputs = p.inputs.lock().unwrap();
        let rx = inputs.get_mut(&g).unwrap();
        let mut n = 0;
        while let Ok(i) = rx.try_recv() {
            if i == RunInput::Kill {
                n += 1;
            }
        }
        n
    };
    assert_eq!(kills, 1);
    p.release(&g);
    assert!(done.await.unwrap());
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_waiting_group_preempts_the_longest_idle_run() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    q.enqueue_message_check(&key("a"));
    q.enqueue_message_check(&key("b"));
    settle().await;
    q.notify_idle(&key("b"));
    tokio::time::advance(Duration::from_secs(1)).await;
    q.notify_idle(&key("a"));
    // Both slots are held by idle runs; a third group arrives.
    q.enqueue_message_check(&key("c"));
    settle().await;
    assert_eq!(p.closes(&key("b")), 1, "b has been idle longest");
    assert_eq!(p.closes(&key("a")), 0);
    p.release(&key("b"));
    settle().await;
    assert!(p.log().contains(&"start:messages:c".to_owned()));
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_busy_run_is_never_preempted() {
    let p = Scripted::holding();
    let q = queue_for(&p, 1);
    q.enqueue_message_check(&key("a"));
    settle().await;
    q.enqueue_message_check(&key("c"));
    settle().await;
    assert_eq!(p.closes(&key("a")), 0);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_run_going_idle_while_others_wait_is_closed_at_once() {
    let p = Scripted::holding();
    let q = queue_for(&p, 1);
    q.enqueue_message_check(&key("a"));
    settle().await;
    q.enqueue_message_check(&key("b"));
    settle().await;
    assert_eq!(p.closes(&key("a")), 0, "a is busy");
    q.notify_idle(&key("a"));
    assert_eq!(p.closes(&key("a")), 1, "b waits, so idle a gives way");
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn preempting_an_idle_message_run_closes_it_once() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.notify_idle(&g);
    q.preempt_idle_run(&g);
    q.preempt_idle_run(&g);
    assert_eq!(p.closes(&g), 1);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn preempting_a_busy_message_run_closes_it_when_it_turns_idle() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.enqueue_message_check(&g);
    settle().await;
    q.preempt_idle_run(&g);
    assert_eq!(p.closes(&g), 0, "busy: not closed yet");
    q.notify_idle(&g);
    assert_eq!(p.closes(&g), 1);
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn preempting_a_task_run_or_no_run_does_nothing() {
    let p = Scripted::holding();
    let q = queue_for(&p, 2);
    let g = key("g");
    q.preempt_idle_run(&g);
    q.enqueue_task(&g, p.task("task-1"));
    settle().await;
    q.preempt_idle_run(&g);
    q.notify_idle(&g);
    assert_eq!(p.closes(&g), 0);
}
