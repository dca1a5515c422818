//! Shared set-up: a real daemon (real SQLite in a temp dir) with the fake channel and a scripted
//! runner.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::agent_run::AgentRunner;
use cambot_agent::config::Config;
use cambot_agent::daemon::ChannelFactory;
use cambot_agent::daemon::Daemon;
use cambot_channels::Channel;
use cambot_protocol::TenantId;
use cambot_testkit::fake_channel::FakeChannel;

pub(crate) struct TestDaemon {
    pub daemon: Daemon,
    pub channel: Arc<FakeChannel>,
    pub dir: tempfile::TempDir,
}

/// A config for a daemon on `dir`. The vault's master key goes in `dir` too (a test must
/// never create the default `/etc/cambot/master.key`).
pub(crate) fn config(dir: &Path, extra_toml: &str) -> Config {
    let raw = toml::from_str(extra_toml).unwrap();
    let key = dir.join("test-master.key");
    let key = key.to_str().unwrap().to_owned();
    Config::resolve(raw, None, Some(dir), &|k| match k {
        "TZ" => Some("UTC".to_owned()),
        "CAMBOT_MASTER_KEY_FILE" => Some(key.clone()),
        _ => None,
    })
    .unwrap()
}

pub(crate) fn fake_factory(
    slot: Arc<Mutex<Option<Arc<FakeChannel>>>>,
    log: Option<std::path::PathBuf>,
) -> ChannelFactory {
    Box::new(move |opts| {
        Box::pin(async move {
            let channel = match log {
                Some(path) => FakeChannel::with_delivery_log(opts, "fake:", path),
                None => FakeChannel::new(opts, "fake:"),
            };
            channel.connect().await?;
            *slot.lock().unwrap() = Some(Arc::clone(&channel));
            Ok(vec![channel as Arc<dyn Channel>])
        })
    })
}

pub(crate) async fn start_in(
    dir: tempfile::TempDir,
    runner: Arc<dyn AgentRunner>,
    extra_toml: &str,
) -> TestDaemon {
    let cfg = config(dir.path(), extra_toml);
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start(&cfg, runner, fake_factory(Arc::clone(&slot), None))
        .await
        .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    TestDaemon {
        daemon,
        channel,
        dir,
    }
}

pub(crate) async fn start(runner: Arc<dyn AgentRunner>, extra_toml: &str) -> TestDaemon {
    start_in(tempfile::tempdir().unwrap(), runner, extra_toml).await
}

pub(crate) fn tenant() -> TenantId {
    TenantId::default_tenant()
}

/// [`eventually`] for a check that must await (a store read).
pub(crate) async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A daemon with the given runner factory and the fake channel, its `fake:main` chat
/// registered as the main group.
pub(crate) async fn start_with_main(
    cfg: &Config,
    runner: cambot_agent::daemon::RunnerFactory,
) -> (Daemon, Arc<FakeChannel>) {
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start_with(cfg, runner, fake_factory(Arc::clone(&slot), None))
        .await
        .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    (daemon, channel)
}

/// What a run of the real `cambot` binary printed.
pub(crate) struct CliOut {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs the real `cambot` binary on `data_dir` (and `config`, if any) with `stdin` fed in.
pub(crate) fn run_cambot(
    config: Option<&Path>,
    data_dir: &Path,
    args: &[&str],
    stdin: &str,
) -> CliOut {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("CAMBOT_CONFIG")
        .env("CAMBOT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    CliOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
