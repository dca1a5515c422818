//! Session isolation over HTTP and WebSocket: two users in one tenant, the same user name in a
//! second tenant, and two sessions of one user.

use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use serde_json::Value;
use serde_json::json;

use super::support::WebDaemon;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

/// Every way to touch `session` as `token`: all must be 404 with the same body as a session
/// that does not exist at all.
async fn assert_no_access(d: &WebDaemon, token: &str, session: &str, who: &str) {
    let missing = "0123456789abcdef0123456789abcdef";
    for id in [session, missing] {
        let get = d.get(token, &format!("/api/sessions/{id}")).await;
        assert_eq!(get.status(), 404, "{who}: get {id}");
        let body: Value = get.json().await.unwrap();
        assert_eq!(body, json!({"error": "not_found", "message": "not found"}));
        let history = d.get(token, &format!("/api/sessions/{id}/history")).await;
        assert_eq!(history.status(), 404, "{who}: history");
        let send = d
            .post(
                token,
                &format!("/api/sessions/{id}/messages"),
                json!({"text": "tok-intruder"}),
            )
            .await;
        assert_eq!(send.status(), 404, "{who}: send");
        let upload = d
            .http
            .post(format!("{}/api/sessions/{id}/uploads?name=x.txt", d.base))
            .bearer_auth(token)
            .body("intruder")
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 404, "{who}: upload");
    }
    let list: Value = d.get(token, "/api/sessions").await.json().await.unwrap();
    assert!(
        list.as_array().unwrap().iter().all(|s| s["id"] != session),
        "{who}: listed {list}"
    );
    // Over the WebSocket: subscribe (resume) and send are refused the same way.
    let mut ws = d.ws(token).await;
    ws.send(json!({"type": "subscribe", "session": session, "after": 0}))
        .await;
    let v = ws.next_of("subscribed").await;
    assert_eq!(v["code"], "not_found", "{who}: ws subscribe {v}");
    ws.send(json!({"type": "send", "session": session, "text": "tok-intruder", "client_id": "x1"}))
        .await;
    let v = ws.next_of("accepted").await;
    assert_eq!(v["code"], "not_found", "{who}: ws send {v}");
}

