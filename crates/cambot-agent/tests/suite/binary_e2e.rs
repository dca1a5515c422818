//! The operator and user paths through the real `cambot` binary: `cambot sandbox run` (the
//! plan an agent run gets) and `cambot chat` answered by the embedded local model.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::process::Stdio;

use super::local_model::local_model_files;
use super::sandboxed::sandbox_tools;

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
fn sandbox_run_shows_what_an_agent_sees_and_passes_the_exit_code() {
    let Some(_) = sandbox_tools() else {
        return;
    };
    let dir = data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "sandbox",
            "run",
            "--backend",
            "bwrap",
            "--group",
            "family",
            "--",
        ])
        .args([
            "bash",
            "-c",
            "id -u; pwd; ls /workspace; test -e /root/.bashrc && echo LEAK; exit 7",
        ])
        .env("CAMBOT_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_ne!(lines[0], "0", "the command ran as root");
    assert_eq!(lines[1], "/workspace/group");
    assert!(!stdout.contains("LEAK"), "{stdout}");
}

#[test]
#[ignore = "needs bwrap, root and the local model: run by scripts/test.sh"]
fn cambot_chat_with_no_key_is_answered_by_the_local_model() {
    let Some(_) = sandbox_tools() else {
        return;
    };
    let Some((server, model, template)) = local_model_files() else {
        return;
    };
    let dir = data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("chat")
        .arg("--data-dir")
        .arg(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TZ", "UTC")
        .env("CAMBOT_LOG", "warn")
        .env("CAMBOT_LLAMA_SERVER", server)
        .env("CAMBOT_SMOLLM2_GGUF", model)
        .env("CAMBOT_CHAT_TEMPLATE", template)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let reply = stdout
        .split("Andy: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no reply printed: {stdout}\n{stderr}"));
    assert!(!reply.trim().is_empty(), "{stdout}");
    eprintln!("local model via cambot chat: {}", reply.trim());
}

#[test]
fn doctor_lists_every_enabled_channel() {
    let dir = data_dir();
    let config = dir.path().join("cambot.toml");
    std::fs::write(
        &config,
        "[channels.cli]\nenabled = true\n[channels.web]\nenabled = true\nlisten = \"127.0.0.1:8089\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("doctor")
        .env("CAMBOT_CONFIG", &config)
        .env("CAMBOT_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[ ok ] channels: cli, web on http://127.0.0.1:8089/"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// External web users are `<issuer>|<sub>`: `users add` refuses a name with `|` (or any name
/// an external identity could take), so no local user can shadow one.
#[test]
fn users_add_refuses_a_name_shaped_like_an_external_identity() {
    let dir = data_dir();
    let created = Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["tenants", "add", "acme"])
        .env("CAMBOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let add = |name: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cambot"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["users", "add", "--tenant", "acme", name])
            .env("CAMBOT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"correct horse battery\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    for name in ["https://idp.example|alice", "idp|alice"] {
        let out = add(name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(stderr.contains("invalid user name"), "{stderr}");
    }
    // Control: the plain name is accepted.
    let out = add("alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
