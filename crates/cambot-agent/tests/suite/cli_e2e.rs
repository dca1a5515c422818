//! Issue 4's acceptance path through the real binary: `cambot chat` with the terminal channel,
//! the real bwrap sandbox and the real runner; the stand-in asks for a `bash` call that writes a
//! file; the file appears in the group folder only; the CLI prints the stand-in's final text;
//! the stand-in saw the key while nothing inside the sandbox did.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use serde_json::json;

use super::sandboxed::sandbox_tools;

const KEY: &str = "sk-ant-cli-e2e-7f3a9c0d1e2b";

/// Looks for the key in the sandbox's view: every process's environment, and stdin of the
/// runner is what /proc/<pid>/fd/0 is (a pipe, unreadable after the fact, so the start line's
/// fields are checked through the transcript the runner wrote).
const PROBE: &str = r#"
echo created > proof.txt
cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' > environ.txt
ls /workspace > view.txt
echo done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn cambot_chat_answers_through_the_sandboxed_runner_and_the_key_stays_outside() {
    let Some(_) = sandbox_tools() else {
        return;
    };
    let standin = Standin::anthropic()
        .reply(Script::tool_use("bash", json!({ "command": PROBE })))
        .reply(Script::text("The file is written."))
        .start_tcp()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("chat")
        .arg("--data-dir")
        .arg(&data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TZ", "UTC")
        .env("CAMBOT_LOG", "warn")
        .env("CAMBOT_MASTER_KEY_FILE", master_key(&data))
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", standin.root_url())
        .env("ANTHROPIC_MODEL", "claude-e2e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"please write the proof file\n")
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("Andy: The file is written."),
        "stdout: {stdout}\nstderr: {stderr}"
    );

    // The stand-in saw the key on every model request.
    let requests = standin.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("x-api-key") == Some(KEY)));

    // The file is in the main group's folder and nowhere else under the data dir.
    let group = data.join("tenants/default/groups/main");
    assert_eq!(
        std::fs::read_to_string(group.join("proof.txt")).unwrap(),
        "created\n"
    );
    let mut found = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                if p.file_name().is_some_and(|n| n == "proof.txt") {
                    found.push(p.clone());
                }
                // No file anywhere in the data dir (transcripts, the agent's files, the
                // database) holds the key.
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                    "the key is in {}",
                    p.display()
                );
            }
        }
    }
    assert_eq!(found, vec![group.join("proof.txt")]);
    let environ = std::fs::read_to_string(group.join("environ.txt")).unwrap();
    assert!(
        !environ.contains(KEY) && !environ.contains("ANTHROPIC"),
        "{environ}"
    );
    assert!(!environ.is_empty(), "the probe saw no environment at all");
    let view = std::fs::read_to_string(group.join("view.txt")).unwrap();
    assert!(view.contains("group"), "{view}");
}

/// The test's own master key file, next to the data dir (never `/etc/cambot`).
fn master_key(data: &std::path::Path) -> std::path::PathBuf {
    data.parent().unwrap().join("keys/master.key")
}

/// `cambot secrets set --tenant T NAME` with the test's master key.
fn set_secret(data: &std::path::Path, tenant: &str, name: &str, value: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"))
        .args(["secrets", "set", "--tenant", tenant, name, "--data-dir"])
        .arg(data)
        .env_remove("CAMBOT_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("CAMBOT_MASTER_KEY_FILE", master_key(data))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cambot chat` through the real binary with the stand-in as the upstream.
fn chat(data: &std::path::Path, args: &[&str], base_url: &str, line: &str) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("chat")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TZ", "UTC")
        .env("CAMBOT_LOG", "warn")
        .env("CAMBOT_MASTER_KEY_FILE", master_key(data))
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_MODEL", "claude-e2e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn cambot_chat_with_a_tenant_talks_as_that_tenants_terminal_group() {
    let Some(_) = sandbox_tools() else {
        return;
    };
    let standin = Standin::anthropic()
        .reply(Script::text("hello from acme's terminal"))
        .reply(Script::text("hello from the default terminal"))
        .start_tcp()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str]| super::support::run_cambot(None, &data, args, "");
    assert!(cli(&["tenants", "add", "acme"]).ok);
    // The legacy key serves the default tenant only: acme's is in its vault.
    set_secret(&data, "acme", "anthropic", "sk-ant-acme-cli-e2e-0123");

    let base = standin.root_url();
    let (ok, out) = tokio::task::spawn_blocking({
        let (data, base) = (data.clone(), base.clone());
        move || chat(&data, &["--tenant", "acme"], &base, "ACMEPROMPT\n")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Andy: hello from acme's terminal"), "{out}");
    assert!(
        standin.requests()[0]
            .body
            .to_string()
            .contains("ACMEPROMPT"),
        "the prompt did not reach the model"
    );
    // Created on first use, under acme only, in its own folder.
    let acme = cli(&["groups", "list", "--tenant", "acme"]).stdout;
    let line = acme
        .lines()
        .find(|l| l.contains("cli:console@acme"))
        .unwrap_or_else(|| panic!("no terminal group in:\n{acme}"));
    assert_eq!(line.split_whitespace().nth(2), Some("terminal"), "{line}");
    assert!(data.join("tenants/acme/groups/terminal").is_dir());
    assert!(!data.join("tenants/acme/groups/main").exists());
    let default = cli(&["groups", "list", "--tenant", "default"]).stdout;
    assert!(!default.contains("cli:"), "{default}");

    // Without --tenant, the default tenant's terminal is its main group, as before.
    let (ok, out) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || chat(&data, &[], &base, "DEFAULTPROMPT\n")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("Andy: hello from the default terminal"),
        "{out}"
    );
    let default = cli(&["groups", "list", "--tenant", "default"]).stdout;
    let line = default
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cli:console"))
        .unwrap_or_else(|| panic!("no default terminal in:\n{default}"));
    assert_eq!(line.split_whitespace().nth(2), Some("main"), "{line}");
    // The second chat did not see acme's conversation.
    let second = standin.requests()[1].body.to_string();
    assert!(second.contains("DEFAULTPROMPT") && !second.contains("ACMEPROMPT"));
}
