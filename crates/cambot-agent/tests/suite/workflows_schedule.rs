//! `[trigger] schedule` under paused tokio time: each cron slot starts one run (its id derived
//! from the slot), and a restarted schedule loop starts no slot again.

use std::sync::Arc;
use std::time::Duration;

use cambot_agent::workflows::Workflows;
use cambot_agent::workflows::scheduled_run_id;
use cambot_core::GroupRegistration;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_scheduler::TokioClock;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFuture;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::support::tenant;

struct Echo;

impl StepExecutor for Echo {
    fn execute(&self, _call: StepCall, _cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(async { Ok("sent".to_owned()) })
    }
}

async fn scheduled_ids(store: &Arc<dyn Store>) -> Vec<String> {
    let mut ids: Vec<String> = store
        .workflow_runs(&tenant(), Some("tick"), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

/// The run ids of the first `n` minute slots after `start`, sorted.
fn slots_after(start: chrono::DateTime<Utc>, n: usize) -> Vec<String> {
    let every_minute = cambot_scheduler::cron::CronExpr::parse("* * * * *").unwrap();
    let mut ids = Vec::new();
    let mut slot = start;
    for _ in 0..n {
        slot = cambot_scheduler::cron::next_after(&every_minute, slot, chrono_tz::UTC).unwrap();
        ids.push(scheduled_run_id(&tenant(), "tick", slot));
    }
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn each_slot_fires_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
    store
        .register_group(GroupRegistration {
            tenant: tenant(),
            jid: ChatJid::new("fake:team").unwrap(),
            name: "team".into(),
            folder: GroupFolder::new("team").unwrap(),
            trigger: "@Andy".into(),
            requires_trigger: None,
            container_config: None,
        })
        .await
        .unwrap();
    let engine = Arc::new(cambot_agent::workflows::engine(
        store.clone(),
        Arc::new(Echo),
    ));
    let toml = "name = \"tick\"\n[trigger]\nschedule = \"* * * * *\"\n[[steps]]\nid = \"post\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"tick\"\n";
    engine.add(&tenant(), toml).await.unwrap();
    let start = Utc::now();
    let clock = Arc::new(TokioClock::starting_at(start));
    let tracker = TaskTracker::new();
    let loop_once = |cancel: CancellationToken| {
        let wf = Workflows::new(Arc::clone(&engine), store.clone(), tracker.clone(), cancel);
        tracker.spawn(wf.schedule(clock.clone(), chrono_tz::UTC));
    };
    let first = CancellationToken::new();
    loop_once(first.clone());
    tokio::time::sleep(Duration::from_secs(10 * 60 + 30)).await;
    // Paused time also advances while the test waits on SQLite's threads, so a later slot or
    // two may fire before the read: what must hold is one run per slot, none skipped.
    let ids = scheduled_ids(&store).await;
    assert!(ids.len() >= 10, "{ids:?}");
    assert_eq!(ids, slots_after(start, ids.len()));

    // A restart (a new loop, no memory of what fired) starts no slot again and skips none.
    first.cancel();
    let second = CancellationToken::new();
    loop_once(second.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = scheduled_ids(&store).await;
    assert!(after.len() >= ids.len(), "{after:?}");
    assert_eq!(after, slots_after(start, after.len()));
    second.cancel();
    tracker.close();
    tracker.wait().await;
}
