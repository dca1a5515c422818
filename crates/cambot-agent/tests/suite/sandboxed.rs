//! End to end with nothing faked but the remote model: a real daemon, the real sandbox (bwrap),
//! the real `cambot-runner` inside it, the per-run gateway socket, and a wire-exact Anthropic
//! stand-in as the upstream. A chat message goes in, the agent runs a tool in its sandbox, and
//! the reply comes out; the key reaches the upstream but never the sandbox.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_protocol::GroupFolder;
use cambot_testkit::fake_channel::FakeChannel;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::StandinHandle;
use serde_json::json;

use super::support::*;

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "sk-ant-test-secret-0123456789";

/// The built binary `name` next to this test's target profile dir.
pub(crate) fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/all-<hash> -> target/<profile>/<name>
    let profile = exe.parent().unwrap().parent().unwrap();
    profile.join(name)
}

/// bwrap and the two sandbox binaries, or a skip (a failure under CAMBOT_REQUIRE_ALL).
pub(crate) fn sandbox_tools() -> Option<(PathBuf, PathBuf)> {
    let runner = workspace_bin("cambot-runner");
    let init = workspace_bin("cambot-sandbox-init");
    let bwrap_ok = std::env::var_os("CAMBOT_BWRAP").is_some()
        || std::process::Command::new("bwrap")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let missing = if !bwrap_ok {
        Some("bwrap is not installed (scripts/setup/sandbox.sh installs it)".to_owned())
    } else if !runner.is_file() || !init.is_file() {
        Some(format!(
            "{} or {} is not built (cargo build --workspace --bins)",
            runner.display(),
            init.display()
        ))
    } else if !nix::unistd::geteuid().is_root() {
        Some("the sandbox tests drop to a sandbox uid and need root".to_owned())
    } else {
        None
    };
    match missing {
        None => Some((runner, init)),
        Some(reason) if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1") => {
            panic!("required tool missing: {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED sandboxed end-to-end: {reason}");
            None
        }
    }
}

pub(crate) struct E2e {
    pub(crate) daemon: Daemon,
    pub(crate) channel: Arc<FakeChannel>,
    pub(crate) standin: StandinHandle,
    pub(crate) dir: tempfile::TempDir,
}

impl E2e {
    /// The test's master key file (the daemon's `CAMBOT_MASTER_KEY_FILE`).
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("test-master.key")
    }

    /// Stores `tenant`'s secret through the vault (the legacy key serves `default` only).
    pub(crate) async fn set_secret(
        &self,
        tenant: &cambot_protocol::TenantId,
        name: &str,
        value: &str,
    ) {
        let store = Arc::clone(self.daemon.router().store()) as Arc<dyn cambot_core::VaultStore>;
        let key = cambot_agent::vault::load_key(
            store.as_ref(),
            super::vault_support::key_location(&self.key_file()),
            true,
            None,
        )
        .await
        .unwrap()
        .unwrap();
        let vault = cambot_agent::vault::Vault::open(store, key).await.unwrap();
        vault
            .set(
                tenant,
                name,
                &cambot_gateway::Secret::new(value.to_owned()),
                None,
            )
            .await
            .unwrap();
    }
}

async fn start_e2e(scripts: Vec<Script>) -> Option<E2e> {
    start_e2e_with(scripts, None, "").await
}

