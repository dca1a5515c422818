//! The state machine with fakes: the happy path, retries, a failure ending the run with the
//! step's error, timeouts, cancel mid-step, inputs, and tenant isolation of groups.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepState;
use cambot_workflows::Engine;
use cambot_workflows::SessionMode;
use cambot_workflows::StepAction;
use cambot_workflows::StepFailure;
use cambot_workflows::WorkflowError;
use cambot_workflows::idempotency_key;
use pretty_assertions::assert_eq;

use super::*;

const THREE: &str = r#"
name = "three"
[inputs]
topic = { default = "issues" }
who = {}
[[steps]]
id = "ask"
type = "agent"
group = "team"
prompt = "Summarize {{ inputs.topic }} for {{ inputs.who }}."
[[steps]]
id = "count"
type = "command"
group = "team"
command = "printf '%s' {{ steps.ask.output }} | wc -c"
retries = 1
[[steps]]
id = "post"
type = "send"
group = "team"
text = "{{ steps.ask.output }} ({{ steps.count.output }} bytes)"
"#;

fn setup() -> (Arc<FakeExecutor>, Arc<FakeGroups>, SqliteStore, Engine) {
    let exec = FakeExecutor::new();
    let groups = FakeGroups::with(&[("default", "team"), ("acme", "sales")]);
    let (store, engine) = engine(Arc::clone(&groups), Arc::clone(&exec));
    (exec, groups, store, engine)
}

async fn started(engine: &Engine, toml: &str) -> String {
    let t = tenant("default");
    let (def, _) = engine.add(&t, toml).await.unwrap();
    engine
        .start(&t, &def.name, inputs(&[("who", "ops")]))
        .await
        .unwrap()
}

fn states(run: &cambot_core::WorkflowRunRow) -> Vec<(WorkflowStepState, u32)> {
    run.steps.iter().map(|s| (s.state, s.attempt)).collect()
}

#[tokio::test(start_paused = true)]
async fn three_steps_run_in_order_each_seeing_earlier_outputs() {
    let (exec, _, _, engine) = setup();
    exec.script("ask", vec![Script::Ok("it's $(fine)".into())]);
    exec.script("count", vec![Script::Ok("12".into())]);
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Succeeded);
    assert_eq!(outcome.output.as_deref(), Some("post output"));

    let calls = exec.calls.lock().unwrap().clone();
    let actions: Vec<_> = calls.iter().map(|c| c.action.clone()).collect();
    assert_eq!(
        actions,
        [
            StepAction::Agent {
                prompt: "Summarize issues for ops.".into(),
                session: SessionMode::Run
            },
            StepAction::Command {
                command_line: r"printf '%s' 'it'\''s $(fine)' | wc -c".into()
            },
            StepAction::Send {
                text: "it's $(fine) (12 bytes)".into(),
                idempotency_key: idempotency_key(&id, "post")
            },
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c.attempt == 1 && c.tenant == t && c.run_id == id)
    );
    assert_eq!(calls[0].group.as_str(), "team");

    let run = engine.run(&t, &id).await.unwrap().unwrap();
    assert_eq!(run.state, WorkflowRunState::Succeeded);
    assert_eq!(states(&run), vec![(WorkflowStepState::Succeeded, 1); 3]);
    assert_eq!(run.steps[0].output.as_deref(), Some("it's $(fine)"));
    assert!(
        run.steps
            .iter()
            .all(|s| s.started_ms.is_some() && s.finished_ms.is_some())
    );
    assert!(run.finished_ms.is_some());
    assert!(engine.unfinished().await.unwrap().is_empty());
    // Driving a finished run again runs nothing.
    assert_eq!(engine.drive(&t, &id).await.unwrap(), outcome);
    assert_eq!(exec.calls.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_within_the_steps_retries() {
    let (exec, _, _, engine) = setup();
    exec.script(
        "count",
        vec![Script::Fail(StepFailure::retryable(
            "sandbox did not start",
        ))],
    );
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Succeeded);
    let attempts: Vec<u32> = exec.calls_of("count").iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    let run = engine.run(&t, &id).await.unwrap().unwrap();
    assert_eq!(run.steps[1].attempt, 2);
    assert_eq!(run.steps[1].error, None, "a success clears the last error");
}

