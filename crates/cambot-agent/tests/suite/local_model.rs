//! The embedded default: with no provider key configured, a chat message is answered by the
//! real SmolLM2 model, served by llama-server in its own sandbox and reached through the run's
//! gateway socket. And a model file that does not match its pinned digest is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cambot_agent::local_model::pinned_file_for;
use cambot_agent::local_model::verify_pinned;
use cambot_agent::production::production_runner;

use super::sandboxed::sandbox_tools;
use super::support::*;

/// The files `scripts/setup/local-model.sh` exports, or a skip (failure under REQUIRE_ALL).
pub(crate) fn local_model_files() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (
        get("CAMBOT_LLAMA_SERVER"),
        get("CAMBOT_SMOLLM2_GGUF"),
        get("CAMBOT_CHAT_TEMPLATE"),
    ) {
        (Some(s), Some(m), Some(t)) => Some((s, m, t)),
        _ if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1") => {
            panic!("the local model is not built: source scripts/setup/local-model.sh")
        }
        _ => {
            eprintln!("SKIPPED local model end-to-end: CAMBOT_LLAMA_SERVER & co. not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, root and the local model: run by scripts/test.sh"]
async fn with_no_key_the_sandboxed_local_model_answers() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let Some((server, model, template)) = local_model_files() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
            [model]
            air_gapped = true
            [sandbox]
            backend = "bwrap"
            runner_path = "{}"
            init_path = "{}"
            [local_model]
            llama_server = "{}"
            model_file = "{}"
            chat_template = "{}"
            "#,
            runner_bin.display(),
            init_bin.display(),
            server.display(),
            model.display(),
            template.display()
        ),
    );
    // No provider variable at all: the embedded model is the default.
    let env = |_: &str| None;
    let (daemon, channel) = start_with_main(&cfg, production_runner(&cfg, Arc::new(env))).await;
    channel
        .inject(
            &tenant(),
            "fake:main",
            "Alice",
            "What is the capital of France?",
        )
        .await
        .unwrap();
    let sent = channel.wait_sent(1, Duration::from_secs(180)).await;
    assert_eq!(sent.len(), 1, "no reply from the local model");
    assert!(!sent[0].text.trim().is_empty());
    eprintln!("local model replied: {}", sent[0].text);
    // The text was streamed as it was generated.
    assert!(!channel.deltas().is_empty());
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_tampered_model_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let pin = pinned_file_for(&file).unwrap();
    // Wrong size: refused before hashing.
    std::fs::write(&file, b"GGUF not really a model").unwrap();
    let err = verify_pinned(&file, pin.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed verification") && err.contains("refusing to load it"),
        "{err}"
    );
    // Right size, wrong bytes: only the digest can tell, and the message names the pin.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(pin.size)
        .unwrap();
    let err = verify_pinned(&file, pin.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed verification") && err.contains(&pin.sha256),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs the local model (scripts/setup/local-model.sh): run by scripts/test.sh"]
async fn the_real_model_file_matches_its_pin() {
    let Some((_, model, _)) = local_model_files() else {
        return;
    };
    verify_pinned(&model, pinned_file_for(&model).unwrap())
        .await
        .unwrap();
}

#[test]
#[ignore = "needs the local model (scripts/setup/local-model.sh): run by scripts/test.sh"]
fn models_verify_cli_accepts_the_real_files_and_refuses_a_tampered_copy() {
    let Some((_, model, template)) = local_model_files() else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_cambot");
    let ok = std::process::Command::new(bin)
        .args(["models", "verify", "--dir"])
        .arg(model.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&model, dir.path().join(model.file_name().unwrap())).unwrap();
    let mut t = std::fs::read(&template).unwrap();
    t[0] ^= 1; // one flipped bit, same size: only the digest can catch it
    std::fs::write(dir.path().join(template.file_name().unwrap()), t).unwrap();
    let bad = std::process::Command::new(bin)
        .args(["models", "verify", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("refusing to load it"), "{text}");
}

/// A remote provider is the global choice; a tenant that chose `local` gets the embedded model,
/// started on its first run, while the default tenant stays on the remote upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, root and the local model: run by scripts/test.sh"]
async fn a_tenant_on_local_gets_the_embedded_model_started_on_first_need() {
    use cambot_testkit::standin::Script;
    use cambot_testkit::standin::Standin;
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let Some((server, model, template)) = local_model_files() else {
        return;
    };
    let remote = Standin::anthropic()
        .fallback(Script::text("from the remote"))
        .start_tcp()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
            [providers.remote]
            dialect = "anthropic"
            base_url = "{}"
            model = "remote-model"
            [sandbox]
            backend = "bwrap"
            runner_path = "{}"
            init_path = "{}"
            [local_model]
            llama_server = "{}"
            model_file = "{}"
            chat_template = "{}"
            "#,
            remote.root_url(),
            runner_bin.display(),
            init_bin.display(),
            server.display(),
            model.display(),
            template.display()
        ),
    );
    let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-remote".to_owned());
    let (daemon, channel) = start_with_main(&cfg, production_runner(&cfg, Arc::new(env))).await;
    let store = Arc::clone(daemon.router().store());
    let acme = cambot_protocol::TenantId::new("acme").unwrap();
    assert!(store.add_tenant(&acme, "").await.unwrap());
    assert!(
        store
            .set_tenant_provider(&acme, Some("local"))
            .await
            .unwrap()
    );
    channel
        .register(&acme, "fake:acme", "g1", Some(false))
        .await
        .unwrap();
    channel
        .inject(
            &acme,
            "fake:acme",
            "Alice",
            "What is the capital of France?",
        )
        .await
        .unwrap();
    let sent = channel.wait_sent(1, Duration::from_secs(180)).await;
    assert_eq!(sent.len(), 1, "no reply from the local model");
    assert_ne!(sent[0].text, "from the remote");
    assert_eq!(remote.request_count(), 0, "acme's run went to the remote");

    channel
        .inject(&tenant(), "fake:main", "Bob", "hello")
        .await
        .unwrap();
    let sent = channel.wait_sent(2, Duration::from_secs(60)).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].text, "from the remote");
    daemon.shutdown().await;
}
