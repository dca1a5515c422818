//! A host for the runner binary: a temp data dir, a real store and gateway, one run socket per
//! run, and the scripted Anthropic stand-in as the model upstream.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use cambot_core::GroupRegistration;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_gateway::Gateway;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::IpcService;
use cambot_gateway::ModelCredential;
use cambot_gateway::ModelUpstream;
use cambot_gateway::RunBudget;
use cambot_gateway::RunIdentity;
use cambot_gateway::RunSocket;
use cambot_gateway::Secret;
use cambot_gateway::SendLimits;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::HostToRunner;
use cambot_protocol::ModelChoice;
use cambot_protocol::RunId;
use cambot_protocol::RunLimits;
use cambot_protocol::RunnerToHost;
use cambot_protocol::StartInput;
use cambot_protocol::TenantId;
use cambot_protocol::ToolPolicy;
use cambot_testkit::standin::StandinHandle;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;

pub(crate) const API_KEY: &str = "sk-ant-test-key-0123456789";
pub(crate) const CHAT: &str = "cli:family";
pub(crate) const FOLDER: &str = "family";

pub(crate) struct Host {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) gateway: Arc<Gateway>,
    /// The host tools behind the gateway (to plug in a workflow host).
    pub(crate) ipc: Arc<IpcService>,
    pub(crate) standin: StandinHandle,
    pub(crate) layout: DataLayout,
    /// The model budget the gateway enforces on each run this host starts.
    pub(crate) budget: RunBudget,
}

impl Host {
    pub(crate) async fn new(standin: cambot_testkit::standin::Standin) -> Self {
        Self::with_policy(
            standin,
            GatewayPolicy::standard(),
            Arc::new(cambot_gateway::SystemResolver),
        )
        .await
    }

    /// A host whose gateway has `policy` and resolves fetch names through `resolver`.
    pub(crate) async fn with_policy(
        standin: cambot_testkit::standin::Standin,
        policy: GatewayPolicy,
        resolver: Arc<dyn cambot_gateway::FetchResolver>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(dir.path());
        let db = layout.database();
        let store: Arc<dyn Store> = Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(&db))
                .await
                .unwrap()
                .unwrap(),
        );
        for (jid, folder) in [(CHAT, FOLDER), ("cli:main", "main")] {
            store
                .register_group(GroupRegistration {
                    tenant: TenantId::default_tenant(),
                    jid: ChatJid::new(jid).unwrap(),
                    name: folder.into(),
                    folder: GroupFolder::new(folder).unwrap(),
                    trigger: "@Andy".into(),
                    requires_trigger: None,
                    container_config: None,
                })
                .await
                .unwrap();
            store
                .store_chat_metadata(cambot_protocol::ChatMetadata {
                    tenant: TenantId::default_tenant(),
                    chat_jid: ChatJid::new(jid).unwrap(),
                    timestamp: "2026-01-01T00:00:00Z".into(),
                    name: Some(format!("{folder} chat")),
                    channel: Some("cli".into()),
                    is_group: Some(true),
                })
                .await
                .unwrap();
        }
        let standin = standin.start_tcp().await.unwrap();
        let ipc = Arc::new(IpcService::new(
            store,
            layout.clone(),
            Arc::new(|| {}),
            chrono_tz::UTC,
            Arc::new(|_| Box::pin(async {})),
            SendLimits::default(),
        ));
        let gateway = Gateway::with_resolver(
            Arc::clone(&ipc),
            vec![ModelUpstream {
                name: "claude".into(),
                dialect: "anthropic".into(),
                base_url: standin.root_url(),
                credential: Some(ModelCredential::with_legacy(
                    "claude",
                    Some(Secret::new(API_KEY)),
                )),
            }],
            policy,
            resolver,
        )
        .unwrap();
        std::fs::create_dir_all(layout.runs_dir()).unwrap();
        Self {
            dir,
            gateway,
            ipc,
            standin,
            layout,
            budget: RunBudget::default(),
        }
    }

    /// The folder's workspace as the sandbox shows it (`group/`, `global/`, `session/`),
    /// kept across runs. Real directories: the sandbox bind-mounts them, and the runner
    /// rightly refuses symlinks that lead out of its workspace.
    pub(crate) fn workspace(&self, folder: &str) -> PathBuf {
        let ws = self.dir.path().join(format!("ws-{folder}"));
        for d in ["group", "global", "session"] {
            std::fs::create_dir_all(ws.join(d)).unwrap();
        }
        ws
    }

    /// Binds a run socket and starts the runner binary with `start` filled in.
    pub(crate) async fn spawn(&self, folder: &str, chat: &str, mut start: StartInput) -> Runner {
        let run_id = RunId::from_bytes(rand::random());
        let path = self.layout.runs_dir().join(format!("{run_id}.sock"));
        let socket = RunSocket::bind(
            Arc::clone(&self.gateway),
            RunIdentity {
                run_id: run_id.clone(),
                tenant: TenantId::default_tenant(),
                folder: GroupFolder::new(folder).unwrap(),
                chat_jid: ChatJid::new(chat).unwrap(),
                model_provider: None,
            },
            &path,
            None,
            self.budget,
        )
        .unwrap();
        start.run_id = run_id.clone();
        start.host_token = socket.token().to_owned();
        start.group_folder = GroupFolder::new(folder).unwrap();
        start.chat_jid = ChatJid::new(chat).unwrap();
        start.is_main = folder == "main";
        let workspace = self.workspace(folder);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambot-runner"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CAMBOT_HOST_SOCKET", socket.path())
            .env("CAMBOT_WORKSPACE", &workspace)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut runner = Runner {
            child,
            stdin: Some(stdin),
            stdout,
            socket: Some(socket),
            seen: Vec::new(),
            workspace,
        };
        runner.send(&HostToRunner::Start(Box::new(start))).await;
        runner
    }
}