#[tokio::test(start_paused = true)]
async fn a_failure_past_the_retries_ends_the_run_with_the_steps_error() {
    let (exec, _, _, engine) = setup();
    let fail = Script::Fail(StepFailure::retryable("exit status 2"));
    exec.script("count", vec![fail.clone(), fail]);
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some(r#"step "count" failed: exit status 2"#)
    );
    assert_eq!(outcome.output, None);
    assert_eq!(exec.calls_of("count").len(), 2, "retries = 1: two attempts");
    assert!(exec.calls_of("post").is_empty(), "later steps never run");
    let run = engine.run(&t, &id).await.unwrap().unwrap();
    assert_eq!(
        states(&run),
        [
            (WorkflowStepState::Succeeded, 1),
            (WorkflowStepState::Failed, 2),
            (WorkflowStepState::Cancelled, 0)
        ]
    );
    assert_eq!(run.steps[1].error.as_deref(), Some("exit status 2"));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_failure_is_not_retried() {
    let (exec, _, _, engine) = setup();
    exec.script("ask", vec![Script::Fail(StepFailure::fatal("no model"))]);
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Failed);
    assert_eq!(exec.calls_of("ask").len(), 1);
    assert!(exec.calls_of("count").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_step_past_its_timeout_is_stopped_and_counts_as_a_failed_attempt() {
    let (exec, _, _, engine) = setup();
    exec.script("ask", vec![Script::Hang]);
    let toml = THREE.replacen(
        "prompt = \"Summarize",
        "timeout_secs = 30\nretries = 0\nprompt = \"Summarize",
        1,
    );
    let t = tenant("default");
    let id = started(&engine, &toml).await;
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some(r#"step "ask" failed: timed out after 30 s"#)
    );
    // The engine stopped waiting at the limit the executor was told about.
    assert_eq!(exec.calls_of("ask")[0].timeout.as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_live_step_and_marks_the_run_cancelled() {
    let (exec, _, _, engine) = setup();
    exec.script("count", vec![Script::Hang]);
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let (outcome, cancelled) = tokio::join!(engine.drive(&t, &id), async {
        exec.started.notified().await;
        engine.cancel(&t, &id).await.unwrap()
    });
    assert!(cancelled);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Cancelled);
    assert!(
        exec.saw_cancel.load(Ordering::SeqCst),
        "the step saw its token fire"
    );
    assert!(exec.calls_of("post").is_empty());
    let run = engine.run(&t, &id).await.unwrap().unwrap();
    assert_eq!(
        states(&run),
        [
            (WorkflowStepState::Succeeded, 1),
            (WorkflowStepState::Cancelled, 1),
            (WorkflowStepState::Cancelled, 0)
        ]
    );
    assert!(!engine.cancel(&t, &id).await.unwrap(), "already ended");
    // Another tenant cannot cancel it, and nothing drives it any more.
    assert!(!engine.cancel(&tenant("acme"), &id).await.unwrap());
    assert!(engine.unfinished().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_run_is_driven_once_per_process() {
    let (exec, _, _, engine) = setup();
    exec.script("ask", vec![Script::Hang]);
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    let (_, second) = tokio::join!(engine.drive(&t, &id), async {
        exec.started.notified().await;
        let second = engine.drive(&t, &id).await;
        engine.cancel(&t, &id).await.unwrap();
        second
    });
    assert!(
        matches!(second, Err(WorkflowError::AlreadyDriving(_))),
        "{second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn inputs_are_checked_and_defaults_filled_in() {
    let (exec, _, _, engine) = setup();
    let t = tenant("default");
    engine.add(&t, THREE).await.unwrap();
    let err = engine
        .start(&t, "three", inputs(&[("who", "x"), ("topix", "y")]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"input "topix" is not an input of workflow "three" (its inputs: topic, who)"#
    );
    let err = engine.start(&t, "three", inputs(&[])).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"input "who" of workflow "three" has no default and was not given"#
    );
    let err = engine.start(&t, "nope", inputs(&[])).await.unwrap_err();
    assert!(matches!(err, WorkflowError::NoSuchWorkflow { .. }), "{err}");
    let id = engine
        .start(&t, "three", inputs(&[("who", "me"), ("topic", "bugs")]))
        .await
        .unwrap();
    engine.drive(&t, &id).await.unwrap();
    assert_eq!(
        exec.calls_of("ask")[0].action,
        StepAction::Agent {
            prompt: "Summarize bugs for me.".into(),
            session: SessionMode::Run
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_workflow_names_only_its_own_tenants_groups() {
    let (exec, groups, _, engine) = setup();
    // "sales" is acme's group, not default's.
    let foreign = THREE.replacen("group = \"team\"", "group = \"sales\"", 1);
    let err = engine.add(&tenant("default"), &foreign).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid workflow definition: steps[0] (id "ask"): key "group": "sales" is not a group of this workflow's tenant"#
    );
    assert!(
        engine
            .definitions(&tenant("default"))
            .await
            .unwrap()
            .is_empty()
    );
    // A group that goes away after add is refused before the step runs.
    let t = tenant("default");
    let id = started(&engine, THREE).await;
    groups.remove("default", "team");
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some(r#"step "ask" failed: group "team" is not a group of tenant default"#)
    );
    assert!(exec.calls.lock().unwrap().is_empty(), "nothing ran");
}

#[tokio::test(start_paused = true)]
async fn definitions_are_added_replaced_listed_and_removed_per_tenant() {
    let (_, _, _, engine) = setup();
    let (t, acme) = (tenant("default"), tenant("acme"));
    let (_, replaced) = engine.add(&t, THREE).await.unwrap();
    assert!(!replaced);
    let (_, replaced) = engine.add(&t, THREE).await.unwrap();
    assert!(replaced);
    assert_eq!(engine.definitions(&t).await.unwrap().len(), 1);
    assert!(engine.definitions(&acme).await.unwrap().is_empty());
    assert!(engine.definition(&acme, "three").await.unwrap().is_none());
    assert_eq!(
        engine
            .definition(&t, "three")
            .await
            .unwrap()
            .unwrap()
            .steps
            .len(),
        3
    );
    // A run keeps its copy of the definition after the workflow is removed.
    let id = engine
        .start(&t, "three", inputs(&[("who", "x")]))
        .await
        .unwrap();
    assert!(engine.remove(&t, "three").await.unwrap());
    assert!(!engine.remove(&t, "three").await.unwrap());
    let outcome = engine.drive(&t, &id).await.unwrap();
    assert_eq!(outcome.state, WorkflowRunState::Succeeded);
    assert_eq!(engine.runs(&t, Some("three"), 10).await.unwrap().len(), 1);
    assert!(engine.runs(&acme, None, 10).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_schedule_is_checked_by_the_check_the_binary_hands_in() {
    let exec = FakeExecutor::new();
    let groups = FakeGroups::with(&[("default", "team")]);
    let (_, engine) = engine(groups, exec);
    let engine = engine.with_schedule_check(Arc::new(|s: &str| {
        if s.split_whitespace().count() == 5 {
            Ok(())
        } else {
            Err(format!("{s:?} is not a five-field cron expression"))
        }
    }));
    let with = |schedule: &str| {
        format!(
            "name = \"w\"\n[trigger]\nschedule = \"{schedule}\"\n[[steps]]\nid = \"a\"\ntype = \"send\"\ngroup = \"team\"\ntext = \"x\""
        )
    };
    let t = tenant("default");
    engine.add(&t, &with("0 8 * * 1-5")).await.unwrap();
    let err = engine.add(&t, &with("every day")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid workflow definition: trigger: key "schedule": "every day" is not a five-field cron expression"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_chosen_run_id_starts_its_run_once() {
    let (_, _, _, engine) = setup();
    let t = tenant("default");
    engine.add(&t, THREE).await.unwrap();
    let given = inputs(&[("who", "x")]);
    assert!(
        engine
            .start_with_id(&t, "three", given.clone(), "firing-7")
            .await
            .unwrap()
    );
    assert!(
        !engine
            .start_with_id(&t, "three", given, "firing-7")
            .await
            .unwrap()
    );
    assert_eq!(engine.runs(&t, None, 10).await.unwrap().len(), 1);
}
