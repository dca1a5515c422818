//! A run whose tenant lacks its provider key (`RunStartError::MissingSecret`): the chat gets
//! the clear reply with the command that fixes it and its cursor moves on (the messages are
//! answered, not retried); a scheduled task's run is recorded as failed with the same words.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cambot_agent::agent_run::ActiveRun;
use cambot_agent::agent_run::AgentRunner;
use cambot_agent::agent_run::BoxFuture;
use cambot_agent::agent_run::RunRequest;
use cambot_agent::agent_run::RunStartError;
use cambot_core::TaskRunStatus;
use cambot_protocol::ChatJid;
use cambot_protocol::TaskId;

use super::support::start;
use super::support::tenant;
use super::task_run::Harness;
use super::task_run::quick;

/// Refuses every start as a run of a tenant without the `anthropic` secret; counts the tries.
#[derive(Default)]
struct NoKeyRunner {
    starts: AtomicUsize,
}

impl AgentRunner for NoKeyRunner {
    fn start(&self, request: RunRequest) -> BoxFuture<'_, Result<ActiveRun, RunStartError>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Err(RunStartError::MissingSecret {
                tenant: request.group.tenant.clone(),
                name: "anthropic".to_owned(),
            })
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_chat_whose_tenant_lacks_the_key_is_answered_once_and_not_retried() {
    let runner = Arc::new(NoKeyRunner::default());
    let t = start(runner.clone(), "").await;
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "hello")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, Duration::from_secs(30)).await;
    assert_eq!(
        sent[0].text,
        "tenant default has no secret 'anthropic'\n\
         set it with: cambot secrets set --tenant default anthropic"
    );
    t.daemon.wait_idle().await;
    let store = t.daemon.router().store();
    let jid = ChatJid::new("fake:main").unwrap();
    let pending = store.pending_messages(&tenant(), &jid, 10).await.unwrap();
    assert!(
        pending.is_empty(),
        "the message stays unanswered: {pending:?}"
    );
    assert_eq!(runner.starts.load(Ordering::SeqCst), 1);
    // A recovery pass finds nothing to retry.
    t.daemon.router().recover_pending().await.unwrap();
    t.daemon.wait_idle().await;
    assert_eq!(runner.starts.load(Ordering::SeqCst), 1);
    assert_eq!(t.channel.sent().len(), 1);
    t.daemon.shutdown().await;
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_task_whose_tenant_lacks_the_key_is_recorded_failed_with_the_reason() {
    let h = Harness::with_runner(
        "2026-01-01T00:00:00Z",
        Arc::new(NoKeyRunner::default()),
        quick(),
        4,
    );
    h.group("g").await;
    h.task("daily", "g", "once", "+1s").await;
    h.start();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs = h
        .store
        .task_runs(&TaskId::new("daily").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, TaskRunStatus::Error);
    assert_eq!(
        runs[0].error.as_deref(),
        Some("tenant default has no secret 'anthropic'")
    );
    h.cancel.cancel();
}
