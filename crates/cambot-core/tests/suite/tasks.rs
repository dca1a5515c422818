//! The seed's task cases from db.test.ts.

use cambot_core::ContextMode;
use cambot_core::MissedRunPolicy;
use cambot_core::ScheduledTask;
use cambot_core::TaskRun;
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

#[test]
fn create_then_get_returns_prompt_and_status() {
    let s = store();
    s.create_task(&task("task-1")).unwrap();
    let got = s.task(&TaskId::new("task-1").unwrap()).unwrap().unwrap();
    assert_eq!(got.prompt, "do something");
    assert_eq!(got.status, TaskStatus::Active);
    assert_eq!(got, task("task-1"));
}

#[test]
fn status_update_to_paused_persists() {
    let s = store();
    s.create_task(&task("task-2")).unwrap();
    assert!(
        s.set_task_status(&TaskId::new("task-2").unwrap(), TaskStatus::Paused)
            .unwrap()
    );
    let got = s.task(&TaskId::new("task-2").unwrap()).unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Paused);
}

#[test]
fn delete_removes_the_task_and_its_runs() {
    let s = store();
    let id = TaskId::new("task-3").unwrap();
    s.create_task(&task("task-3")).unwrap();
    s.log_task_run(&TaskRun {
        id: 0,
        task_id: "task-3".into(),
        scheduled_for_ms: None,
        run_at: "2026-01-01T00:00:00.000Z".into(),
        duration_ms: Some(5),
        status: "success".into(),
        result: Some("ok".into()),
        error: None,
    })
    .unwrap();
    assert_eq!(s.task_runs(&id, 10).unwrap().len(), 1);
    assert!(s.delete_task(&id).unwrap());
    assert!(s.task(&id).unwrap().is_none());
    assert!(s.task_runs(&id, 10).unwrap().is_empty());
}
