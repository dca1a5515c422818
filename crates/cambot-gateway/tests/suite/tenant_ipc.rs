//! Cross-tenant attacks on the host tools, against the real gateway over real Unix sockets and
//! a real SQLite store. Two tenants, `acme` and `beta`, each with a `main` group and a group of
//! the same folder name (`team`), and one chat jid (`both@g.us`) registered in each. Every
//! attack from acme on beta is refused (and logged with both tenants where the brief asks);
//! every case also runs its allowed same-tenant control.

use std::io::Write;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_core::TaskStatus;
use cambot_protocol::ChatMetadata;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TaskId;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::ipc_world::*;

/// A web session's registration as the web channel makes it (`web:<tenant>:<user>:<session>`,
/// folder `web-<hash>`).
const ACME_WEB_JID: &str = "web:acme:alice:s1";
const ACME_WEB_FOLDER: &str = "web-0123456789abcdef0123456789abcdef";

/// Everything logged while a test runs (the tests run on one thread, so a thread-local
/// subscriber sees the gateway's tasks too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The warning lines that name both tenants.
    fn cross_tenant_warnings(&self, caller: &str, target: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    && l.contains(&format!("tenant={caller}"))
                    && l.contains(&format!("target_tenant={target}"))
            })
            .count()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Run {
    async fn send(&self, to: &str) -> (u16, Value) {
        self.call(
            "/v1/ipc/send_message",
            json!({"text": "hello", "chat_jid": to}),
        )
        .await
    }

    async fn schedule(&self, target: Option<&str>) -> (u16, Value) {
        let mut body =
            json!({"prompt": "do it", "schedule_type": "interval", "schedule_value": "3600000"});
        if let Some(t) = target {
            body["target_group_jid"] = json!(t);
        }
        self.call("/v1/ipc/schedule_task", body).await
    }

    async fn register(&self, jid: &str, folder: &str, name: &str) -> (u16, Value) {
        self.call(
            "/v1/ipc/register_group",
            json!({"jid": jid, "name": name, "folder": folder, "trigger": "@Andy"}),
        )
        .await
    }
}

struct World {
    rig: IpcRig,
    logs: Logs,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl std::ops::Deref for World {
    type Target = IpcRig;
    fn deref(&self) -> &IpcRig {
        &self.rig
    }
}

impl World {
    async fn new() -> Self {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let log_guard = tracing::subscriber::set_default(subscriber);
        let rig = IpcRig::new();
        for (t, j, folder) in [
            ("acme", "acme-main@g.us", "main"),
            ("acme", "acme-team@g.us", "team"),
            ("acme", "both@g.us", "team"),
            ("acme", ACME_WEB_JID, ACME_WEB_FOLDER),
            ("beta", "beta-main@g.us", "main"),
            ("beta", "beta-team@g.us", "team"),
            ("beta", "both@g.us", "team"),
            ("default", "main@g.us", "main"),
        ] {
            rig.register(t, j, folder, &format!("{t} {folder}")).await;
            // Group chats are what `list_groups` shows.
            rig.store
                .store_chat_metadata(ChatMetadata {
                    tenant: tenant(t),
                    chat_jid: jid(j),
                    timestamp: "2026-01-01T00:00:00.000Z".into(),
                    name: Some(format!("{t} {folder}")),
                    channel: Some("fake".into()),
                    is_group: Some(true),
                })
                .await
                .unwrap();
        }
        Self {
            rig,
            logs,
            _log_guard: log_guard,
        }
    }

    fn acme_main(&self) -> Run {
        self.run("acme", "main", "acme-main@g.us")
    }

    fn acme_team(&self) -> Run {
        self.run("acme", "team", "acme-team@g.us")
    }

    fn beta_team(&self) -> Run {
        self.run("beta", "team", "beta-team@g.us")
    }

    async fn registration(&self, t: &str, j: &str) -> Option<RegisteredGroup> {
        self.store
            .registered_group(&tenant(t), &jid(j))
            .await
            .unwrap()
    }

    /// `(tenant, jid)` of every reply waiting in the outbox.
    async fn outbox(&self) -> Vec<(String, String)> {
        self.store
            .pending_outbox(100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.tenant.to_string(), r.chat_jid.to_string()))
            .collect()
    }

    async fn task_count(&self, t: &str) -> usize {
        self.store.tasks(&tenant(t), None).await.unwrap().len()
    }
}

fn task_id(body: &Value) -> String {
    body["task_id"].as_str().unwrap().to_owned()
}

// --- register_group --------------------------------------------------------------------------

