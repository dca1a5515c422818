//! Workflow rows on real SQLite: definitions per tenant, a run and its steps round-trip, step
//! transitions are compare-and-set, ending a run cancels its unfinished steps, and a reply with
//! an idempotency key is queued once.

use cambot_core::OnceReply;
use cambot_core::WorkflowDefRow;
use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepChange;
use cambot_core::WorkflowStepRow;
use cambot_core::WorkflowStepState;
use cambot_core::WorkflowStore;

use super::*;

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn def(tenant: &str, name: &str, toml: &str, at: i64) -> WorkflowDefRow {
    WorkflowDefRow {
        tenant: t(tenant),
        name: name.into(),
        toml: toml.into(),
        created_ms: at,
        updated_ms: at,
    }
}

pub(crate) fn run(tenant: &str, id: &str, created_ms: i64) -> WorkflowRunRow {
    WorkflowRunRow {
        id: id.into(),
        tenant: t(tenant),
        workflow: "digest".into(),
        definition: "name = \"digest\"".into(),
        inputs: r#"{"topic":"x"}"#.into(),
        state: WorkflowRunState::Running,
        error: None,
        created_ms,
        updated_ms: created_ms,
        finished_ms: None,
        steps: vec![
            WorkflowStepRow::pending(0, "a"),
            WorkflowStepRow::pending(1, "b"),
            WorkflowStepRow::pending(2, "c"),
        ],
    }
}

fn change(
    run_id: &str,
    from: (WorkflowStepState, u32),
    step: WorkflowStepRow,
) -> WorkflowStepChange {
    WorkflowStepChange {
        tenant: t("default"),
        run_id: run_id.into(),
        expected_state: from.0,
        expected_attempt: from.1,
        step,
        finish_run: None,
    }
}

fn started(idx: u32, id: &str, attempt: u32) -> WorkflowStepRow {
    WorkflowStepRow {
        state: WorkflowStepState::Running,
        attempt,
        started_ms: Some(10),
        ..WorkflowStepRow::pending(idx, id)
    }
}

