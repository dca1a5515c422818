//! The cross-tenant attack suite, end to end: the real `cambot` binary sets up two tenants
//! `acme` and `beta` (each with groups `main` and `g1`, a user `alice` and a mount root), then a
//! real daemon runs them on the real bwrap sandbox with the real `cambot-runner`, the fake chat
//! channel and the web channel on loopback; only the model is a wire-exact stand-in, scripted to
//! make acme's agent call its host tools and bash against beta. Every attack from acme on beta
//! is refused, and each runs next to the same action on acme's own data, which is allowed.
//! IPC cases are here; sandbox and session cases in `cross_tenant_sandbox.rs`, CLI and web
//! cases in `cross_tenant_web.rs`, the shared set-up in `cross_tenant_world.rs`.

use std::collections::HashMap;
use std::time::Duration;

use cambot_core::TaskStatus;
use cambot_protocol::ChatJid;
use cambot_protocol::TaskId;
use cambot_testkit::standin::ToolCall;
use serde_json::json;

use super::cross_tenant_world::*;

#[track_caller]
fn allowed<'a>(results: &'a HashMap<String, String>, id: &str, want: &str, case: &str) -> &'a str {
    let r = &results[id];
    assert!(
        r.contains(want) && !r.contains("refused"),
        "control failed [{case}]: {r}"
    );
    r
}

/// The task id in a `schedule_task` result ("scheduled task <id> (next run: ...)").
fn task_id(result: &str) -> String {
    result
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no task id in {result}"))
        .to_owned()
}

async fn status(w: &World, id: &str) -> Option<TaskStatus> {
    w.store()
        .task(&TaskId::new(id).unwrap())
        .await
        .unwrap()
        .map(|t| t.status)
}