#[tokio::test]
async fn users_and_tenants_cannot_reach_each_others_sessions() {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("default", "alice").await;
    d.add_user("default", "bob").await;
    d.add_user("acme", "alice").await;
    let (alice, _) = d.login("default", "alice").await;
    let (bob, _) = d.login("default", "bob").await;
    let (acme_alice, _) = d.login("acme", "alice").await;

    let a1 = d.new_session(&alice).await;
    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "subscribe", "session": a1})).await;
    assert_eq!(ws.next_of("subscribed").await["resync"], false);
    ws.send(json!({"type": "send", "session": a1, "text": "tok-a1", "client_id": "c1"}))
        .await;
    assert_eq!(ws.next_of("accepted").await["client_id"], "c1");
    let reply = ws.next_of("reply").await;
    assert!(
        reply["text"].as_str().unwrap().ends_with("got=tok-a1"),
        "{reply}"
    );

    assert_no_access(&d, &bob, &a1, "bob (same tenant)").await;
    assert_no_access(&d, &acme_alice, &a1, "alice of tenant acme").await;

    // Nothing the intruders tried reached the session or its runs.
    let h = d.history(&alice, &a1).await;
    let texts: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap())
        .collect();
    assert!(texts.iter().all(|t| !t.contains("intruder")), "{texts:?}");
    let layout = DataLayout::new(d.daemon.layout().root());
    let session = d
        .store()
        .web_session(&TenantId::default_tenant(), "alice", &a1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !layout
            .uploads_dir(&TenantId::default_tenant(), &session.folder)
            .exists()
    );

    // The session is its own group: chat id from (tenant, user, session), non-main, no trigger.
    let group = d
        .daemon
        .router()
        .group_for(&TenantId::default_tenant(), &session.chat_jid)
        .unwrap();
    assert_eq!(group.jid.as_str(), format!("web:default:alice:{a1}"));
    assert_eq!(
        group.folder,
        cambot_channels::web::session_folder(&TenantId::default_tenant(), "alice", &a1).unwrap()
    );
    assert!(!group.is_main());
    assert_eq!(group.requires_trigger, Some(false));
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn two_sessions_of_one_user_share_no_files_transcript_or_messages() {
    let runner = tagging_runner();
    let d = start(runner.clone(), web_config()).await;
    d.add_user("default", "alice").await;
    let (alice, _) = d.login("default", "alice").await;
    let s1 = d.new_session(&alice).await;
    let s2 = d.new_session(&alice).await;
    let mut w1 = d.ws(&alice).await;
    let mut w2 = d.ws(&alice).await;
    w1.send(json!({"type": "subscribe", "session": s1})).await;
    w1.next_of("subscribed").await;
    w2.send(json!({"type": "subscribe", "session": s2})).await;
    w2.next_of("subscribed").await;
    for i in 0..5 {
        w1.send(json!({"type": "send", "session": s1, "text": format!("tok-s1-{i}")}))
            .await;
        w2.send(json!({"type": "send", "session": s2, "text": format!("tok-s2-{i}")}))
            .await;
    }
    // Each socket sees only its own session's stream.
    for (ws, own, other, mine) in [
        (&mut w1, &s1, "tok-s2", "tok-s1"),
        (&mut w2, &s2, "tok-s1", "tok-s2"),
    ] {
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let f = ws.recv().await.unwrap();
            if f["type"] == "delta" || f["type"] == "reply" {
                assert_eq!(&f["session"], own);
                let t = f["text"].as_str().unwrap();
                assert!(!t.contains(other), "{t}");
                if f["type"] == "reply" {
                    seen.extend(
                        t.split("got=")
                            .nth(1)
                            .unwrap()
                            .split(',')
                            .map(str::to_owned),
                    );
                }
            }
        }
        assert!(seen.iter().all(|t| t.starts_with(mine)), "{seen:?}");
    }
    // Uploads land in the session's own folder.
    let up = d
        .http
        .post(format!(
            "{}/api/sessions/{s1}/uploads?name=../../notes.txt",
            d.base
        ))
        .bearer_auth(&alice)
        .body("private to s1")
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let info: Value = up.json().await.unwrap();
    assert_eq!(info["name"], "notes.txt");
    let tenant = TenantId::default_tenant();
    let f1 = cambot_channels::web::session_folder(&tenant, "alice", &s1).unwrap();
    let f2 = cambot_channels::web::session_folder(&tenant, "alice", &s2).unwrap();
    assert_ne!(f1, f2);
    let layout = d.daemon.layout().clone();
    let id = info["id"].as_str().unwrap();
    assert_eq!(info["type"], "text/plain");
    assert_eq!(info["path"], format!("/workspace/uploads/{id}/file.txt"));
    assert_eq!(
        std::fs::read_to_string(layout.uploads_dir(&tenant, &f1).join(id).join("file.txt"))
            .unwrap(),
        "private to s1"
    );
    assert!(!layout.uploads_dir(&tenant, &f2).exists());
    assert!(layout.group_dir(&tenant, &f1).is_dir());
    assert!(layout.group_dir(&tenant, &f2).is_dir());

    // Every run ran in one session's folder and saw only that session's messages; the
    // transcripts (agent sessions) are keyed per folder.
    for run in runner.started() {
        let folder = run.request.group.folder.clone();
        let prefix = if folder == f1 {
            "tok-s1"
        } else {
            assert_eq!(folder, f2);
            "tok-s2"
        };
        assert!(!run.request.group.is_main());
        for p in run.prompts.lock().unwrap().iter() {
            for t in super::support::tokens_in(p) {
                assert!(t.starts_with(prefix), "run in {folder} saw {t}");
            }
        }
    }
    let r1 = d.wait_replies(&alice, &s1, 1).await;
    let r2 = d.wait_replies(&alice, &s2, 1).await;
    assert!(
        r1.iter()
            .all(|r| r.contains(&format!("folder={f1}")) && !r.contains("tok-s2"))
    );
    assert!(
        r2.iter()
            .all(|r| r.contains(&format!("folder={f2}")) && !r.contains("tok-s1"))
    );
    assert_ne!(
        d.store().session(&tenant, &f1).await.unwrap(),
        d.store().session(&tenant, &f2).await.unwrap()
    );
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn an_idle_session_expires_into_read_only_history() {
    let mut config = web_config();
    config.session_ttl_secs = 1;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (alice, _) = d.login("default", "alice").await;
    let s = d.new_session(&alice).await;
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{s}/messages"),
            json!({"text": "tok-early"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    d.wait_replies(&alice, &s, 1).await;
    // Within the TTL the session resumes: a reconnecting socket may subscribe and send.
    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "subscribe", "session": s})).await;
    assert_eq!(ws.next_of("subscribed").await["expired"], false);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{s}/messages"),
            json!({"text": "tok-late"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let h = d.history(&alice, &s).await;
    assert_eq!(h["session"]["expired"], true);
    assert_eq!(h["items"].as_array().unwrap().len(), 2);
    let list: Value = d.get(&alice, "/api/sessions").await.json().await.unwrap();
    assert_eq!(list[0]["expired"], true);
    ws.send(json!({"type": "send", "session": s, "text": "tok-late"}))
        .await;
    assert_eq!(ws.next_of("accepted").await["code"], "expired");
    // A fresh session starts; the old one stays listed, read-only.
    let fresh = d.new_session(&alice).await;
    assert_ne!(fresh, s);
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{fresh}/messages"),
            json!({"text": "tok-new"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let list: Value = d.get(&alice, "/api/sessions").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    d.daemon_shutdown().await;
}
