//! A disabled tenant through a real daemon (real SQLite, scripted runner): its messages are
//! stored and start no run, its tasks do not fire, and both resume when the tenant is enabled
//! through a second store handle, as `cambot tenants enable` does from another process.

use std::time::Duration;

use cambot_core::ContextMode;
use cambot_core::MissedRunPolicy;
use cambot_core::ScheduledTask;
use cambot_core::SqliteStore;
use cambot_core::TaskRunStatus;
use cambot_core::TaskStatus;
use cambot_core::TaskStore;
use cambot_core::TenantState;
use cambot_core::TenantStore;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use chrono::Utc;
use pretty_assertions::assert_eq;

use super::support::*;

const WAIT: Duration = Duration::from_secs(10);

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// The admin CLI's view of the daemon's database: a handle of its own.
fn admin(t: &TestDaemon) -> SqliteStore {
    SqliteStore::open(&DataLayout::new(t.dir.path()).database()).unwrap()
}

/// Runs the scripted runner started for `chat`.
fn runs_for(runner: &ScriptedRunner, chat: &str) -> usize {
    runner
        .started()
        .iter()
        .filter(|r| r.request.chat_jid.as_str() == chat)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_tenants_messages_are_stored_and_answered_after_enable() {
    let runner = ScriptedRunner::new(|req, _| Turn::reply(format!("to {}", req.chat_jid)));
    // Live runs close at once, so an idle queue means every queued check was handled.
    let t = start(runner.clone(), "[router]\nidle_timeout_ms = 30\n").await;
    let admin = admin(&t);
    assert!(admin.add_tenant(&acme(), "").await.unwrap());
    t.channel
        .register(&acme(), "fake:acme", "main", None)
        .await
        .unwrap();
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    assert!(
        admin
            .set_tenant_state(&acme(), TenantState::Disabled)
            .await
            .unwrap()
    );

    // Whether or not the daemon has noticed the disable yet, no run starts for acme.
    t.channel
        .inject(&acme(), "fake:acme", "Alice", "are you there?")
        .await
        .unwrap();
    // The control: the default tenant is answered by the same daemon meanwhile.
    t.channel
        .inject(&tenant(), "fake:main", "Bob", "hi")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, WAIT).await;
    assert_eq!(sent[0].chat_jid, "fake:main");
    eventually("the queue is idle", || t.daemon.router().queue().is_idle()).await;
    assert_eq!(runs_for(&runner, "fake:acme"), 0, "a run started for acme");
    let store = t.daemon.router().store();
    let jid = ChatJid::new("fake:acme").unwrap();
    let pending = store.pending_messages(&acme(), &jid, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the message is stored and unanswered");
    assert_eq!(pending[0].content, "are you there?");
    // The recovery sweep does not start it either.
    t.daemon.router().recover_pending().await.unwrap();
    eventually("the queue is idle", || t.daemon.router().queue().is_idle()).await;
    assert_eq!(runs_for(&runner, "fake:acme"), 0);

    assert!(
        admin
            .set_tenant_state(&acme(), TenantState::Active)
            .await
            .unwrap()
    );
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(sent[1].chat_jid, "fake:acme");
    assert_eq!(sent[1].text, "to fake:acme");
    assert_eq!(runs_for(&runner, "fake:acme"), 1);
    assert!(
        store
            .pending_messages(&acme(), &jid, 10)
            .await
            .unwrap()
            .is_empty()
    );
    t.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_tenants_task_stays_active_fires_nothing_and_fires_after_enable() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("task done"));
    let t = start(runner.clone(), "").await;
    let admin = admin(&t);
    assert!(admin.add_tenant(&acme(), "").await.unwrap());
    t.channel
        .register(&acme(), "fake:acme", "g1", None)
        .await
        .unwrap();
    assert!(
        admin
            .set_tenant_state(&acme(), TenantState::Disabled)
            .await
            .unwrap()
    );
    let now = Utc::now();
    let due_ms = now.timestamp_millis() - 1_000;
    let id = TaskId::new("task-acme").unwrap();
    admin
        .create_task(&ScheduledTask {
            id: id.clone(),
            tenant: acme(),
            group_folder: GroupFolder::new("g1").unwrap(),
            chat_jid: ChatJid::new("fake:acme").unwrap(),
            prompt: "report".into(),
            schedule_type: "once".into(),
            schedule_value: (now - chrono::TimeDelta::seconds(1)).to_rfc3339(),
            timezone: "UTC".into(),
            context_mode: ContextMode::Isolated,
            missed_policy: MissedRunPolicy::Skip,
            next_run_ms: Some(due_ms),
            last_run: None,
            last_result: None,
            status: TaskStatus::Active,
            created_at: now.to_rfc3339(),
        })
        .await
        .unwrap();

    // A scheduler pass at a time the task is due fires nothing and leaves it as it was.
    let fired = t.daemon.scheduler().fire_due(Utc::now()).await.unwrap();
    assert_eq!(fired, 0);
    let task = admin.task(&id).await.unwrap().unwrap();
    assert_eq!(
        (task.status, task.next_run_ms),
        (TaskStatus::Active, Some(due_ms))
    );
    assert!(admin.task_runs(&id, 10).await.unwrap().is_empty());
    assert_eq!(runner.started().len(), 0);

    assert!(
        admin
            .set_tenant_state(&acme(), TenantState::Active)
            .await
            .unwrap()
    );
    eventually_async("the task fired after enable", || async {
        admin
            .task_runs(&id, 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status == TaskRunStatus::Success)
    })
    .await;
    assert_eq!(runner.started().len(), 1);
    let sent = t.channel.wait_sent(1, WAIT).await;
    assert_eq!(sent[0].chat_jid, "fake:acme");
    t.daemon.shutdown().await;
}