fn schedule(id: &str, target: &str) -> ToolCall {
    call(
        id,
        "schedule_task",
        json!({"prompt": format!("task {id}"), "schedule_type": "cron",
               "schedule_value": "0 9 * * 1", "target_group_jid": target}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn ipc_from_acme_runs_never_reaches_beta() {
    let Some(w) = World::start().await else {
        return;
    };
    // beta's own tasks, scheduled the real way (both for beta's g1: the same folder name as
    // acme's g1).
    let r = w
        .tools(
            "beta",
            "main",
            vec![
                schedule("b1", "fake:beta-g1"),
                schedule("b2", "fake:beta-g1"),
            ],
        )
        .await;
    let (tb1, tb2) = (
        task_id(allowed(&r, "b1", "scheduled task", "beta setup")),
        task_id(allowed(&r, "b2", "scheduled task", "beta setup")),
    );

    // acme's main: each attack next to its same-tenant control.
    let r = w
        .tools(
            "acme",
            "main",
            vec![
                call("send-beta", "send_message", json!({"text": "from acme", "chat_jid": "fake:beta-g1"})),
                call("send-beta-main", "send_message", json!({"text": "from acme", "chat_jid": "fake:beta-main"})),
                call("send-own", "send_message", json!({"text": "acme to its g1", "chat_jid": "fake:acme-g1"})),
                schedule("sched-beta", "fake:beta-g1"),
                schedule("sched-own1", "fake:acme-g1"),
                schedule("sched-own2", "fake:acme-g1"),
                call("list-tasks", "list_tasks", json!({})),
                call("list-groups", "list_groups", json!({})),
                call("reg-beta", "register_group", json!({"jid": "fake:beta-g1", "name": "stolen", "folder": "stolen", "trigger": "@Andy"})),
                call("reg-main", "register_group", json!({"jid": "fake:acme-x", "name": "x", "folder": "main", "trigger": "@Andy"})),
                call("reg-global", "register_group", json!({"jid": "fake:acme-y", "name": "y", "folder": "global", "trigger": "@Andy"})),
                call("reg-own", "register_group", json!({"jid": "fake:acme-g2", "name": "g2", "folder": "g2", "trigger": "@Andy"})),
            ],
        )
        .await;
    let mut failures = Vec::new();
    let mut check = |ok: bool, case: &str, detail: &str| {
        if !ok {
            failures.push(format!("{case}: {detail}"));
        }
    };
    for id in ["send-beta", "send-beta-main", "sched-beta"] {
        check(r[id].contains("refused by the host"), id, &r[id]);
    }
    allowed(&r, "send-own", "message sent", "send_message to acme's g1");
    let ta1 = task_id(allowed(&r, "sched-own1", "scheduled task", "schedule own"));
    let ta2 = task_id(allowed(&r, "sched-own2", "scheduled task", "schedule own"));
    let tasks = &r["list-tasks"];
    check(
        tasks.contains(&ta1) && !tasks.contains(&tb1) && !tasks.contains(&tb2),
        "list_tasks (main)",
        tasks,
    );
    let groups = &r["list-groups"];
    check(
        groups.contains("fake:acme-main") && !groups.contains("fake:beta"),
        "list_groups",
        groups,
    );
    allowed(&r, "reg-own", "registered", "register_group own");
    for id in ["reg-beta", "reg-main", "reg-global"] {
        check(r[id].contains("refused by the host"), id, &r[id]);
    }
    // beta's chat is still beta's alone, and acme did not gain it.
    let beta_g1 = ChatJid::new("fake:beta-g1").unwrap();
    let theirs = w
        .store()
        .registered_group(&tid("beta"), &beta_g1)
        .await
        .unwrap();
    check(
        theirs.is_some_and(|g| g.folder == g1()),
        "register_group of beta's jid: beta's registration",
        "changed",
    );
    let ours = w
        .store()
        .registered_group(&tid("acme"), &beta_g1)
        .await
        .unwrap();
    check(
        ours.is_none(),
        "register_group of beta's jid: acme",
        "registered it",
    );
    // Deliveries: acme's g1 got its message; nothing of acme's reached a beta chat (beta's
    // own run replied there).
    tokio::time::timeout(WAIT, async {
        while !w.fake.sent().iter().any(|d| d.chat_jid == "fake:acme-g1") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("acme's send_message to its g1 was not delivered");
    let sent = w.fake.sent();
    check(
        !sent
            .iter()
            .any(|d| d.chat_jid.starts_with("fake:beta") && d.text.contains("acme")),
        "send_message delivery",
        &format!("{sent:?}"),
    );
    // Only beta's two tasks exist for beta.
    let beta_tasks = w.store().tasks(&tid("beta"), None).await.unwrap();
    check(
        beta_tasks.len() == 2,
        "schedule_task for beta",
        &format!("{beta_tasks:?}"),
    );

    // Task verbs on beta's task ids, next to the same verbs on acme's own.
    let r = w
        .tools(
            "acme",
            "main",
            vec![
                call("pause-beta", "pause_task", json!({"task_id": tb1})),
                call("pause-own", "pause_task", json!({"task_id": ta1})),
                call("cancel-beta", "cancel_task", json!({"task_id": tb2})),
                call("cancel-own", "cancel_task", json!({"task_id": ta2})),
            ],
        )
        .await;
    for id in ["pause-beta", "cancel-beta"] {
        check(r[id].contains("refused by the host"), id, &r[id]);
    }
    allowed(&r, "pause-own", "paused", "pause own");
    allowed(&r, "cancel-own", "cancelled", "cancel own");
    // beta pauses its own task, so resume is a real attack.
    let r = w
        .tools(
            "beta",
            "main",
            vec![call("bp", "pause_task", json!({"task_id": tb2}))],
        )
        .await;
    allowed(&r, "bp", "paused", "beta pauses its own");
    let r = w
        .tools(
            "acme",
            "main",
            vec![
                call("resume-beta", "resume_task", json!({"task_id": tb2})),
                call("resume-own", "resume_task", json!({"task_id": ta1})),
            ],
        )
        .await;
    check(
        r["resume-beta"].contains("refused by the host"),
        "resume-beta",
        &r["resume-beta"],
    );
    allowed(&r, "resume-own", "resumed", "resume own");
    check(
        status(&w, &tb1).await == Some(TaskStatus::Active),
        "pause beta's",
        "beta's task changed",
    );
    check(
        status(&w, &tb2).await == Some(TaskStatus::Paused),
        "cancel/resume beta's",
        "beta's task changed",
    );
    assert_eq!(status(&w, &ta1).await, Some(TaskStatus::Active));
    assert_eq!(status(&w, &ta2).await, None);

    // acme's g1 (not main, same folder name as beta's g1).
    let r = w
        .tools(
            "acme",
            "g1",
            vec![
                call(
                    "g-send-beta",
                    "send_message",
                    json!({"text": "x", "chat_jid": "fake:beta-g1"}),
                ),
                call(
                    "g-send-own",
                    "send_message",
                    json!({"text": "g1 to itself", "chat_jid": "fake:acme-g1"}),
                ),
                schedule("g-sched-beta", "fake:beta-g1"),
                schedule("g-sched-own", "fake:acme-g1"),
                call("g-pause-beta", "pause_task", json!({"task_id": tb1})),
                call("g-list", "list_tasks", json!({})),
            ],
        )
        .await;
    for id in ["g-send-beta", "g-sched-beta", "g-pause-beta"] {
        check(r[id].contains("refused by the host"), id, &r[id]);
    }
    allowed(&r, "g-send-own", "message sent", "g1 send own");
    allowed(&r, "g-sched-own", "scheduled task", "g1 schedule own");
    let list = &r["g-list"];
    check(
        list.contains(&ta1) && !list.contains(&tb1) && !list.contains(&tb2),
        "list_tasks (g1, same folder name)",
        list,
    );
    check(
        status(&w, &tb1).await == Some(TaskStatus::Active),
        "g1 pause beta's",
        "changed",
    );
    assert_eq!(w.store().tasks(&tid("beta"), None).await.unwrap().len(), 2);
    w.shutdown().await;
    assert!(
        failures.is_empty(),
        "attacks not refused:\n{}",
        failures.join("\n")
    );
}