/// A daemon on the real sandbox; `init` replaces the built shim's path (a missing file: no
/// shim), `extra` goes into `[sandbox]`.
pub(crate) async fn start_e2e_with(
    scripts: Vec<Script>,
    init: Option<PathBuf>,
    extra: &str,
) -> Option<E2e> {
    let (runner_bin, built_init) = sandbox_tools()?;
    let init_bin = init.unwrap_or(built_init);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CAMBOT_TEST_LOG"))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    // The sandbox user must traverse the data dir to reach its own folders.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut standin = Standin::anthropic();
    for s in scripts {
        standin = standin.reply(s);
    }
    let standin = standin.start_tcp().await.unwrap();
    let toml_text = format!(
        r#"
        [sandbox]
        backend = "bwrap"
        runner_path = "{}"
        init_path = "{}"
        timeout_secs = 120
        idle_timeout_secs = 60
        {}
        [router]
        idle_timeout_ms = 500
        "#,
        runner_bin.display(),
        init_bin.display(),
        extra
    );
    let cfg: Config = config(dir.path(), &toml_text);
    let env: cambot_agent::production::EnvLookup = {
        let base = standin.root_url();
        let key_file = dir.path().join("test-master.key").display().to_string();
        Arc::new(move |k: &str| match k {
            "CAMBOT_MASTER_KEY_FILE" => Some(key_file.clone()),
            "ANTHROPIC_API_KEY" => Some(KEY.to_owned()),
            "ANTHROPIC_BASE_URL" => Some(base.clone()),
            "ANTHROPIC_MODEL" => Some("claude-test".to_owned()),
            _ => None,
        })
    };
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start_with(
        &cfg,
        production_runner(&cfg, env),
        fake_factory(Arc::clone(&slot), None),
    )
    .await
    .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    Some(E2e {
        daemon,
        channel,
        standin,
        dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_message_runs_a_tool_in_the_sandbox_and_the_reply_comes_back() {
    let Some(t) = start_e2e(vec![
        Script::tool_use(
            "bash",
            json!({"command": "id -u > whoami.txt; env > env.txt; echo made > made.txt; \
                (touch /dev/shm/probe 2>/dev/null && echo writable || echo refused) > shm.txt; \
                cat made.txt"}),
        ),
        Script::text_chunks(["All ", "done."]),
    ])
    .await
    else {
        return;
    };
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "make a file")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, WAIT).await;
    assert_eq!(
        sent.len(),
        1,
        "no reply; requests: {}",
        t.standin.request_count()
    );
    assert_eq!(sent[0].text, "All done.");
    // The run worked with the data dir private to root (bind mounts, not traversal).
    let data_mode = std::fs::metadata(t.dir.path()).unwrap().mode() & 0o7777;
    assert_eq!(data_mode, 0o700);
    assert_eq!(
        std::fs::metadata(t.daemon.layout().database())
            .unwrap()
            .mode()
            & 0o7777,
        0o600
    );

    // The agent's file landed in the group folder, written by a non-root uid.
    let group = t.daemon.layout().group_dir(&tenant(), &GroupFolder::main());
    let made = group.join("made.txt");
    assert_eq!(std::fs::read_to_string(&made).unwrap().trim(), "made");
    let uid: u32 = std::fs::read_to_string(group.join("whoami.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the agent ran as root");
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), uid);

    // The runner confined itself with Landlock (no shim on this path), and its tools inherit
    // it: /dev/shm is the sandbox uid's own tmpfs, writable but for Landlock.
    assert_eq!(
        std::fs::read_to_string(group.join("shm.txt"))
            .unwrap()
            .trim(),
        "refused",
        "the agent's tools could write outside the workspace"
    );

    // The key went upstream (added by the gateway) but is nowhere in the sandbox.
    let requests = t.standin.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.header("x-api-key"), Some(KEY));
    }
    let env_dump = std::fs::read_to_string(group.join("env.txt")).unwrap();
    assert!(!env_dump.contains(KEY), "the key leaked into the sandbox");
    assert!(!env_dump.contains("ANTHROPIC"), "{env_dump}");
    // The tool result went back to the model.
    let second = requests[1].body.to_string();
    assert!(second.contains("made"), "{second}");

    // The session id the runner returned is stored for the next run.
    let store = t.daemon.router().store();
    assert!(
        store
            .session(&tenant(), &GroupFolder::main())
            .await
            .unwrap()
            .is_some()
    );
    eventually_async("the run closed", || t.daemon.router().queue().is_idle()).await;
    let runs_left = std::fs::read_dir(t.daemon.layout().runs_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(runs_left, 0, "run directories are removed after the run");
    t.daemon.shutdown().await;
    drop(t.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn the_next_run_resumes_the_session_and_sees_earlier_turns() {
    let Some(t) = start_e2e(vec![
        Script::text("first answer"),
        Script::text("second answer"),
    ])
    .await
    else {
        return;
    };
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "remember the word PELICAN")
        .await
        .unwrap();
    t.channel.wait_sent(1, WAIT).await;
    // Let the idle close end the first run, so the second message starts a new one.
    eventually_async("first run closed", || t.daemon.router().queue().is_idle()).await;
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "what was the word?")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(2, WAIT).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].text, "second answer");
    let second = t.standin.request(1).unwrap().body.to_string();
    assert!(second.contains("PELICAN"), "{second}");
    assert!(second.contains("first answer"), "{second}");
    t.daemon.shutdown().await;
}

pub(crate) async fn eventually_async(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Counts the runs a runner starts.
struct Counting {
    inner: Arc<dyn cambot_agent::agent_run::AgentRunner>,
    starts: Arc<std::sync::atomic::AtomicUsize>,
}

impl cambot_agent::agent_run::AgentRunner for Counting {
    fn start(
        &self,
        request: cambot_agent::agent_run::RunRequest,
    ) -> cambot_agent::agent_run::BoxFuture<
        '_,
        Result<cambot_agent::agent_run::ActiveRun, cambot_agent::agent_run::RunStartError>,
    > {
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.start(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_message_sent_while_the_run_is_thinking_is_answered_in_the_same_run() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let standin = Standin::anthropic()
        .reply(Script::text("first answer").head_delay(Duration::from_millis(1500)))
        .reply(Script::text("second answer"))
        .start_tcp()
        .await
        .unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n",
            runner_bin.display(),
            init_bin.display()
        ),
    );
    let base = standin.root_url();
    let env = move |k: &str| match k {
        "ANTHROPIC_API_KEY" => Some(KEY.to_owned()),
        "ANTHROPIC_BASE_URL" => Some(base.clone()),
        "ANTHROPIC_MODEL" => Some("m".to_owned()),
        _ => None,
    };
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let factory: cambot_agent::daemon::RunnerFactory = {
        let cfg = cfg.clone();
        let starts = Arc::clone(&starts);
        Box::new(move |ctx| {
            Box::pin(async move {
                let inner =
                    cambot_agent::production::build_sandboxed_runner(&cfg, &ctx, &env).await?;
                Ok(Arc::new(Counting {
                    inner: Arc::new(inner),
                    starts,
                })
                    as Arc<dyn cambot_agent::agent_run::AgentRunner>)
            })
        })
    };
    let (daemon, channel) = start_with_main(&cfg, factory).await;
    channel
        .inject(&tenant(), "fake:main", "Alice", "first question")
        .await
        .unwrap();
    // The model is "thinking" on the first question when the second one arrives.
    tokio::time::timeout(WAIT, standin.wait_for_requests(1))
        .await
        .unwrap();
    channel
        .inject(&tenant(), "fake:main", "Alice", "second question")
        .await
        .unwrap();
    let sent = channel.wait_sent(2, WAIT).await;
    assert_eq!(
        sent.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        ["first answer", "second answer"]
    );
    assert_eq!(
        starts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one run answered both"
    );
    let second = standin.request(1).unwrap().body.to_string();
    assert!(
        second.contains("first answer") && second.contains("second question"),
        "{second}"
    );
    daemon.shutdown().await;
}