#[tokio::test]
async fn definitions_are_kept_per_tenant_and_a_replacement_keeps_its_creation_time() {
    let s = store();
    assert!(
        !s.put_workflow_def(def("default", "digest", "v1", 1))
            .await
            .unwrap()
    );
    assert!(
        !s.put_workflow_def(def("acme", "digest", "acme", 2))
            .await
            .unwrap()
    );
    assert!(
        s.put_workflow_def(def("default", "digest", "v2", 5))
            .await
            .unwrap()
    );
    let got = s
        .workflow_def(&t("default"), "digest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.toml.as_str(), got.created_ms, got.updated_ms),
        ("v2", 1, 5)
    );
    assert_eq!(
        s.workflow_def(&t("acme"), "digest")
            .await
            .unwrap()
            .unwrap()
            .toml,
        "acme"
    );
    assert_eq!(s.workflow_defs(Some(&t("acme"))).await.unwrap().len(), 1);
    assert_eq!(s.workflow_defs(None).await.unwrap().len(), 2);
    assert!(
        s.delete_workflow_def(&t("default"), "digest")
            .await
            .unwrap()
    );
    assert!(
        !s.delete_workflow_def(&t("default"), "digest")
            .await
            .unwrap()
    );
    assert!(
        s.workflow_def(&t("default"), "digest")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.workflow_def(&t("acme"), "digest")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_run_round_trips_with_its_steps_and_only_for_its_tenant() {
    let s = store();
    assert!(
        s.create_workflow_run(run("default", "r1", 1))
            .await
            .unwrap()
    );
    assert!(
        s.create_workflow_run(run("default", "r2", 2))
            .await
            .unwrap()
    );
    let mut again = run("default", "r1", 9);
    again.steps.pop();
    assert!(
        !s.create_workflow_run(again).await.unwrap(),
        "an existing id is kept"
    );
    s.create_workflow_run(run("acme", "r3", 3)).await.unwrap();
    assert_eq!(
        s.workflow_run(&t("default"), "r1").await.unwrap(),
        Some(run("default", "r1", 1))
    );
    assert!(s.workflow_run(&t("acme"), "r1").await.unwrap().is_none());
    let listed = s.workflow_runs(&t("default"), None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"],
        "newest first"
    );
    assert_eq!(listed[0].steps.len(), 3);
    assert!(
        s.workflow_runs(&t("default"), Some("other"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.workflow_runs(&t("default"), None, 1).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.unfinished_workflow_runs().await.unwrap(),
        vec![
            (t("default"), "r1".to_owned()),
            (t("default"), "r2".to_owned()),
            (t("acme"), "r3".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_step_transition_applies_only_from_the_expected_state_and_attempt() {
    let s = store();
    s.create_workflow_run(run("default", "r1", 1))
        .await
        .unwrap();
    let pending = (WorkflowStepState::Pending, 0);
    assert!(
        s.update_workflow_step(change("r1", pending, started(0, "a", 1)))
            .await
            .unwrap()
    );
    // The same transition again: the step is no longer pending.
    assert!(
        !s.update_workflow_step(change("r1", pending, started(0, "a", 1)))
            .await
            .unwrap()
    );
    // A stale attempt number does not apply either.
    let done = WorkflowStepRow {
        state: WorkflowStepState::Succeeded,
        attempt: 1,
        output: Some("out".into()),
        started_ms: Some(10),
        finished_ms: Some(20),
        ..WorkflowStepRow::pending(0, "a")
    };
    let stale = (WorkflowStepState::Running, 2);
    assert!(
        !s.update_workflow_step(change("r1", stale, done.clone()))
            .await
            .unwrap()
    );
    let running = (WorkflowStepState::Running, 1);
    assert!(
        s.update_workflow_step(change("r1", running, done.clone()))
            .await
            .unwrap()
    );
    let mut other_tenant = change("r1", (WorkflowStepState::Pending, 0), started(1, "b", 1));
    other_tenant.tenant = t("acme");
    assert!(!s.update_workflow_step(other_tenant).await.unwrap());
    let got = s.workflow_run(&t("default"), "r1").await.unwrap().unwrap();
    assert_eq!(got.steps[0], done);
    assert_eq!(got.steps[1], WorkflowStepRow::pending(1, "b"));
    assert_eq!(got.state, WorkflowRunState::Running);
}

#[tokio::test]
async fn the_last_step_ends_the_run_in_the_same_transaction() {
    let s = store();
    s.create_workflow_run(run("default", "r1", 1))
        .await
        .unwrap();
    let mut c = change("r1", (WorkflowStepState::Pending, 0), started(2, "c", 1));
    c.step.state = WorkflowStepState::Failed;
    c.step.error = Some("boom".into());
    c.finish_run = Some((WorkflowRunState::Failed, Some("step c failed".into())));
    assert!(s.update_workflow_step(c).await.unwrap());
    let got = s.workflow_run(&t("default"), "r1").await.unwrap().unwrap();
    assert_eq!(got.state, WorkflowRunState::Failed);
    assert_eq!(got.error.as_deref(), Some("step c failed"));
    assert!(got.finished_ms.is_some());
    let states: Vec<_> = got.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            WorkflowStepState::Cancelled,
            WorkflowStepState::Cancelled,
            WorkflowStepState::Failed
        ]
    );
    assert!(s.unfinished_workflow_runs().await.unwrap().is_empty());
    // A finished run takes no more step transitions.
    let late = change("r1", (WorkflowStepState::Cancelled, 0), started(0, "a", 1));
    assert!(!s.update_workflow_step(late).await.unwrap());
}

#[tokio::test]
async fn cancelling_a_run_cancels_its_unfinished_steps_once() {
    let s = store();
    s.create_workflow_run(run("default", "r1", 1))
        .await
        .unwrap();
    let done = WorkflowStepRow {
        state: WorkflowStepState::Succeeded,
        attempt: 1,
        output: Some("x".into()),
        ..WorkflowStepRow::pending(0, "a")
    };
    assert!(
        s.update_workflow_step(change("r1", (WorkflowStepState::Pending, 0), done))
            .await
            .unwrap()
    );
    assert!(
        s.update_workflow_step(change(
            "r1",
            (WorkflowStepState::Pending, 0),
            started(1, "b", 1)
        ))
        .await
        .unwrap()
    );
    let (d, acme) = (t("default"), t("acme"));
    assert!(
        !s.finish_workflow_run(&acme, "r1", WorkflowRunState::Cancelled, None)
            .await
            .unwrap()
    );
    assert!(
        s.finish_workflow_run(&d, "r1", WorkflowRunState::Cancelled, None)
            .await
            .unwrap()
    );
    assert!(
        !s.finish_workflow_run(&d, "r1", WorkflowRunState::Failed, None)
            .await
            .unwrap()
    );
    let got = s.workflow_run(&d, "r1").await.unwrap().unwrap();
    assert_eq!(got.state, WorkflowRunState::Cancelled);
    let states: Vec<_> = got.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            WorkflowStepState::Succeeded,
            WorkflowStepState::Cancelled,
            WorkflowStepState::Cancelled
        ]
    );
}

#[tokio::test]
async fn a_reply_with_an_idempotency_key_is_queued_once() {
    let s = store();
    let once = |text: &str| OnceReply {
        tenant: tenant(),
        chat_jid: jid("x@g.us"),
        text: text.into(),
        origin: "workflow:digest".into(),
        idempotency_key: "wf:r1/post".into(),
    };
    let (id, new) = s.enqueue_reply_once(once("hello")).await.unwrap();
    assert!(new);
    assert_eq!(
        s.enqueue_reply_once(once("hello again")).await.unwrap(),
        (id, false)
    );
    let pending = s.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].text.as_str()), (id, "hello"));
    let mut other = once("other");
    other.idempotency_key = "wf:r1/post2".into();
    assert!(s.enqueue_reply_once(other).await.unwrap().1);
    assert_eq!(s.pending_outbox(10).await.unwrap().len(), 2);
}
