//! The cross-tenant attack suite, continued: acme's sandbox against beta's files and mounts, and
//! agent sessions per tenant for groups of the same folder name (the set-up is in
//! `cross_tenant.rs`).

use std::process::Command;

use cambot_testkit::standin::Script;
use cambot_testkit::standin::ToolCall;

use super::cross_tenant_world::WAIT;
use super::cross_tenant_world::World;
use super::cross_tenant_world::bash;
use super::cross_tenant_world::g1;
use super::cross_tenant_world::tid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn acme_sandbox_sees_none_of_betas_files_or_mounts() {
    let Some(w) = World::start().await else {
        return;
    };
    let l = &w.layout;
    let beta = tid("beta");
    let probe = |id: &str, path: &str| bash(id, &format!("cat '{path}' 2>&1; echo \"rc=$?\""));
    let up = "/workspace/group/../../../../../../..";
    let beta_group = l.group_dir(&beta, &g1()).join("secret.txt");
    let beta_session = l.sessions_dir(&beta, &g1()).join("secret.txt");
    let beta_upload = l.uploads_dir(&beta, &g1()).join("secret.txt");
    let beta_mount = w.top.join("srv/beta/ledger/beta.txt");
    let cases: Vec<(&str, String)> = vec![
        ("group-abs", beta_group.display().to_string()),
        ("group-dotdot", format!("{up}{}", beta_group.display())),
        (
            "group-rel",
            "/workspace/group/../../../beta/groups/g1/secret.txt".into(),
        ),
        ("session-abs", beta_session.display().to_string()),
        ("session-dotdot", format!("{up}{}", beta_session.display())),
        ("upload-abs", beta_upload.display().to_string()),
        ("upload-dotdot", format!("{up}{}", beta_upload.display())),
        ("db-abs", l.database().display().to_string()),
        ("db-dotdot", format!("{up}{}", l.database().display())),
        ("extra-beta", "/workspace/extra/ledger/beta.txt".into()),
        ("mount-abs", beta_mount.display().to_string()),
        (
            "mount-dotdot",
            format!("/workspace/extra/notes/../../../..{}", beta_mount.display()),
        ),
    ];
    let mut calls: Vec<ToolCall> = cases.iter().map(|(id, p)| probe(id, p)).collect();
    for (id, p) in [
        ("own-group", "/workspace/group/secret.txt"),
        ("own-session", "/workspace/session/secret.txt"),
        ("own-upload", "/workspace/uploads/secret.txt"),
        ("own-extra", "/workspace/extra/notes/acme.txt"),
    ] {
        calls.push(probe(id, p));
    }
    calls.push(bash("ls-extra", "ls /workspace/extra 2>&1"));
    let r = w.tools("acme", "g1", calls).await;
    let mut leaks = Vec::new();
    for (id, path) in &cases {
        let out = &r[*id];
        if out.contains("SECRET-beta")
            || out.contains("beta's ledger")
            || out.contains("rc=0")
            || out.contains("SQLite format")
        {
            leaks.push(format!("{id} ({path}): {out}"));
        }
    }
    for (id, want) in [
        ("own-group", "SECRET-acme-group"),
        ("own-session", "SECRET-acme-session"),
        ("own-upload", "SECRET-acme-upload"),
        ("own-extra", "acme's notes"),
    ] {
        assert!(
            r[id].contains(want) && r[id].contains("rc=0"),
            "control {id}: {}",
            r[id]
        );
    }
    let ls = &r["ls-extra"];
    assert!(ls.contains("notes") && !ls.contains("ledger"), "{ls}");
    // beta's own run does see its mount (the control for the mount case).
    let r = w
        .tools(
            "beta",
            "g1",
            vec![probe("beta-extra", "/workspace/extra/ledger/beta.txt")],
        )
        .await;
    assert!(
        r["beta-extra"].contains("beta's ledger"),
        "{}",
        r["beta-extra"]
    );
    w.shutdown().await;
    assert!(
        leaks.is_empty(),
        "acme's sandbox reached beta:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn the_agent_session_of_acme_g1_is_never_resumed_for_beta_g1() {
    let Some(w) = World::start().await else {
        return;
    };
    w.standin.push(Script::text("acme noted"));
    w.fake
        .inject(
            &tid("acme"),
            "fake:acme-g1",
            "Alice",
            "@Andy remember ACME-PELICAN",
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, w.standin.wait_for_requests(1))
        .await
        .unwrap();
    w.wait_idle().await;
    let acme_session = w.store().session(&tid("acme"), &g1()).await.unwrap();
    assert!(acme_session.is_some(), "acme's run stored no session");
    assert!(
        w.store()
            .session(&tid("beta"), &g1())
            .await
            .unwrap()
            .is_none()
    );

    // beta's g1 (same folder name) starts fresh: no earlier turns reach the model.
    w.standin.push(Script::text("beta answer"));
    w.fake
        .inject(
            &tid("beta"),
            "fake:beta-g1",
            "Bob",
            "@Andy what was the word?",
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, w.standin.wait_for_requests(2))
        .await
        .unwrap();
    w.wait_idle().await;
    let beta_first = w.standin.request(1).unwrap();
    let text = beta_first.body.to_string();
    assert!(
        !text.contains("ACME-PELICAN") && !text.contains("acme noted"),
        "{text}"
    );
    assert_eq!(
        beta_first.messages().len(),
        1,
        "beta's run resumed a conversation"
    );
    let beta_session = w.store().session(&tid("beta"), &g1()).await.unwrap();
    assert!(beta_session.is_some());
    assert_ne!(
        acme_session, beta_session,
        "one session id for both tenants"
    );
    // Nothing of acme's transcript is in beta's session dir.
    let grep = Command::new("grep")
        .args(["-rl", "ACME-PELICAN"])
        .arg(w.layout.sessions_dir(&tid("beta"), &g1()))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // The control: acme's next run resumes acme's own session and sees its earlier turn.
    w.standin.push(Script::text("acme again"));
    w.fake
        .inject(&tid("acme"), "fake:acme-g1", "Alice", "@Andy and the word?")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, w.standin.wait_for_requests(3))
        .await
        .unwrap();
    let acme_second = w.standin.request(2).unwrap().body.to_string();
    assert!(acme_second.contains("ACME-PELICAN"), "{acme_second}");
    w.wait_idle().await;
    w.shutdown().await;
}
