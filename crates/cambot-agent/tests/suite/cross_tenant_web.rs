//! The cross-tenant attack suite, continued: the web listener (HTTP and WebSocket) and the CLI
//! against the same running daemon as `cross_tenant.rs` (two tenants, `alice` in each).

use std::time::Duration;

use futures::SinkExt;
use futures::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::cross_tenant_world::PASSWORD;
use super::cross_tenant_world::World;
use super::cross_tenant_world::bash;
use super::cross_tenant_world::call;
use super::cross_tenant_world::tid;
use super::cross_tenant_world::tool_results;
use cambot_testkit::standin::Script;

impl World {
    async fn login_status(&self, tenant: &str) -> (u16, Option<String>) {
        let res = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"tenant": tenant, "user": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        (status, body["access_token"].as_str().map(str::to_owned))
    }

    async fn login(&self, tenant: &str) -> String {
        let (status, token) = self.login_status(tenant).await;
        assert_eq!(status, 200, "login {tenant}/alice");
        token.unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let req = self.http.post(url).bearer_auth(token).json(&body);
        req.send().await.unwrap()
    }

    async fn upload(
        &self,
        token: &str,
        session: &str,
        name: &str,
        body: &str,
    ) -> reqwest::Response {
        let url = format!("{}/api/sessions/{session}/uploads?name={name}", self.base);
        let req = self.http.post(url).bearer_auth(token).body(body.to_owned());
        req.send().await.unwrap()
    }

