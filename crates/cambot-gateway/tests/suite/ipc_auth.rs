//! The seed's ipc-auth.test.ts cases, against the real gateway over real Unix sockets: each run
//! gets its own socket, and the socket is the caller's identity.

use cambot_core::TaskStatus;
use cambot_protocol::ChatJid;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::TaskId;
use cambot_testkit::uds;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::ipc_world::*;

struct World {
    rig: IpcRig,
}

impl std::ops::Deref for World {
    type Target = IpcRig;
    fn deref(&self) -> &IpcRig {
        &self.rig
    }
}

impl World {
    async fn new() -> Self {
        let rig = IpcRig::new();
        for (t, chat, folder) in [
            ("default", "main@g.us", "main"),
            ("default", "other@g.us", "other-group"),
            ("default", "third@g.us", "third-group"),
            ("acme", "acme-main@g.us", "main"),
            ("acme", "acme-team@g.us", "team"),
        ] {
            rig.register(t, chat, folder, folder).await;
        }
        Self { rig }
    }

    fn main(&self) -> Run {
        self.run("default", "main", "main@g.us")
    }

    fn other(&self) -> Run {
        self.run("default", "other-group", "other@g.us")
    }

    async fn task_status(&self, id: &str) -> Option<TaskStatus> {
        self.store
            .task(&TaskId::new(id).unwrap())
            .await
            .unwrap()
            .map(|t| t.status)
    }

