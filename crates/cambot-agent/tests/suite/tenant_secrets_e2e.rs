//! Per-tenant secrets end to end through the real `cambot` binary and the real bwrap sandbox:
//! `cambot secrets set` gives two tenants different keys for the same provider entry; each
//! tenant's run (`cambot chat --tenant T`) reaches the stand-in upstream with its own key, and
//! its fetch to an opted-in target carries its own fetch credential (the other tenant's does
//! not); a tenant without the secret gets the clear reply, no sandbox and no upstream request; a
//! missing or wrong master key stops the daemon naming where it looked; and after it all, no
//! secret value is found in the data dir, the daemon's logs or the key's directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use base64::Engine;
use cambot_testkit::http_target::Answer;
use cambot_testkit::http_target::HttpTarget;
use cambot_testkit::standin::RecordedRequest;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::ToolCall;
use serde_json::json;

use super::sandboxed::sandbox_tools;
use super::vault_support::VaultDirs;
use super::vault_support::files_containing;
use super::vault_support::ok;

const ACME_KEY: &str = "sk-ant-acme-e2e-5c1f9a0b7d3e";
const GLOBEX_KEY: &str = "sk-ant-globex-e2e-8e2d4b6a1c0f";
const ACME_FETCH_TOKEN: &str = "acme-fetch-token-e2e-3b9c7d1a";

