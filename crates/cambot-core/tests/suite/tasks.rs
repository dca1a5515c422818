//! The seed's task cases from db.test.ts.

use cambot_core::Claim;
use cambot_core::ContextMode;
use cambot_core::MissedRunPolicy;
use cambot_core::RunOutcomeRecord;
use cambot_core::ScheduledTask;
use cambot_core::TaskRunStatus;
use cambot_core::TaskStatus;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use pretty_assertions::assert_eq;

use super::*;

fn task(id: &str) -> ScheduledTask {
    ScheduledTask {
        id: TaskId::new(id).unwrap(),
        tenant: tenant(),
        group_folder: GroupFolder::main(),
        chat_jid: jid("cli:console"),
        prompt: "do something".into(),
        schedule_type: "once".into(),
        schedule_value: "2026-06-01T00:00:00Z".into(),
        timezone: "UTC".into(),
        context_mode: ContextMode::Isolated,
        missed_policy: MissedRunPolicy::Skip,
        next_run_ms: Some(1_780_272_000_000),
        last_run: None,
        last_result: None,
        status: TaskStatus::Active,
        created_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn create_then_get_returns_prompt_and_status() {
    let s = store();
    s.create_task(&task("task-1")).await.unwrap();
    let got = s
        .task(&TaskId::new("task-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.prompt, "do something");
    assert_eq!(got.status, TaskStatus::Active);
    assert_eq!(got, task("task-1"));
}

#[tokio::test]
async fn status_update_to_paused_persists() {
    let s = store();
    s.create_task(&task("task-2")).await.unwrap();
    assert!(
        s.set_task_status(&TaskId::new("task-2").unwrap(), TaskStatus::Paused, None)
            .await
            .unwrap()
    );
    let got = s
        .task(&TaskId::new("task-2").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, TaskStatus::Paused);
}

#[tokio::test]
async fn delete_removes_the_task_and_its_runs() {
    let s = store();
    let id = TaskId::new("task-3").unwrap();
    let t = task("task-3");
    s.create_task(&t).await.unwrap();
    // One firing, claimed and run to success: the task's run log holds one row.
    let claimed = s
        .claim_firings(&[Claim {
            task_id: id.clone(),
            expected_next_run_ms: t.next_run_ms.unwrap(),
            new_next_run_ms: None,
            scheduled_for_ms: t.next_run_ms.unwrap(),
            run_status: TaskRunStatus::Claimed,
            note: None,
        }])
        .await
        .unwrap();
    let [Some(run_id)] = claimed[..] else {
        panic!("the firing was not claimed: {claimed:?}");
    };
    s.start_task_run(run_id).await.unwrap();
    s.finish_task_run(
        run_id,
        &id,
        &RunOutcomeRecord {
            status: TaskRunStatus::Success,
            duration_ms: 5,
            result: Some("ok".into()),
            error: None,
            completes_once: true,
        },
    )
    .await
    .unwrap();
    let runs = s.task_runs(&id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, TaskRunStatus::Success);
    assert!(s.delete_task(&id).await.unwrap());
    assert!(s.task(&id).await.unwrap().is_none());
    assert!(s.task_runs(&id, 10).await.unwrap().is_empty());
}
