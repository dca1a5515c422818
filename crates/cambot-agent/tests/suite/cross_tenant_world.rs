//! The shared world of the cross-tenant attack suite (`cross_tenant*.rs`): tenants `acme` and
//! `beta` set up through the real binary, one daemon on the real sandbox, the web channel on
//! loopback, and helpers to script tool calls and read their results.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::daemon::ChannelFactory;
use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_channels::Channel;
use cambot_channels::WebChannel;
use cambot_channels::WebConfig;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use cambot_testkit::fake_channel::FakeChannel;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::StandinHandle;
use cambot_testkit::standin::ToolCall;
use serde_json::Value;
use serde_json::json;

use super::sandboxed::sandbox_tools;
use super::support::CliOut;
use super::support::config;
use super::support::run_cambot;

pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) fn tid(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

pub(crate) fn g1() -> GroupFolder {
    GroupFolder::new("g1").unwrap()
}

/// Two tenants on one real daemon.
pub(crate) struct World {
    pub daemon: Daemon,
    pub fake: Arc<FakeChannel>,
    pub base: String,
    pub http: reqwest::Client,
    pub standin: StandinHandle,
    /// The canonical temp dir: `data/`, `srv/<tenant>/...` and the config file.
    pub top: PathBuf,
    pub layout: DataLayout,
    _dir: tempfile::TempDir,
}

impl World {
    /// The whole set-up, or `None` when bwrap or the built binaries are missing (a failure
    /// under `CAMBOT_REQUIRE_ALL=1`).
    pub(crate) async fn start() -> Option<Self> {
        let (runner_bin, init_bin) = sandbox_tools()?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("CAMBOT_TEST_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        let data = top.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for d in [&top, &data] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
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
        let toml_text = format!(
            "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n\
             allowlist_path = \"{}\"\ntimeout_secs = 120\nidle_timeout_secs = 60\n\
             [router]\nidle_timeout_ms = 300\n",
            runner_bin.display(),
            init_bin.display(),
            allowlist.display()
        );
        std::fs::write(top.join("cambot.toml"), &toml_text).unwrap();

        // The tenants, their groups, users and mounts, through the real binary.
        let cli = Cli { top: top.clone() };
        for t in ["acme", "beta"] {
            cli.ok(&["tenants", "add", t]);
            for (folder, extra) in [("main", None), ("g1", Some("false"))] {
                let jid = format!("fake:{t}-{folder}");
                let mut args = vec![
                    "groups", "register", "--tenant", t, "--jid", &jid, "--name", folder,
                    "--folder", folder,
                ];
                if let Some(v) = extra {
                    args.extend(["--requires-trigger", v]);
                }
                cli.ok(&args);
            }
            cli.ok_stdin(
                &["users", "add", "alice", "--tenant", t],
                &format!("{PASSWORD}\n"),
            );
        }
        cli.ok(&["tenants", "allow-mount", "acme", &cli.path("srv/acme")]);
        cli.ok(&[
            "tenants",
            "allow-mount",
            "beta",
            &cli.path("srv/beta"),
            "--rw",
        ]);
        cli.ok(&[
            "groups",
            "update",
            "--tenant",
            "acme",
            "--jid",
            "fake:acme-g1",
            "--add-mount",
            &cli.path("srv/acme/notes"),
        ]);
        cli.ok(&[
            "groups",
            "update",
            "--tenant",
            "beta",
            "--jid",
            "fake:beta-g1",
            "--add-mount",
            &format!("{}:ledger:rw", cli.path("srv/beta/ledger")),
        ]);

        // A secret in each tenant's g1 folder, session dir and uploads dir.
        let layout = DataLayout::new(&data);
        for t in ["acme", "beta"] {
            for (what, d) in [
                ("group", layout.group_dir(&tid(t), &g1())),
                ("session", layout.sessions_dir(&tid(t), &g1())),
                ("upload", layout.uploads_dir(&tid(t), &g1())),
            ] {
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("secret.txt"), format!("SECRET-{t}-{what}\n")).unwrap();
            }
        }

        let standin = Standin::anthropic().start_tcp().await.unwrap();
        let mut cfg = config(&data, &toml_text);
        cfg.channels.cli.enabled = false;
        let web_cfg = WebConfig {
            enabled: true,
            listen: "127.0.0.1:0".into(),
            ..WebConfig::default()
        };
        cfg.channels.web = web_cfg.clone();
        // The legacy key serves the default tenant only: acme and beta have theirs in the vault.
        // The key file the config names (`support::config`): the daemon and this test share it.
        let key_file = data.join("test-master.key");
        let env: cambot_agent::production::EnvLookup = {
            let base = standin.root_url();
            let key_path = key_file.display().to_string();
            Arc::new(move |k: &str| match k {
                "CAMBOT_MASTER_KEY_FILE" => Some(key_path.clone()),
                "ANTHROPIC_API_KEY" => Some("sk-ant-test-0123456789".to_owned()),
                "ANTHROPIC_BASE_URL" => Some(base.clone()),
                "ANTHROPIC_MODEL" => Some("claude-test".to_owned()),
                _ => None,
            })
        };
        type Slot = Arc<Mutex<Option<(Arc<FakeChannel>, Arc<WebChannel>)>>>;
        let slot: Slot = Arc::new(Mutex::new(None));
        let factory: ChannelFactory = {
            let slot = Arc::clone(&slot);
            Box::new(move |opts| {
                Box::pin(async move {
                    let web = Arc::new(WebChannel::new(opts.clone(), &web_cfg)?);
                    web.connect().await?;
                    let fake = FakeChannel::new(opts, "fake:");
                    fake.connect().await?;
                    *slot.lock().unwrap() = Some((Arc::clone(&fake), Arc::clone(&web)));
                    Ok(vec![fake as Arc<dyn Channel>, web as Arc<dyn Channel>])
                })
            })
        };
        let daemon = Daemon::start_with(&cfg, production_runner(&cfg, env), factory)
            .await
            .unwrap();
        let (fake, web) = slot.lock().unwrap().clone().unwrap();
        let vault_store = Arc::clone(daemon.router().store()) as Arc<dyn cambot_core::VaultStore>;
        let key = cambot_agent::vault::load_key(
            vault_store.as_ref(),
            super::vault_support::key_location(&key_file),
            true,
            None,
        )
        .await
        .unwrap()
        .unwrap();
        let vault = cambot_agent::vault::Vault::open(vault_store, key)
            .await
            .unwrap();
        for t in ["acme", "beta"] {
            let value = cambot_gateway::Secret::new(format!("sk-ant-{t}-0123456789"));
            vault.set(&tid(t), "anthropic", &value, None).await.unwrap();
        }
        let base = format!("http://{}", web.local_addr().unwrap());
        Some(Self {
            daemon,
            fake,
            base,
            http: reqwest::Client::new(),
            standin,
            top,
            layout,
            _dir: dir,
        })
    }

    pub(crate) fn cli(&self) -> Cli {
        Cli {
            top: self.top.clone(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn cambot_core::Store> {
        self.daemon.router().store()
    }

    /// A message to `tenant`'s chat `fake:<tenant>-<folder>`; the model makes `calls` at once,
    /// then answers "done". Returns each call's tool result by call id.
    pub(crate) async fn tools(
        &self,
        tenant: &str,
        folder: &str,
        calls: Vec<ToolCall>,
    ) -> HashMap<String, String> {
        let before = self.standin.requests().len();
        let first = calls.first().map(|c| format!("{c:?}")).unwrap_or_default();
        self.standin.push(Script::tool_calls(calls));
        self.standin.push(Script::text("done"));
        self.fake
            .inject(
                &tid(tenant),
                &format!("fake:{tenant}-{folder}"),
                "Alice",
                "@Andy go",
            )
            .await
            .unwrap();
        // The request after the tool calls carries their results.
        let mut results = HashMap::new();
        for _ in 0..2400 {
            if let Some(r) = self
                .standin
                .requests()
                .iter()
                .skip(before)
                .map(|r| tool_results(&r.body))
                .find(|r| !r.is_empty())
            {
                results = r;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(!results.is_empty(), "no tool results came back for {first}");
        self.wait_idle().await;
        results
    }

    /// Waits until no run is active, so the next message starts a fresh run.
    pub(crate) async fn wait_idle(&self) {
        for _ in 0..1200 {
            if self.daemon.router().queue().is_idle() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the runs did not close");
    }

    pub(crate) async fn shutdown(self) {
        self.daemon.shutdown().await;
    }
}

/// The tool results in the last message of a model request, by tool_use id.
pub(crate) fn tool_results(body: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else {
        return out;
    };
    for block in last["content"].as_array().into_iter().flatten() {
        if block["type"] != "tool_result" {
            continue;
        }
        let text = match &block["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            other => other.to_string(),
        };
        let err = if block["is_error"] == true {
            "ERROR: "
        } else {
            ""
        };
        out.insert(
            block["tool_use_id"].as_str().unwrap().to_owned(),
            format!("{err}{text}"),
        );
    }
    out
}

pub(crate) fn call(id: &str, name: &str, input: Value) -> ToolCall {
    ToolCall::new(name, input).id(id)
}

pub(crate) fn bash(id: &str, command: &str) -> ToolCall {
    call(id, "bash", json!({ "command": command }))
}

/// The real `cambot` binary on the world's config and data dir.
pub(crate) struct Cli {
    top: PathBuf,
}

impl Cli {
    pub(crate) fn path(&self, rel: &str) -> String {
        self.top.join(rel).to_string_lossy().into_owned()
    }

    pub(crate) fn run(&self, args: &[&str], stdin: &str) -> CliOut {
        run_cambot(
            Some(&self.top.join("cambot.toml")),
            &self.top.join("data"),
            args,
            stdin,
        )
    }

    #[track_caller]
    pub(crate) fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.ok, "{args:?}: {}\n{}", out.stdout, out.stderr);
        out.stdout
    }

    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, "")
    }

    #[track_caller]
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(!out.ok, "{args:?} succeeded: {}", out.stdout);
        out.stderr
    }
}