/// One `cambot chat --tenant T` session: `message` on stdin, then end of input. Logs at debug.
async fn chat(v: &VaultDirs, config: &Path, tenant: &str, message: &str) -> Output {
    let mut cmd = tokio::process::Command::from(v.command(
        Some(&v.key),
        &[
            "--config",
            config.to_str().unwrap(),
            "chat",
            "--tenant",
            tenant,
        ],
    ));
    cmd.env("CAMBOT_LOG", "debug")
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{message}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn asked(r: &RecordedRequest, word: &str) -> bool {
    r.body.to_string().contains(word)
}

/// Whether any header value of the request contains `value`.
fn carries(r: &RecordedRequest, value: &str) -> bool {
    r.headers.values().any(|v| {
        v.as_bytes()
            .windows(value.len())
            .any(|w| w == value.as_bytes())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn each_tenant_uses_its_own_secrets_and_a_missing_one_is_answered_without_a_run() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let target = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"target body"))
        .await
        .unwrap();
    let port = target.port();
    let url = format!("http://127.0.0.1:{port}/data");
    let fetch_then = |reply: &str| {
        [
            Script::tool_calls([ToolCall::new("fetch", json!({ "url": url }))]),
            Script::text(reply),
        ]
    };
    let standin = Standin::anthropic()
        .fallback(Script::text("unexpected extra request"))
        .start_tcp()
        .await
        .unwrap();

    let v = VaultDirs::new();
    let root = v.data.parent().unwrap().to_owned();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = root.join("cambot.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [model]
            fetch_allow_hosts = ["http://127.0.0.1:{port}"]
            fetch_timeout_secs = 10
            [providers.claude]
            dialect = "anthropic"
            base_url = "{}"
            model = "claude-e2e"
            api_key = "secret:anthropic"
            [[tenants.acme.fetch_credentials]]
            host = "http://127.0.0.1:{port}"
            header = "authorization"
            value = "Bearer secret:target-token"
            [sandbox]
            backend = "bwrap"
            runner_path = "{}"
            init_path = "{}"
            timeout_secs = 120
            idle_timeout_secs = 60
            [router]
            idle_timeout_ms = 300
            "#,
            standin.root_url(),
            runner_bin.display(),
            init_bin.display(),
        ),
    )
    .unwrap();
    let mut logs: Vec<String> = Vec::new();
    let mut cli = |args: &[&str], stdin: &str| {
        let out = v.run(args, stdin);
        logs.push(format!("{}\n{}", out.stdout, out.stderr));
        ok(out);
    };
    for t in ["acme", "globex", "initech"] {
        cli(&["tenants", "add", t], "");
    }
    cli(
        &["secrets", "set", "--tenant", "acme", "anthropic"],
        ACME_KEY,
    );
    cli(
        &["secrets", "set", "--tenant", "acme", "target-token"],
        ACME_FETCH_TOKEN,
    );
    cli(
        &["secrets", "set", "--tenant", "globex", "anthropic"],
        &format!("{GLOBEX_KEY}\n"),
    );

    // (a, d) Each tenant's run: its model requests carry its own key; acme's fetch carries
    // acme's credential, globex's fetch to the same target none.
    for (tenant, word) in [("acme", "ACMEWORD"), ("globex", "GLOBEXWORD")] {
        for script in fetch_then(&format!("done for {tenant}")) {
            standin.push(script);
        }
        let out = chat(&v, &config, tenant, word).await;
        let (stdout, stderr) = text(&out);
        logs.push(format!("{stdout}\n{stderr}"));
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("done for {tenant}")),
            "{stdout}\n{stderr}"
        );
        // The debug log shows the sandbox: its absence below means something.
        assert!(stderr.contains("bwrap sandbox started"), "{stderr}");
    }
    let requests = standin.requests();
    assert_eq!(requests.len(), 4, "two model requests per run");
    let (acme_reqs, globex_reqs): (Vec<_>, Vec<_>) =
        requests.iter().partition(|r| asked(r, "ACMEWORD"));
    assert_eq!((acme_reqs.len(), globex_reqs.len()), (2, 2));
    assert!(globex_reqs.iter().all(|r| asked(r, "GLOBEXWORD")));
    for r in &acme_reqs {
        assert_eq!(r.header("x-api-key"), Some(ACME_KEY));
        assert!(!carries(r, GLOBEX_KEY));
    }
    for r in &globex_reqs {
        assert_eq!(r.header("x-api-key"), Some(GLOBEX_KEY));
        assert!(!carries(r, ACME_KEY));
    }
    let heads = target.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let bearer = format!("authorization: Bearer {ACME_FETCH_TOKEN}");
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains(&bearer.to_ascii_lowercase()),
        "acme's fetch: {}",
        heads[0]
    );
    assert!(
        !heads[1].to_ascii_lowercase().contains("authorization"),
        "globex's fetch: {}",
        heads[1]
    );

    // (b) initech has no `anthropic` secret: the clear reply, no sandbox, no upstream request.
    let before = standin.request_count();
    let out = chat(&v, &config, "initech", "INITECHWORD").await;
    let (stdout, stderr) = text(&out);
    logs.push(format!("{stdout}\n{stderr}"));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tenant initech has no secret 'anthropic'"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("set it with: cambot secrets set --tenant initech anthropic"),
        "{stdout}"
    );
    assert_eq!(standin.request_count(), before);
    assert!(!stderr.contains("bwrap sandbox started"), "{stderr}");
    assert!(!stderr.contains("run started"), "{stderr}");
    // Answered, not retried: a second session has nothing pending for the old message.
    let out = chat(&v, &config, "initech", "AGAINWORD").await;
    let (stdout, stderr) = text(&out);
    logs.push(format!("{stdout}\n{stderr}"));
    assert_eq!(
        stdout.matches("has no secret 'anthropic'").count(),
        1,
        "{stdout}"
    );
    assert_eq!(standin.request_count(), before);

    // A vault with data: no key file, or the wrong one, stops the daemon naming the path.
    let elsewhere = root.join("missing/master.key");
    let out = v
        .command(
            Some(&elsewhere),
            &[
                "--config",
                config.to_str().unwrap(),
                "chat",
                "--tenant",
                "acme",
            ],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    logs.push(format!("{stdout}\n{stderr}"));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no master key was found")
            && stderr.contains(&*elsewhere.to_string_lossy()),
        "{stderr}"
    );
    let wrong = root.join("wrong.key");
    std::fs::write(&wrong, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = v
        .command(
            Some(&wrong),
            &[
                "--config",
                config.to_str().unwrap(),
                "chat",
                "--tenant",
                "acme",
            ],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    logs.push(format!("{stdout}\n{stderr}"));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("does not open this vault") && stderr.contains(&*wrong.to_string_lossy()),
        "{stderr}"
    );
    assert_eq!(standin.request_count(), before);

    // (c) No secret value anywhere at rest or in the logs: raw bytes everywhere, base64 too.
    let logs = logs.join("\n");
    let key_dir = v.key.parent().unwrap();
    for value in [ACME_KEY, GLOBEX_KEY, ACME_FETCH_TOKEN] {
        let found = files_containing(&v.data, value.as_bytes());
        assert!(found.is_empty(), "{value} found in {found:?}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let found = files_containing(&v.data, b64.as_bytes());
        assert!(found.is_empty(), "{value} (base64) found in {found:?}");
        assert!(!logs.contains(value), "{value} found in the daemon's logs");
        let found: Vec<_> = files_containing(key_dir, value.as_bytes())
            .into_iter()
            .filter(|p| p != &v.key)
            .collect();
        assert!(found.is_empty(), "{value} found in {found:?}");
    }
    // The search can fail: the logs did record the runs and the missing secret's name.
    assert!(logs.contains("run started") && logs.contains("the tenant lacks its provider key"));
}