    async fn new_session(&self, token: &str) -> String {
        let res = self.post(token, "/api/sessions", json!({})).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    async fn ws(&self, token: &str) -> Ws {
        let url = format!("{}/ws", self.base.replacen("http://", "ws://", 1));
        let (inner, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut ws = Ws { inner };
        ws.send(json!({"type": "auth", "token": token})).await;
        assert_eq!(ws.next_of("ready").await["type"], "ready");
        ws
    }
}

struct Ws {
    inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    async fn send(&mut self, v: Value) {
        let text = Message::Text(v.to_string().into());
        self.inner.send(text).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), self.inner.next())
                .await
                .expect("no frame within 60 s")
                .expect("socket closed")
                .unwrap();
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    /// Frames until one of type `ty` (or an error frame), all of them returned.
    async fn until(&mut self, ty: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.recv().await;
            let done = v["type"] == ty || v["type"] == "error";
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    async fn next_of(&mut self, ty: &str) -> Value {
        self.until(ty).await.pop().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn acme_web_user_cannot_reach_betas_sessions_uploads_or_pushes() {
    let Some(w) = World::start().await else {
        return;
    };
    let a = w.login("acme").await;
    let b = w.login("beta").await;
    let sa = w.new_session(&a).await;
    let sb = w.new_session(&b).await;

    // HTTP: list, get, history, post, upload on beta's session: 404; the same on acme's own.
    let list: Value = w.get(&a, "/api/sessions").await.json().await.unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        ids.contains(&sa.as_str()) && !ids.contains(&sb.as_str()),
        "{list}"
    );
    for path in ["", "/history"] {
        let attack = w.get(&a, &format!("/api/sessions/{sb}{path}")).await;
        assert_eq!(attack.status(), 404, "GET beta's session{path}");
        let own = w.get(&a, &format!("/api/sessions/{sa}{path}")).await;
        assert_eq!(own.status(), 200, "GET own session{path}");
    }
    let attack = w
        .post(
            &a,
            &format!("/api/sessions/{sb}/messages"),
            json!({"text": "intruder"}),
        )
        .await;
    assert_eq!(attack.status(), 404, "POST to beta's session");
    let attack = w.upload(&a, &sb, "evil.txt", "ACME-EVIL").await;
    assert_eq!(attack.status(), 404, "upload to beta's session");
    let own = w.upload(&a, &sa, "report.txt", "ACME-UPLOAD-CONTENT").await;
    assert_eq!(own.status(), 201);
    let path = own.json::<Value>().await.unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    // The file is in acme's session folder only; beta's uploads hold nothing of acme's.
    let store = w.store();
    let row_a = store
        .web_session(&tid("acme"), "alice", &sa)
        .await
        .unwrap()
        .unwrap();
    let row_b = store
        .web_session(&tid("beta"), "alice", &sb)
        .await
        .unwrap()
        .unwrap();
    let host = w.layout.uploads_dir(&tid("acme"), &row_a.folder);
    let rel = path.strip_prefix("/workspace/uploads/").unwrap();
    assert_eq!(
        std::fs::read_to_string(host.join(rel)).unwrap(),
        "ACME-UPLOAD-CONTENT"
    );
    let beta_uploads = w.layout.tenant_dir(&tid("beta")).join("uploads");
    let grep = std::process::Command::new("grep")
        .args(["-rl", "ACME-"])
        .arg(&beta_uploads)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // WebSocket: acme's socket cannot subscribe or send to beta's session; its own works.
    let mut wa = w.ws(&a).await;
    wa.send(json!({"type": "subscribe", "session": sb, "after": 0}))
        .await;
    assert_eq!(
        wa.next_of("subscribed").await["code"],
        "not_found",
        "ws subscribe beta's"
    );
    wa.send(json!({"type": "send", "session": sb, "text": "intruder", "client_id": "x1"}))
        .await;
    assert_eq!(
        wa.next_of("accepted").await["code"],
        "not_found",
        "ws send to beta's"
    );
    wa.send(json!({"type": "subscribe", "session": sa, "after": 0}))
        .await;
    assert_eq!(wa.next_of("subscribed").await["type"], "subscribed");
    let mut wb = w.ws(&b).await;
    wb.send(json!({"type": "subscribe", "session": sb, "after": 0}))
        .await;
    assert_eq!(wb.next_of("subscribed").await["type"], "subscribed");

    // acme's run sees its upload; beta's run of its session does not.
    let before = w.standin.request_count();
    w.standin.push(Script::tool_calls([bash(
        "a-up",
        &format!("cat '{path}'; echo rc=$?"),
    )]));
    w.standin.push(Script::text("acme web reply"));
    wa.send(json!({"type": "send", "session": sa, "text": "read it", "client_id": "c1"}))
        .await;
    let reply = wa.next_of("reply").await;
    assert_eq!(reply["text"], "acme web reply", "{reply}");
    let r = tool_results(&w.standin.request(before + 1).unwrap().body);
    assert!(
        r["a-up"].contains("ACME-UPLOAD-CONTENT") && r["a-up"].contains("rc=0"),
        "{r:?}"
    );
    w.wait_idle().await;

    let before = w.standin.request_count();
    let acme_host = host.display().to_string();
    w.standin.push(Script::tool_calls([
        bash("b-ls", "ls -R /workspace/uploads 2>&1; echo rc=$?"),
        bash(
            "b-abs",
            &format!("cat '{}' 2>&1; echo rc=$?", host.join(rel).display()),
        ),
        bash(
            "b-dotdot",
            &format!("ls /workspace/group/../../../../../..{acme_host} 2>&1; echo rc=$?"),
        ),
    ]));
    w.standin.push(Script::text("beta web reply"));
    wb.send(json!({"type": "send", "session": sb, "text": "anything there?", "client_id": "c2"}))
        .await;
    // beta's socket carries beta's run only: acme's reply (pushed before) never arrived here.
    let frames = wb.until("reply").await;
    let all = serde_json::to_string(&frames).unwrap();
    assert!(
        !all.contains("acme web reply") && !all.contains("ACME-"),
        "{all}"
    );
    assert_eq!(frames.last().unwrap()["text"], "beta web reply", "{all}");
    let r = tool_results(&w.standin.request(before + 1).unwrap().body);
    for id in ["b-ls", "b-abs", "b-dotdot"] {
        assert!(!r[id].contains("ACME-UPLOAD-CONTENT"), "{id}: {}", r[id]);
    }
    assert!(
        !r["b-abs"].contains("rc=0") && !r["b-dotdot"].contains("rc=0"),
        "{r:?}"
    );
    assert_ne!(row_a.folder, row_b.folder);
    w.wait_idle().await;
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn cli_verbs_with_a_tenant_touch_only_that_tenant() {
    let Some(w) = World::start().await else {
        return;
    };
    let cli = w.cli();
    // groups update: a path under beta's root is refused by rule; acme's own root is fine.
    std::fs::create_dir_all(w.top.join("srv/acme/docs")).unwrap();
    let err = cli.fails(&[
        "groups",
        "update",
        "--tenant",
        "acme",
        "--jid",
        "fake:acme-g1",
        "--add-mount",
        &cli.path("srv/beta/ledger"),
    ]);
    assert!(
        err.contains("must lie inside a mount root of its own tenant"),
        "{err}"
    );
    cli.ok(&[
        "groups",
        "update",
        "--tenant",
        "acme",
        "--jid",
        "fake:acme-g1",
        "--add-mount",
        &cli.path("srv/acme/docs"),
    ]);

    // groups list --tenant acme: acme's chats only.
    let list = cli.ok(&["groups", "list", "--tenant", "acme"]);
    assert!(
        list.contains("fake:acme-g1") && !list.contains("fake:beta"),
        "{list}"
    );
    let list = cli.ok(&["groups", "list", "--tenant", "beta"]);
    assert!(
        list.contains("fake:beta-g1") && !list.contains("fake:acme"),
        "{list}"
    );

    // tasks list --tenant acme: one task in each tenant's g1, only acme's listed.
    let sched = |id: &str| {
        call(
            id,
            "schedule_task",
            json!({"prompt": format!("PROMPT-{id}"), "schedule_type": "interval", "schedule_value": "3600000"}),
        )
    };
    for t in ["acme", "beta"] {
        let r = w.tools(t, "g1", vec![sched(t)]).await;
        assert!(r[t].contains("scheduled task"), "{r:?}");
    }
    let tasks = cli.ok(&["tasks", "list", "--tenant", "acme"]);
    assert!(
        tasks.contains("PROMPT-acme") && !tasks.contains("PROMPT-beta"),
        "{tasks}"
    );
    let tasks = cli.ok(&["tasks", "list", "--tenant", "acme", "--group", "g1"]);
    assert!(
        tasks.contains("PROMPT-acme") && !tasks.contains("PROMPT-beta"),
        "{tasks}"
    );

    // users disable alice --tenant acme: acme's alice is locked out of the real web
    // listener, beta's alice (same name) is not; enable restores acme's.
    cli.ok(&["users", "disable", "alice", "--tenant", "acme"]);
    let (status, _) = w.login_status("acme").await;
    assert_ne!(status, 200, "acme's disabled alice signed in");
    let (status, _) = w.login_status("beta").await;
    assert_eq!(status, 200, "beta's alice was disabled along with acme's");
    let users = cli.ok(&["users", "list", "--tenant", "beta"]);
    assert!(
        users.contains("alice") && !users.contains("disabled"),
        "{users}"
    );
    cli.ok(&["users", "enable", "alice", "--tenant", "acme"]);
    assert_eq!(w.login_status("acme").await.0, 200);
    w.shutdown().await;
}
