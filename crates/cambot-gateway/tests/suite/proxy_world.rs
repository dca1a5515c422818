//! A gateway with model upstreams (loopback stand-ins) and one run's real socket, for the
//! model-proxy and socket-limit suites.

use std::path::Path;
use std::sync::Arc;

use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_gateway::Gateway;
use cambot_gateway::GatewayBuilder;
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
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_testkit::uds;
use cambot_testkit::uds::UdsResponse;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

pub(crate) struct ProxyWorld {
    dir: tempfile::TempDir,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) socket: RunSocket,
}

/// An upstream entry named `name` of `dialect` at `base_url`, with the host's key `sk-host`.
pub(crate) fn upstream(name: &str, dialect: &str, base_url: &str) -> ModelUpstream {
    ModelUpstream {
        name: name.to_owned(),
        dialect: dialect.to_owned(),
        base_url: base_url.to_owned(),
        credential: Some(ModelCredential::with_legacy(
            name,
            Some(Secret::new("sk-host")),
        )),
    }
}

impl ProxyWorld {
    pub(crate) async fn new(upstreams: Vec<ModelUpstream>, budget: RunBudget) -> Self {
        Self::with(
            |ipc| Gateway::builder(ipc, upstreams, GatewayPolicy::standard()),
            "default",
            budget,
        )
        .await
    }

    /// A gateway made by `make` (from the world's host tools) and one run of `tenant`.
    pub(crate) async fn with(
        make: impl FnOnce(Arc<IpcService>) -> GatewayBuilder,
        tenant: &str,
        budget: RunBudget,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
        let ipc = Arc::new(IpcService::new(
            store,
            DataLayout::new(dir.path()),
            Arc::new(|| {}),
            chrono_tz::UTC,
            Arc::new(|_| Box::pin(async {})),
            SendLimits::default(),
        ));
        let gateway = make(ipc).build().unwrap();
        let socket = bind(&gateway, dir.path(), tenant, None, budget);
        Self {
            dir,
            gateway,
            socket,
        }
    }

    /// Another run, of `tenant`, on the same gateway.
    pub(crate) fn run(&self, tenant: &str, budget: RunBudget) -> RunSocket {
        bind(&self.gateway, self.dir.path(), tenant, None, budget)
    }

    /// Another run, of `tenant`, allowed only the provider entry `provider`.
    pub(crate) fn run_of_provider(&self, tenant: &str, provider: &str) -> RunSocket {
        let budget = RunBudget {
            model_requests: u32::MAX,
            tokens: u64::MAX,
            wall_clock: std::time::Duration::from_secs(86_400),
        };
        bind(
            &self.gateway,
            self.dir.path(),
            tenant,
            Some(provider),
            budget,
        )
    }

    pub(crate) fn path(&self) -> &Path {
        self.socket.path()
    }

    /// One request with the run's token (plus `headers`), like the runner sends it.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> UdsResponse {
        call_on(&self.socket, method, path, headers, body).await
    }

    /// Writes `head` (with the run token added, then a blank line) and `body` on a raw
    /// connection while reading the answer; returns the answer's status. The server may answer
    /// and hang up before the body is written: write errors are expected then.
    pub(crate) async fn raw(&self, head: &str, body: Vec<u8>) -> u16 {
        let stream = tokio::net::UnixStream::connect(self.path()).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let head = format!(
            "{head}\r\n{RUN_TOKEN_HEADER}: {}\r\n\r\n",
            self.socket.token()
        );
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(head.as_bytes()).await;
            let _ = wr.write_all(&body).await;
            wr
        });
        let mut answer = Vec::new();
        let _ = rd.read_to_end(&mut answer).await;
        drop(writer.await.unwrap());
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
    }
}

/// Binds a run of `tenant` on `gateway`, its socket in `dir`, limited to `provider` if given.
fn bind(
    gateway: &Arc<Gateway>,
    dir: &Path,
    tenant: &str,
    provider: Option<&str>,
    budget: RunBudget,
) -> RunSocket {
    let run_id = RunId::from_bytes(rand::random());
    let path = dir.join(format!("{}.sock", &run_id.as_str()[..8]));
    RunSocket::bind(
        Arc::clone(gateway),
        RunIdentity {
            run_id,
            tenant: TenantId::new(tenant).unwrap(),
            folder: GroupFolder::new("main").unwrap(),
            chat_jid: ChatJid::new("main@g.us").unwrap(),
            model_provider: provider.map(str::to_owned),
        },
        &path,
        None,
        budget,
    )
    .unwrap()
}

/// One request on `socket` with its token (plus `headers`), like the runner sends it.
pub(crate) async fn call_on(
    socket: &RunSocket,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> UdsResponse {
    let mut all = vec![(RUN_TOKEN_HEADER, socket.token())];
    all.extend_from_slice(headers);
    uds::request(socket.path(), method, path, &all, body)
        .await
        .unwrap()
}