#[tokio::test]
async fn register_group_cannot_take_over_another_tenants_chat() {
    let w = World::new().await;
    let main = w.acme_main();
    let before = w.registration("beta", "beta-team@g.us").await;
    let (s, b) = main.register("beta-team@g.us", "team", "stolen").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(w.registration("beta", "beta-team@g.us").await, before);
    assert_eq!(w.registration("acme", "beta-team@g.us").await, None);
    assert_eq!(w.logs.cross_tenant_warnings("acme", "beta"), 1);
    // Control: a new chat of its own tenant, into a folder of the same name as beta's.
    let (s, b) = main.register("acme-new@g.us", "team", "new").await;
    assert_eq!(s, 200, "{b}");
    let g = w.registration("acme", "acme-new@g.us").await.unwrap();
    assert_eq!(g.folder.as_str(), "team");
    assert_eq!(w.registration("beta", "acme-new@g.us").await, None);
}

#[tokio::test]
async fn register_group_refuses_reserved_folders() {
    let w = World::new().await;
    let main = w.acme_main();
    for (folder, status) in [
        ("main", 403),
        ("MAIN", 403),
        ("Main", 403),
        ("global", 400),
        ("Global", 400),
        ("web-0123", 403),
        (ACME_WEB_FOLDER, 403),
    ] {
        let (s, b) = main.register("acme-x@g.us", folder, "x").await;
        assert_eq!(s, status, "{folder}: {b}");
        assert_eq!(
            w.registration("acme", "acme-x@g.us").await,
            None,
            "{folder}"
        );
    }
    // Control: an ordinary folder name.
    let (s, b) = main.register("acme-x@g.us", "ops", "x").await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn register_group_cannot_repoint_a_web_session() {
    let w = World::new().await;
    let main = w.acme_main();
    let before = w.registration("acme", ACME_WEB_JID).await;
    for folder in ["main", "team", ACME_WEB_FOLDER] {
        let (s, b) = main.register(ACME_WEB_JID, folder, "hijack").await;
        assert_eq!(s, 403, "{folder}: {b}");
    }
    assert_eq!(w.registration("acme", ACME_WEB_JID).await, before);
    // Nor a session of another tenant, even one not registered yet.
    let (s, b) = main.register("web:beta:bob:s9", "team", "hijack").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(w.registration("acme", "web:beta:bob:s9").await, None);
    // Control: an ordinary chat is registered.
    let (s, b) = main.register("acme-y@g.us", "team", "y").await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn register_group_cannot_move_a_chat_to_another_folder() {
    let w = World::new().await;
    let main = w.acme_main();
    // Moving a group's chat, or main's own chat, to another folder is the operator's job.
    let (s, b) = main.register("acme-team@g.us", "ops", "moved").await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = main.register("acme-main@g.us", "team", "demoted").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(
        w.registration("acme", "acme-team@g.us")
            .await
            .unwrap()
            .folder
            .as_str(),
        "team"
    );
    assert!(
        w.registration("acme", "acme-main@g.us")
            .await
            .unwrap()
            .is_main()
    );
    // Control: re-registering into the same folder updates the name.
    let (s, b) = main.register("acme-team@g.us", "team", "renamed").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.registration("acme", "acme-team@g.us").await.unwrap().name,
        "renamed"
    );
    // The same jid registered in both tenants: acme's change touches acme's row only.
    let beta_both = w.registration("beta", "both@g.us").await;
    let (s, b) = main.register("both@g.us", "team", "acme's both").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(w.registration("beta", "both@g.us").await, beta_both);
}

#[tokio::test]
async fn a_non_main_group_of_the_same_folder_name_administers_nothing() {
    let w = World::new().await;
    // beta's `team` group is not main, whatever the folder names of acme.
    let team = w.beta_team();
    let (s, _) = team.register("beta-z@g.us", "ops", "z").await;
    assert_eq!(s, 403);
    let (s, _) = team.call("/v1/ipc/list_groups", json!({})).await;
    assert_eq!(s, 403);
    // Control: beta's main may.
    let beta_main = w.run("beta", "main", "beta-main@g.us");
    let (s, b) = beta_main.register("beta-z@g.us", "ops", "z").await;
    assert_eq!(s, 200, "{b}");
}

// --- list_groups / list_tasks -----------------------------------------------------------------

#[tokio::test]
async fn list_groups_shows_only_the_callers_tenant() {
    let w = World::new().await;
    let (s, b) = w.acme_main().call("/v1/ipc/list_groups", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let mut jids: Vec<&str> = b["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["jid"].as_str().unwrap())
        .collect();
    jids.sort_unstable();
    assert_eq!(
        jids,
        [
            "acme-main@g.us",
            "acme-team@g.us",
            "both@g.us",
            ACME_WEB_JID
        ]
    );
    // Control: beta's main sees beta's, with beta's own `both@g.us`.
    let (_, b) = w
        .run("beta", "main", "beta-main@g.us")
        .call("/v1/ipc/list_groups", json!({}))
        .await;
    let mut jids: Vec<&str> = b["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["jid"].as_str().unwrap())
        .collect();
    jids.sort_unstable();
    assert_eq!(jids, ["beta-main@g.us", "beta-team@g.us", "both@g.us"]);
}

#[tokio::test]
async fn list_tasks_shows_only_the_callers_tenant() {
    let w = World::new().await;
    let beta_task = task_id(&w.beta_team().schedule(None).await.1);
    let acme_task = task_id(&w.acme_team().schedule(None).await.1);
    for run in [w.acme_main(), w.acme_team()] {
        let (s, b) = run.call("/v1/ipc/list_tasks", json!({})).await;
        assert_eq!(s, 200, "{b}");
        let ids: Vec<&str> = b["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        // Control and attack at once: acme's `team` task is there, beta's `team` task is not.
        assert_eq!(ids, [acme_task.as_str()]);
    }
    let (_, b) = w.beta_team().call("/v1/ipc/list_tasks", json!({})).await;
    assert_eq!(b["tasks"][0]["id"], beta_task.as_str());
}

// --- send_message -----------------------------------------------------------------------------

#[tokio::test]
async fn send_message_to_another_tenants_chat_is_refused_and_logged() {
    let w = World::new().await;
    for run in [w.acme_main(), w.acme_team()] {
        let (s, b) = run.send("beta-team@g.us").await;
        assert_eq!(s, 403, "{b}");
        let (s, b) = run.send("beta-main@g.us").await;
        assert_eq!(s, 403, "{b}");
    }
    assert_eq!(w.logs.cross_tenant_warnings("acme", "beta"), 4);
    assert_eq!(w.outbox().await, Vec::<(String, String)>::new());
    // Controls: main to a chat of its tenant, the group to its own chat.
    let (s, b) = w.acme_main().send("acme-team@g.us").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = w.acme_team().send("acme-team@g.us").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.outbox().await,
        [
            ("acme".to_owned(), "acme-team@g.us".to_owned()),
            ("acme".to_owned(), "acme-team@g.us".to_owned())
        ]
    );
}

#[tokio::test]
async fn send_message_to_a_jid_both_tenants_have_stays_in_the_callers_tenant() {
    let w = World::new().await;
    let (s, b) = w.acme_team().send("both@g.us").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.outbox().await,
        [("acme".to_owned(), "both@g.us".to_owned())],
        "the reply is acme's, never beta's chat of the same jid"
    );
}

// --- schedule_task ----------------------------------------------------------------------------

#[tokio::test]
async fn schedule_task_for_another_tenants_chat_is_refused_and_logged() {
    let w = World::new().await;
    for run in [w.acme_main(), w.acme_team()] {
        let (s, b) = run.schedule(Some("beta-team@g.us")).await;
        assert_eq!(s, 403, "{b}");
    }
    assert_eq!(w.logs.cross_tenant_warnings("acme", "beta"), 2);
    assert_eq!(
        (w.task_count("acme").await, w.task_count("beta").await),
        (0, 0)
    );
    // Control: main schedules for a group of its own tenant.
    let (s, b) = w.acme_main().schedule(Some("acme-team@g.us")).await;
    assert_eq!(s, 200, "{b}");
    let task = w
        .store
        .task(&TaskId::new(&task_id(&b)).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.tenant.as_str(), task.group_folder.as_str()),
        ("acme", "team")
    );
    // The jid both tenants have: the task is acme's.
    let (s, b) = w.acme_main().schedule(Some("both@g.us")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(w.task_count("beta").await, 0);
    // An unknown chat is still just not found.
    let (s, b) = w.acme_main().schedule(Some("nobody@g.us")).await;
    assert_eq!(s, 404, "{b}");
}

// --- task verbs -------------------------------------------------------------------------------

#[tokio::test]
async fn task_verbs_on_another_tenants_task_look_like_a_missing_task() {
    let w = World::new().await;
    let beta_task = task_id(&w.beta_team().schedule(None).await.1);
    let missing = "task-1-aaaaaa";
    for run in [w.acme_main(), w.acme_team()] {
        for verb in ["pause", "resume", "cancel"] {
            let route = format!("/v1/ipc/{verb}_task");
            let (s, b) = run.call(&route, json!({"task_id": beta_task})).await;
            let (s_missing, b_missing) = run.call(&route, json!({"task_id": missing})).await;
            assert_eq!((s, s_missing), (404, 404), "{verb}: {b}");
            assert_eq!(
                b["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(&beta_task, "ID"),
                b_missing["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(missing, "ID"),
                "{verb}: the answer does not tell a foreign task from a missing one"
            );
        }
    }
    assert_eq!(w.logs.cross_tenant_warnings("acme", "beta"), 6);
    let t = w
        .store
        .task(&TaskId::new(&beta_task).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.status, TaskStatus::Active);
    // Control: acme's main pauses, resumes and cancels a task of acme's `team`.
    let acme_task = task_id(&w.acme_team().schedule(None).await.1);
    for verb in ["pause", "resume", "cancel"] {
        let (s, b) = w
            .acme_main()
            .call(
                &format!("/v1/ipc/{verb}_task"),
                json!({"task_id": acme_task}),
            )
            .await;
        assert_eq!(s, 200, "{verb}: {b}");
    }
    assert!(
        w.store
            .task(&TaskId::new(&acme_task).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}