    async fn task_folder(&self, id: &str) -> String {
        self.store
            .task(&TaskId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap()
            .group_folder
            .to_string()
    }
}

async fn schedule(run: &Run, target: Option<&str>) -> (u16, Value) {
    let mut body =
        json!({"prompt": "do it", "schedule_type": "interval", "schedule_value": "3600000"});
    if let Some(t) = target {
        body["target_group_jid"] = json!(t);
    }
    run.call("/v1/ipc/schedule_task", body).await
}

async fn task_for(world: &World, folder_run: &Run) -> String {
    let (status, body) = schedule(folder_run, None).await;
    assert_eq!(status, 200, "{body}");
    let _ = world;
    body["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn schedule_task_authorization() {
    let w = World::new().await;
    let (main, other) = (w.main(), w.other());
    // Main may target another group: the task is stored under that group's folder.
    let (s, b) = schedule(&main, Some("other@g.us")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.task_folder(b["task_id"].as_str().unwrap()).await,
        "other-group"
    );
    // Non-main may target itself (explicitly or implicitly).
    let (s, b) = schedule(&other, Some("other@g.us")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.task_folder(b["task_id"].as_str().unwrap()).await,
        "other-group"
    );
    // Non-main may not target another group.
    let (s, _) = schedule(&other, Some("third@g.us")).await;
    assert_eq!(s, 403);
    // Unregistered target: nothing is created.
    let before = w.store.tasks(&tenant("default"), None).await.unwrap().len();
    let (s, _) = schedule(&main, Some("nobody@g.us")).await;
    assert_eq!(s, 404);
    assert_eq!(
        w.store.tasks(&tenant("default"), None).await.unwrap().len(),
        before
    );
}

#[tokio::test]
async fn pause_resume_cancel_authorization() {
    let w = World::new().await;
    let (main, other, third) = (
        w.main(),
        w.other(),
        w.run("default", "third-group", "third@g.us"),
    );
    for action in ["pause", "resume", "cancel"] {
        let own = task_for(&w, &other).await;
        let theirs = task_for(&w, &third).await;
        let by_main = task_for(&w, &other).await;
        if action == "resume" {
            for id in [&own, &theirs, &by_main] {
                w.store
                    .set_task_status(&TaskId::new(id).unwrap(), TaskStatus::Paused, None)
                    .await
                    .unwrap();
            }
        }
        let route = format!("/v1/ipc/{action}_task");
        let before_theirs = w.task_status(&theirs).await;
        // Non-main on another group's task: refused, unchanged.
        let (s, _) = other.call(&route, json!({"task_id": theirs})).await;
        assert_eq!(s, 403, "{action}");
        assert_eq!(
            w.task_status(&theirs).await,
            before_theirs,
            "{action}: another's task unchanged"
        );
        // Non-main on its own task; main on any task.
        for (run, id) in [(&other, &own), (&main, &by_main)] {
            let (s, b) = run.call(&route, json!({"task_id": id})).await;
            assert_eq!(s, 200, "{action}: {b}");
            let expected = match action {
                "pause" => Some(TaskStatus::Paused),
                "resume" => Some(TaskStatus::Active),
                _ => None,
            };
            assert_eq!(w.task_status(id).await, expected, "{action}");
        }
    }
}

#[tokio::test]
async fn resume_recomputes_the_next_run() {
    let w = World::new().await;
    let other = w.other();
    let id = task_for(&w, &other).await;
    let tid = TaskId::new(&id).unwrap();
    w.store
        .set_task_status(&tid, TaskStatus::Paused, Some(Some(1_000)))
        .await
        .unwrap();
    let (s, _) = other
        .call("/v1/ipc/resume_task", json!({"task_id": id}))
        .await;
    assert_eq!(s, 200);
    let next = w
        .store
        .task(&tid)
        .await
        .unwrap()
        .unwrap()
        .next_run_ms
        .unwrap();
    assert!(
        next > chrono::Utc::now().timestamp_millis(),
        "a resumed interval runs in the future, on its grid"
    );
}

#[tokio::test]
async fn register_group_rules() {
    let w = World::new().await;
    let (main, other) = (w.main(), w.other());
    let valid =
        json!({"jid": "new@g.us", "name": "New", "folder": "new-group", "trigger": "@Andy"});
    let (s, _) = other.call("/v1/ipc/register_group", valid.clone()).await;
    assert_eq!(s, 403, "non-main refused");
    let mut bad = valid.clone();
    bad["folder"] = json!("../../outside");
    let (s, b) = main.call("/v1/ipc/register_group", bad).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = main
        .call(
            "/v1/ipc/register_group",
            json!({"jid": "x@g.us", "name": "X"}),
        )
        .await;
    assert_eq!(s, 400, "missing folder and trigger: {b}");
    let (s, b) = main.call("/v1/ipc/register_group", valid).await;
    assert_eq!(s, 200, "{b}");
    let g = w
        .store
        .registered_group(&tenant("default"), &ChatJid::new("new@g.us").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (g.name.as_str(), g.folder.as_str(), g.trigger.as_str()),
        ("New", "new-group", "@Andy")
    );
}

#[tokio::test]
async fn list_groups_is_main_only_and_non_main_gets_a_clear_refusal() {
    let w = World::new().await;
    let (s, b) = w.other().call("/v1/ipc/list_groups", json!({})).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["kind"], "forbidden");
    let (s, b) = w.main().call("/v1/ipc/list_groups", json!({})).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn send_message_authorization() {
    let w = World::new().await;
    let (main, other) = (w.main(), w.other());
    for (run, jid, expected) in [
        (&main, "other@g.us", 200),
        (&main, "unregistered@g.us", 200),
        (&other, "other@g.us", 200),
        (&other, "third@g.us", 403),
        (&other, "unregistered@g.us", 403),
        // Never across tenants, not even for main.
        (&main, "acme-team@g.us", 403),
    ] {
        let (s, b) = run
            .call(
                "/v1/ipc/send_message",
                json!({"text": "hello", "chat_jid": jid}),
            )
            .await;
        assert_eq!(s, expected, "{jid}: {b}");
    }
    // Without a chat the message goes to the run's own chat; `<internal>` text never leaves.
    let (s, _) = other
        .call(
            "/v1/ipc/send_message",
            json!({"text": "<internal>x</internal>visible"}),
        )
        .await;
    assert_eq!(s, 200);
    let pending = w.store.pending_outbox(100).await.unwrap();
    let own: Vec<_> = pending
        .iter()
        .filter(|p| p.chat_jid.as_str() == "other@g.us")
        .map(|p| p.text.clone())
        .collect();
    assert!(own.contains(&"visible".to_owned()), "{own:?}");
    assert!(pending.iter().all(|p| !p.text.contains("internal")));
}

#[tokio::test]
async fn schedule_values_are_validated() {
    let w = World::new().await;
    let main = w.main();
    let now = chrono::Utc::now();
    let call = |t: &str, v: &str| {
        let body = json!({"prompt": "p", "schedule_type": t, "schedule_value": v});
        let main = &main;
        async move { main.call("/v1/ipc/schedule_task", body).await }
    };
    let (s, b) = call("cron", "0 9 * * *").await;
    assert_eq!(s, 200, "{b}");
    let next = chrono::DateTime::parse_from_rfc3339(b["next_run"].as_str().unwrap()).unwrap();
    assert!(next > now, "cron gets a future next_run");
    let (s, b) = call("interval", "3600000").await;
    assert_eq!(s, 200);
    let next = chrono::DateTime::parse_from_rfc3339(b["next_run"].as_str().unwrap()).unwrap();
    let delta = (next.with_timezone(&chrono::Utc) - now).num_milliseconds() - 3_600_000;
    assert!(
        delta.abs() <= 1_000,
        "interval next_run = now + 1 h (±1 s): off by {delta} ms"
    );
    let before = w.store.tasks(&tenant("default"), None).await.unwrap().len();
    for (t, v) in [
        ("cron", "not a cron"),
        ("interval", "abc"),
        ("interval", "0"),
        ("once", "not-a-date"),
        ("weekly", "x"),
    ] {
        let (s, b) = call(t, v).await;
        assert_eq!(s, 400, "{t} {v:?} must be rejected: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().len() > 10,
            "a reason is given: {b}"
        );
    }
    assert_eq!(
        w.store.tasks(&tenant("default"), None).await.unwrap().len(),
        before,
        "no task created"
    );
}

#[tokio::test]
async fn context_mode_is_stored_or_defaults_to_isolated() {
    let w = World::new().await;
    let main = w.main();
    for (given, stored) in [
        (Some("group"), "group"),
        (Some("isolated"), "isolated"),
        (Some("bogus"), "isolated"),
        (None, "isolated"),
    ] {
        let mut body =
            json!({"prompt": "p", "schedule_type": "interval", "schedule_value": "60000"});
        if let Some(g) = given {
            body["context_mode"] = json!(g);
        }
        let (s, b) = main.call("/v1/ipc/schedule_task", body).await;
        assert_eq!(s, 200);
        let task = w
            .store
            .task(&TaskId::new(b["task_id"].as_str().unwrap()).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(task.context_mode.as_str(), stored, "{given:?}");
    }
}

#[tokio::test]
async fn a_non_main_group_cannot_read_another_groups_tasks() {
    let w = World::new().await;
    let (main, other, third) = (
        w.main(),
        w.other(),
        w.run("default", "third-group", "third@g.us"),
    );
    task_for(&w, &other).await;
    let theirs = task_for(&w, &third).await;
    let (s, b) = other.call("/v1/ipc/list_tasks", json!({})).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&theirs.as_str()));
    assert!(
        b["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["group_folder"] == "other-group")
    );
    let (_, b) = main.call("/v1/ipc/list_tasks", json!({})).await;
    assert_eq!(
        b["tasks"].as_array().unwrap().len(),
        2,
        "main sees its tenant's tasks"
    );
}

#[tokio::test]
async fn one_runs_socket_never_acts_as_another_run() {
    let w = World::new().await;
    let (main, other) = (w.main(), w.other());
    // The other run's token on main's socket, and no token at all: refused.
    let r = uds::request(
        main.socket.path(),
        "POST",
        "/v1/ipc/list_groups",
        &[(RUN_TOKEN_HEADER, other.socket.token())],
        Some(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    let r = uds::request(
        main.socket.path(),
        "POST",
        "/v1/ipc/list_groups",
        &[],
        Some(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    // Identity claims in a payload grant nothing: refused as malformed, never as main.
    let (s, b) = other
        .call("/v1/ipc/register_group", json!({"jid": "x@g.us", "name": "X", "folder": "x", "trigger": "@A", "isMain": true, "groupFolder": "main"}))
        .await;
    assert!(s == 400 || s == 403, "{s} {b}");
    assert!(
        w.store
            .registered_group(&tenant("default"), &ChatJid::new("x@g.us").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let (s, _) = other
        .call("/v1/ipc/list_groups", json!({"group_folder": "main"}))
        .await;
    assert_eq!(s, 403);
    assert!(
        w.gateway
            .stats()
            .bad_token
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn tenants_never_meet() {
    let w = World::new().await;
    let acme_main = w.run("acme", "main", "acme-main@g.us");
    let default_task = task_for(&w, &w.other()).await;
    // Another tenant's main: the task does not exist for it.
    for action in ["pause", "resume", "cancel"] {
        let (s, _) = acme_main
            .call(
                &format!("/v1/ipc/{action}_task"),
                json!({"task_id": default_task}),
            )
            .await;
        assert_eq!(s, 404, "{action}");
    }
    assert_eq!(w.task_status(&default_task).await, Some(TaskStatus::Active));
    let (s, _) = schedule(&acme_main, Some("other@g.us")).await;
    assert_eq!(s, 403, "a chat of another tenant is refused");
    let (_, b) = acme_main.call("/v1/ipc/list_tasks", json!({})).await;
    assert!(b["tasks"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_with_a_reason() {
    let w = World::new().await;
    let main = w.main();
    let path = main.socket.path().to_owned();
    let token = main.socket.token().to_owned();
    let r = uds::request(
        &path,
        "POST",
        "/v1/ipc/send_message",
        &[(RUN_TOKEN_HEADER, &token)],
        Some(&json!({"txt": 1})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{}",
        r.body
    );
    let r = uds::request(
        &path,
        "POST",
        "/v1/ipc/nope",
        &[(RUN_TOKEN_HEADER, &token)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = uds::request(
        &path,
        "POST",
        "/v1/model/unknown/v1/messages",
        &[(RUN_TOKEN_HEADER, &token)],
        Some(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = uds::request(
        &path,
        "POST",
        "/v1/fetch",
        &[(RUN_TOKEN_HEADER, &token)],
        Some(&json!({"url": "https://example.com/"})),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status, 403,
        "fetch is refused unless the host allows the host name"
    );
}

#[tokio::test]
async fn send_message_is_rate_limited() {
    let w = World::new().await;
    let other = w.other();
    let mut statuses = Vec::new();
    for i in 0..15 {
        let (s, _) = other
            .call("/v1/ipc/send_message", json!({"text": format!("m{i}")}))
            .await;
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "burst of 10: {statuses:?}"
    );
    assert!(statuses[10..].iter().all(|s| *s == 429));
}
