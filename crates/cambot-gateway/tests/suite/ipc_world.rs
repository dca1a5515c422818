//! What the host-tool suites share: a real SQLite store, the host tools and one gateway over
//! them, and runs bound to real per-run sockets.

use std::path::PathBuf;
use std::sync::Arc;

use cambot_core::GroupRegistration;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_gateway::Gateway;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::IpcService;
use cambot_gateway::RunBudget;
use cambot_gateway::RunIdentity;
use cambot_gateway::RunSocket;
use cambot_gateway::SendLimits;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_testkit::uds;
use serde_json::Value;

pub(crate) fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

pub(crate) fn jid(j: &str) -> ChatJid {
    ChatJid::new(j).unwrap()
}

/// One run's socket, as the sandbox would use it.
pub(crate) struct Run {
    pub(crate) socket: RunSocket,
}

impl Run {
    pub(crate) async fn call(&self, route: &str, body: Value) -> (u16, Value) {
        let r = uds::request(
            self.socket.path(),
            "POST",
            route,
            &[(RUN_TOKEN_HEADER, self.socket.token())],
            Some(&body),
        )
        .await
        .unwrap();
        (r.status, r.body)
    }
}

pub(crate) struct IpcRig {
    _dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) ipc: Arc<IpcService>,
    runs_dir: PathBuf,
}

impl IpcRig {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
        let ipc = Arc::new(IpcService::new(
            Arc::clone(&store),
            DataLayout::new(dir.path()),
            Arc::new(|| {}),
            chrono_tz::UTC,
            Arc::new(|_| Box::pin(async {})),
            SendLimits::default(),
        ));
        let gateway =
            Gateway::new(Arc::clone(&ipc), Vec::new(), GatewayPolicy::standard()).unwrap();
        let runs_dir = dir.path().join("runs");
        std::fs::create_dir_all(&runs_dir).unwrap();
        Self {
            _dir: dir,
            store,
            gateway,
            ipc,
            runs_dir,
        }
    }

    pub(crate) async fn register(&self, t: &str, chat: &str, folder: &str, name: &str) {
        self.store
            .register_group(GroupRegistration {
                tenant: tenant(t),
                jid: jid(chat),
                name: name.into(),
                folder: GroupFolder::new(folder).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: None,
                container_config: None,
            })
            .await
            .unwrap();
    }

    /// A run of `t`/`folder` answering `chat`, on a socket of its own.
    pub(crate) fn run(&self, t: &str, folder: &str, chat: &str) -> Run {
        let run_id = RunId::from_bytes(rand::random());
        let path = self.runs_dir.join(format!("{run_id}.sock"));
        let socket = RunSocket::bind(
            Arc::clone(&self.gateway),
            RunIdentity {
                run_id,
                tenant: tenant(t),
                folder: GroupFolder::new(folder).unwrap(),
                chat_jid: jid(chat),
                model_provider: None,
            },
            &path,
            None,
            RunBudget::default(),
        )
        .unwrap();
        Run { socket }
    }
}
