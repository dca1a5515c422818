//! Mounts filtered by tenant, through the real `cambot` binary and the real bwrap sandbox: two
//! tenants `acme` and `beta`, each with a group `g1` and its own mount root under one operator
//! allowlist. acme's sandbox sees acme's mount and nothing of beta's; `groups update` of acme's
//! group with a path under beta's root is refused naming the rule, while beta's own succeeds;
//! a root denied later is refused at the next run start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::process::Output;

use super::sandboxed::sandbox_tools;

struct Env {
    _dir: tempfile::TempDir,
    top: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (d, file, text) in [
            ("srv/acme/notes", "acme.txt", "acme's notes\n"),
            ("srv/beta/ledger", "beta.txt", "beta's ledger\n"),
        ] {
            std::fs::create_dir_all(top.join(d)).unwrap();
            std::fs::write(top.join(d).join(file), text).unwrap();
        }
        let allowlist = top.join("mount-allowlist.json");
        std::fs::write(
            &allowlist,
            format!(
                r#"{{"allowedRoots":[{{"path":"{}/srv","allowReadWrite":true}}],"blockedPatterns":[],"nonMainReadOnly":false}}"#,
                top.display()
            ),
        )
        .unwrap();
        let config = top.join("cambot.toml");
        std::fs::write(
            &config,
            format!(
                "[sandbox]\nbackend = \"bwrap\"\nallowlist_path = \"{}\"\n",
                allowlist.display()
            ),
        )
        .unwrap();
        Self {
            _dir: dir,
            top,
            config,
        }
    }

    fn path(&self, rel: &str) -> String {
        self.top.join(rel).to_string_lossy().into_owned()
    }

    fn cambot(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cambot"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.top.join("data"))
            .args(args)
            .env("CAMBOT_LOG", "warn")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cambot(args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.cambot(args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
fn each_tenants_sandbox_sees_only_its_own_mounts_and_a_foreign_path_is_refused_by_rule() {
    let Some(_) = sandbox_tools() else {
        return;
    };
    let env = Env::new();
    for t in ["acme", "beta"] {
        env.ok(&["tenants", "add", t]);
        env.ok(&[
            "groups",
            "register",
            "--tenant",
            t,
            "--jid",
            &format!("{t}-g1@g.us"),
            "--name",
            "g1",
            "--folder",
            "g1",
        ]);
    }
    let err = env.fails(&["tenants", "allow-mount", "ghost", &env.path("srv/acme")]);
    assert!(err.contains("unknown tenant ghost"), "{err}");
    let out = env.ok(&["tenants", "allow-mount", "acme", &env.path("srv/acme")]);
    assert!(out.contains("read-only"), "{out}");
    env.ok(&[
        "tenants",
        "allow-mount",
        "beta",
        &env.path("srv/beta"),
        "--rw",
    ]);
    // beta may not claim acme's directory for writing.
    let err = env.fails(&[
        "tenants",
        "allow-mount",
        "beta",
        &env.path("srv/acme/notes"),
        "--rw",
    ]);
    assert!(
        err.contains("a mount root of tenant acme") && err.contains("only when both are read-only"),
        "{err}"
    );

    // acme's group asks for a path under beta's root: refused, naming the rule.
    let err = env.fails(&[
        "groups",
        "update",
        "--tenant",
        "acme",
        "--jid",
        "acme-g1@g.us",
        "--add-mount",
        &env.path("srv/beta/ledger"),
    ]);
    assert!(
        err.contains("outside every mount root of tenant acme")
            && err.contains("must lie inside a mount root of its own tenant"),
        "{err}"
    );
    // The same-tenant controls succeed.
    env.ok(&[
        "groups",
        "update",
        "--tenant",
        "acme",
        "--jid",
        "acme-g1@g.us",
        "--add-mount",
        &env.path("srv/acme/notes"),
        "--timeout",
        "120",
    ]);
    env.ok(&[
        "groups",
        "update",
        "--tenant",
        "beta",
        "--jid",
        "beta-g1@g.us",
        "--add-mount",
        &format!("{}:ledger:rw", env.path("srv/beta/ledger")),
    ]);
    let list = env.ok(&["groups", "list"]);
    assert!(
        list.contains(&format!(
            "mount /workspace/extra/notes <- {} (ro)",
            env.path("srv/acme/notes")
        )) && list.contains(&format!(
            "mount /workspace/extra/ledger <- {} (rw)",
            env.path("srv/beta/ledger")
        )) && list.contains("timeout 120s"),
        "{list}"
    );

    // The must-show: acme's sandbox lists acme's mount only.
    let ls = env.ok(&[
        "sandbox",
        "run",
        "--tenant",
        "acme",
        "--group",
        "g1",
        "--",
        "ls",
        "/workspace/extra",
    ]);
    assert_eq!(ls, "notes\n");
    let seen = env.ok(&[
        "sandbox",
        "run",
        "--tenant",
        "acme",
        "--group",
        "g1",
        "--",
        "sh",
        "-c",
        "cat /workspace/extra/*/*; if touch /workspace/extra/notes/w 2>/dev/null; then echo WROTE; fi",
    ]);
    assert_eq!(seen, "acme's notes\n", "acme's root is read-only");
    let ls = env.ok(&[
        "sandbox",
        "run",
        "--tenant",
        "beta",
        "--group",
        "g1",
        "--",
        "ls",
        "/workspace/extra",
    ]);
    assert_eq!(ls, "ledger\n");

    // A root denied later: the next run start refuses the mount and says why.
    let out = env.ok(&["tenants", "deny-mount", "acme", &env.path("srv/acme")]);
    assert!(
        out.contains("group g1") && out.contains("now refused"),
        "{out}"
    );
    let run = env.cambot(&[
        "sandbox",
        "run",
        "--tenant",
        "acme",
        "--group",
        "g1",
        "--",
        "sh",
        "-c",
        "ls /workspace/extra 2>/dev/null; true",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}", show(&run));
    assert!(
        !String::from_utf8_lossy(&run.stdout).contains("notes"),
        "{}",
        show(&run)
    );
    assert!(
        stderr.contains("refused") && stderr.contains("outside every mount root of tenant acme"),
        "{stderr}"
    );
}

/// The daemon's run start (not only `cambot sandbox run`): an acme agent whose stored settings
/// name a mount under beta's root (written past the CLI, as if a root moved since) sees only
/// acme's own mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn an_agent_run_mounts_only_its_own_tenants_dirs() {
    use cambot_protocol::ContainerConfig;
    use cambot_protocol::TenantId;
    use cambot_protocol::message::AdditionalMount;
    use cambot_testkit::standin::Script;
    use serde_json::json;

    let env = Env::new();
    let allowlist = format!(
        "allowlist_path = \"{}\"",
        env.top.join("mount-allowlist.json").display()
    );
    let Some(t) = super::sandboxed::start_e2e_with(
        vec![
            Script::tool_use(
                "bash",
                json!({"command": "ls /workspace/extra > extra.txt"}),
            ),
            Script::text("listed"),
        ],
        None,
        &allowlist,
    )
    .await
    else {
        return;
    };
    let acme = TenantId::new("acme").unwrap();
    let beta = TenantId::new("beta").unwrap();
    // The legacy key serves the default tenant only.
    t.set_secret(&acme, "anthropic", "sk-ant-acme-mounts-0123")
        .await;
    t.channel
        .register(&beta, "fake:beta-g1", "g1", Some(false))
        .await
        .unwrap();
    let group = t
        .channel
        .register(&acme, "fake:acme-g1", "g1", Some(false))
        .await
        .unwrap();
    let store = t.daemon.router().store();
    store
        .set_mount_root(&acme, &env.path("srv/acme"), false)
        .await
        .unwrap();
    store
        .set_mount_root(&beta, &env.path("srv/beta"), true)
        .await
        .unwrap();
    let mount = |p: &str, name: &str| AdditionalMount {
        host_path: env.path(p),
        container_path: Some(name.to_owned()),
        readonly: Some(true),
    };
    assert!(
        store
            .set_container_config(
                &acme,
                &group.jid,
                Some(ContainerConfig {
                    additional_mounts: vec![
                        mount("srv/acme/notes", "notes"),
                        mount("srv/beta/ledger", "ledger"),
                    ],
                    ..Default::default()
                }),
            )
            .await
            .unwrap()
    );
    // The CLI writes from another process, which the daemon notices by its data version;
    // a write through the daemon's own handle is picked up by a refresh.
    t.daemon.router().refresh_groups().await.unwrap();
    t.channel
        .inject(&acme, "fake:acme-g1", "Alice", "list your extra dirs")
        .await
        .unwrap();
    let sent = t
        .channel
        .wait_sent(1, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(sent.len(), 1, "no reply");
    let dir = t
        .daemon
        .layout()
        .group_dir(&acme, &cambot_protocol::GroupFolder::new("g1").unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("extra.txt")).unwrap(),
        "notes\n"
    );
    t.daemon.shutdown().await;
}
