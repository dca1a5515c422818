//! Crash and resume on a real SQLite file: the process "dies" after a chosen number of durable
//! events (each store write and each step's effect is one), then a new store and engine open
//! the same file and drive what is unfinished. At every crash point, and at 50 random ones
//! (some with a second crash and a failed attempt): a succeeded step is never run again, the
//! `send` step's message is queued exactly once, and the run finishes.

use std::path::Path;
use std::sync::Arc;

use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepState;
use cambot_workflows::Engine;
use cambot_workflows::StepFailure;
use cambot_workflows::idempotency_key;
use pretty_assertions::assert_eq;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const WORKFLOW: &str = r#"
name = "crashy"
[[steps]]
id = "fetch"
type = "command"
group = "team"
command = "cat issues.txt"
retries = 3
[[steps]]
id = "summarize"
type = "agent"
group = "team"
prompt = "Summarize: {{ steps.fetch.output }}"
retries = 3
[[steps]]
id = "post"
type = "send"
group = "team"
text = "{{ steps.summarize.output }}"
retries = 3
"#;

/// Durable events of a run without a crash: the start, then per step its start, its effect
/// and its outcome.
const EVENTS: i64 = 1 + 3 * 3;

struct Scenario {
    /// Events before the first crash.
    first: i64,
    /// Events before a second crash, in the process that resumes.
    second: Option<i64>,
    /// The summarize step's first attempt in the first process fails (retryable).
    transient: bool,
}

fn groups() -> Arc<FakeGroups> {
    FakeGroups::with(&[("default", "team")])
}

/// The run as stored, read through a store of its own (as a restarted process would).
async fn stored(path: &Path) -> Option<WorkflowRunRow> {
    let store = SqliteStore::open(path).unwrap();
    let mut runs = store
        .workflow_runs(&tenant("default"), None, 10)
        .await
        .unwrap();
    assert!(runs.len() <= 1, "one run at most: {runs:?}");
    runs.pop()
}

fn fetch_done(run: Option<&WorkflowRunRow>) -> bool {
    run.is_some_and(|r| r.steps[0].state == WorkflowStepState::Succeeded)
}

/// One process life: resumes (or, first, starts) the run with a crash plan, and checks that a
/// step stored as succeeded when it began is not run again.
async fn live(
    path: &Path,
    outbox: &Arc<FakeOutbox>,
    plan: Option<Arc<CrashPlan>>,
    s: &Scenario,
    first: bool,
) -> Vec<String> {
    let before = stored(path).await;
    let inner = SqliteStore::open(path).unwrap();
    let exec = FakeExecutor::sharing(Arc::clone(outbox), plan.clone());
    if first && s.transient {
        exec.script(
            "summarize",
            vec![Script::Fail(StepFailure::retryable("model overloaded"))],
        );
    }
    let store: Arc<dyn WorkflowStore> = match &plan {
        Some(plan) => Arc::new(CrashStore {
            inner,
            plan: Arc::clone(plan),
        }),
        None => Arc::new(inner),
    };
    let engine = Engine::new(store, groups(), Arc::clone(&exec) as _);
    let t = tenant("default");
    let mut runs = Vec::new();
    if first {
        match engine.start(&t, "crashy", Default::default()).await {
            Ok(id) => runs.push((t.clone(), id)),
            Err(e) => assert!(plan.as_ref().is_some_and(|p| p.crashed()), "{e}"),
        }
    } else if let Ok(unfinished) = engine.unfinished().await {
        runs = unfinished;
    }
    for (t, id) in &runs {
        match engine.drive(t, id).await {
            Ok(outcome) => assert_eq!(outcome.state, WorkflowRunState::Succeeded),
            Err(e) => assert!(plan.as_ref().is_some_and(|p| p.crashed()), "{e}"),
        }
    }
    if fetch_done(before.as_ref()) {
        assert!(
            exec.calls_of("fetch").is_empty(),
            "a succeeded step ran again"
        );
    }
    let calls = exec.calls.lock().unwrap();
    calls.iter().map(|c| c.step_id.clone()).collect()
}

async fn scenario(s: Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let engine = Engine::new(Arc::new(store), groups(), FakeExecutor::new());
        engine.add(&tenant("default"), WORKFLOW).await.unwrap();
    }
    let outbox: Arc<FakeOutbox> = Arc::default();
    let mut calls = live(&path, &outbox, Some(CrashPlan::after(s.first)), &s, true).await;
    if let Some(second) = s.second {
        calls.extend(live(&path, &outbox, Some(CrashPlan::after(second)), &s, false).await);
    }
    calls.extend(live(&path, &outbox, None, &s, false).await);

    let Some(run) = stored(&path).await else {
        // Died before the run was stored: nothing ran, nothing was sent.
        assert_eq!(s.first, 0);
        assert!(calls.is_empty() && outbox.queued.lock().unwrap().is_empty());
        return;
    };
    assert_eq!(run.state, WorkflowRunState::Succeeded, "{run:?}");
    assert!(
        run.steps
            .iter()
            .all(|st| st.state == WorkflowStepState::Succeeded)
    );
    let queued = outbox.queued.lock().unwrap().clone();
    assert_eq!(
        queued.into_iter().collect::<Vec<_>>(),
        [(
            idempotency_key(&run.id, "post"),
            "summarize output".to_owned()
        )],
        "the message is queued exactly once"
    );
    let sends = outbox.calls.lock().unwrap().clone();
    assert!(sends.iter().all(|k| *k == idempotency_key(&run.id, "post")));
    let crashes = 1 + usize::from(s.second.is_some());
    let fetches = calls.iter().filter(|c| *c == "fetch").count();
    assert!(fetches <= 1 + crashes, "fetch ran {fetches} times");
}

#[tokio::test(start_paused = true)]
async fn a_crash_at_every_point_resumes_to_the_end_without_rerunning_or_resending() {
    for first in 0..=EVENTS {
        scenario(Scenario {
            first,
            second: None,
            transient: false,
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn fifty_random_crash_points_resume_to_the_end_without_rerunning_or_resending() {
    let mut rng = StdRng::seed_from_u64(28);
    for _ in 0..50 {
        let s = Scenario {
            first: rng.gen_range(0..=EVENTS + 1),
            second: rng.gen_bool(0.5).then(|| rng.gen_range(0..=EVENTS)),
            transient: rng.gen_bool(0.3),
        };
        scenario(s).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_interrupted_in_its_last_attempt_fails_the_run_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let toml = WORKFLOW.replacen("retries = 3", "retries = 0", 1);
    let store = SqliteStore::open(&path).unwrap();
    let t = tenant("default");
    Engine::new(Arc::new(store.clone()), groups(), FakeExecutor::new())
        .add(&t, &toml)
        .await
        .unwrap();
    // Dies after the start and fetch's `running`: fetch's only attempt was interrupted.
    let plan = CrashPlan::after(2);
    let crashing = Engine::new(
        Arc::new(CrashStore {
            inner: store.clone(),
            plan: Arc::clone(&plan),
        }),
        groups(),
        FakeExecutor::new(),
    );
    let id = crashing
        .start(&t, "crashy", Default::default())
        .await
        .unwrap();
    assert!(crashing.drive(&t, &id).await.is_err());
    let exec = FakeExecutor::new();
    let engine = Engine::new(Arc::new(store), groups(), Arc::clone(&exec) as _);
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some(r#"step "fetch" failed: interrupted by a restart during its last attempt (1 of 1)"#)
    );
    assert!(exec.calls.lock().unwrap().is_empty());
}