/// A start line; the host fills in run id, token, group and chat.
pub(crate) fn start(prompt: &str, session_id: Option<String>) -> StartInput {
    StartInput {
        run_id: RunId::from_bytes([0; 16]),
        tenant: TenantId::default_tenant(),
        group_folder: GroupFolder::new(FOLDER).unwrap(),
        chat_jid: ChatJid::new(CHAT).unwrap(),
        is_main: false,
        prompt: prompt.into(),
        session_id,
        is_scheduled_task: false,
        assistant_name: "Andy".into(),
        timezone: "UTC".into(),
        local_clock: None,
        host_token: String::new(),
        model: ModelChoice {
            provider: "claude".into(),
            dialect: "anthropic".into(),
            model: "claude-test".into(),
            max_tokens: 512,
        },
        tools: ToolPolicy::Full,
        limits: RunLimits::default(),
    }
}

pub(crate) struct Runner {
    pub(crate) child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    socket: Option<RunSocket>,
    /// Every event read so far.
    pub(crate) seen: Vec<RunnerToHost>,
    pub(crate) workspace: PathBuf,
}

impl Runner {
    pub(crate) async fn send(&mut self, m: &HostToRunner) {
        self.send_raw(&m.to_line()).await;
    }

    pub(crate) async fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next event; panics (with stderr) when stdout ends first.
    pub(crate) async fn next(&mut self) -> RunnerToHost {
        match self.stdout.next_line().await.unwrap() {
            Some(line) => {
                let e = RunnerToHost::parse_line(&line).unwrap_or_else(|err| {
                    panic!("runner wrote a non-protocol line {line:?}: {err}")
                });
                self.seen.push(e.clone());
                e
            }
            None => {
                let out = self.finish_stderr().await;
                panic!("runner stdout ended; stderr:\n{out}");
            }
        }
    }

    /// Reads until the next `result` (or `error`, which panics).
    pub(crate) async fn result(&mut self) -> (Option<String>, Option<String>, u32) {
        loop {
            match self.next().await {
                RunnerToHost::Result {
                    text,
                    session_id,
                    inputs,
                } => return (text, session_id, inputs),
                RunnerToHost::Error { message, .. } => {
                    let err = self.finish_stderr().await;
                    panic!("runner error: {message}\nstderr:\n{err}")
                }
                _ => {}
            }
        }
    }

    async fn finish_stderr(&mut self) -> String {
        let _ = self.child.start_kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut s).await;
        }
        s
    }

    /// Sends `close`, waits for the exit, returns the exit code and closes the socket.
    pub(crate) async fn close(mut self) -> i32 {
        // A runner that already exited (after an `error`) has closed its stdin.
        if let Some(stdin) = self.stdin.as_mut() {
            let line = HostToRunner::Close.to_line();
            let _ = stdin.write_all(line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
        self.stdin.take();
        let status = self.child.wait().await.unwrap();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            self.seen.push(RunnerToHost::parse_line(&line).unwrap());
        }
        if let Some(s) = self.socket.take() {
            s.close().await;
        }
        status.code().unwrap_or(-1)
    }
}
