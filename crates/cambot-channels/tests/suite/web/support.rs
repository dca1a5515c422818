//! A real daemon with the web channel on an ephemeral port, users, an HTTP client and a
//! WebSocket client.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::agent_run::AgentRunner;
use cambot_agent::agent_run::RunRequest;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_channels::Channel;
use cambot_channels::WebChannel;
use cambot_channels::WebConfig;
use cambot_channels::web::passwords::hash_password;
use cambot_core::Store;
use cambot_protocol::TenantId;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use futures::SinkExt;
use futures::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) struct WebDaemon {
    pub daemon: Daemon,
    pub channel: Arc<WebChannel>,
    pub base: String,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

/// The tokens (`tok-...`) in a prompt, in order.
pub(crate) fn tokens_in(prompt: &str) -> Vec<String> {
    prompt
        .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
        .filter(|w| w.starts_with("tok-"))
        .map(str::to_owned)
        .collect()
}

/// Streams two deltas, then replies naming the run's folder and the tokens it was given.
pub(crate) fn tagging_runner() -> Arc<ScriptedRunner> {
    ScriptedRunner::new(|req: &RunRequest, prompt: &str| {
        let text = format!(
            "folder={} got={}",
            req.group.folder,
            tokens_in(prompt).join(",")
        );
        let mut turn = Turn::reply(text.clone());
        let (a, b) = text.split_at(text.len() / 2);
        turn.deltas = vec![a.to_owned(), b.to_owned()];
        turn
    })
}

pub(crate) fn web_config() -> WebConfig {
    WebConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        ..WebConfig::default()
    }
}

pub(crate) async fn start(runner: Arc<dyn AgentRunner>, web: WebConfig) -> WebDaemon {
    start_in(tempfile::tempdir().unwrap(), runner, web)
        .await
        .unwrap()
}

/// Adds users (and so their tenants) to the store under `dir` before a daemon starts there.
pub(crate) async fn seed_users(dir: &tempfile::TempDir, users: &[(&str, &str)]) {
    let layout = cambot_protocol::DataLayout::new(dir.path());
    use cambot_core::UserStore;
    let store = cambot_agent::database::open_store(&layout).await.unwrap();
    let hash = hash_password(PASSWORD).unwrap();
    for (tenant, user) in users {
        let tenant = TenantId::new(tenant).unwrap();
        assert!(store.add_user(&tenant, user, &hash).await.unwrap());
    }
}

/// The master key file a test daemon on `dir` uses.
pub(crate) fn master_key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("test-master.key")
}

/// Starts a daemon with its data under `dir`.
pub(crate) async fn start_in(
    dir: tempfile::TempDir,
    runner: Arc<dyn AgentRunner>,
    web: WebConfig,
) -> Result<WebDaemon, cambot_agent::daemon::DaemonError> {
    let raw = toml::from_str("").unwrap();
    // The vault's master key in the test's directory: never the default /etc/cambot.
    let key = master_key_file(&dir);
    let mut config = Config::resolve(raw, None, Some(dir.path()), &|k| match k {
        "TZ" => Some("UTC".to_owned()),
        "CAMBOT_MASTER_KEY_FILE" => Some(key.display().to_string()),
        _ => None,
    })
    .unwrap();
    config.channels.cli.enabled = false;
    config.channels.web = web.clone();
    let slot: Arc<Mutex<Option<Arc<WebChannel>>>> = Arc::new(Mutex::new(None));
    let slot2 = Arc::clone(&slot);
    let factory: cambot_agent::daemon::ChannelFactory = Box::new(move |opts| {
        Box::pin(async move {
            let channel = Arc::new(WebChannel::new(opts, &web)?);
            channel.connect().await?;
            *slot2.lock().unwrap() = Some(Arc::clone(&channel));
            Ok(vec![channel as Arc<dyn Channel>])
        })
    });
    let daemon = Daemon::start(&config, runner, factory).await?;
    let channel = slot.lock().unwrap().clone().unwrap();
    let base = format!("http://{}", channel.local_addr().unwrap());
    Ok(WebDaemon {
        daemon,
        channel,
        base,
        http: reqwest::Client::new(),
        _dir: dir,
    })
}

impl WebDaemon {
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.daemon.router().store()
    }

    /// The vault the daemon seals its signing keys with, opened again (as the admin CLI does).
    pub(crate) async fn vault(&self) -> cambot_agent::vault::Vault {
        let store = Arc::clone(self.store()) as Arc<dyn cambot_core::VaultStore>;
        let location = cambot_agent::vault::KeyLocation {
            source: cambot_agent::vault::KeySource::EnvFile,
            path: master_key_file(&self._dir),
            looked: Vec::new(),
        };
        cambot_agent::vault::open_at(store, location, self._dir.path(), false)
            .await
            .unwrap()
            .unwrap()
    }

    /// A tenant's newest signing key: its kid and its PKCS#8 private key, opened with the vault.
    pub(crate) async fn signing_key(&self, tenant: &TenantId) -> (String, Vec<u8>) {
        let row = self.store().signing_keys(tenant).await.unwrap().remove(0);
        assert!(row.sealed, "signing key {} stored in plaintext", row.kid);
        let name = cambot_channels::web::tokens::signing_key_name(&row.kid);
        let pkcs8 = self
            .vault()
            .await
            .open_key(tenant, &name, &row.private_key)
            .await
            .unwrap();
        (row.kid, pkcs8.to_vec())
    }

    pub(crate) async fn add_user(&self, tenant: &str, user: &str) {
        let hash = hash_password(PASSWORD).unwrap();
        assert!(
            self.store()
                .add_user(&TenantId::new(tenant).unwrap(), user, &hash)
                .await
                .unwrap()
        );
    }

    /// Signs in; returns the access token and the refresh cookie value.
    pub(crate) async fn login(&self, tenant: &str, user: &str) -> (String, String) {
        let res = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"tenant": tenant, "user": user, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login {tenant}/{user}");
        let cookie = refresh_cookie(&res).expect("refresh cookie");
        let body: Value = res.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), cookie)
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn new_session(&self, token: &str) -> String {
        let res = self.post(token, "/api/sessions", json!({})).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn history(&self, token: &str, session: &str) -> Value {
        let res = self
            .get(token, &format!("/api/sessions/{session}/history"))
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Replies in a session's history, waiting until there are `n`.
    pub(crate) async fn wait_replies(&self, token: &str, session: &str, n: usize) -> Vec<String> {
        for _ in 0..2000 {
            let h = self.history(token, session).await;
            let replies: Vec<String> = h["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["role"] == "assistant")
                .map(|i| i["text"].as_str().unwrap().to_owned())
                .collect();
            if replies.len() >= n {
                return replies;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("session {session}: fewer than {n} replies");
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http://", "ws://", 1))
    }

    pub(crate) async fn ws(&self, token: &str) -> Ws {
        let mut ws = Ws::connect(&self.ws_url(), None).await.unwrap();
        ws.send(json!({"type": "auth", "token": token})).await;
        let ready = ws.next_of("ready").await;
        assert_eq!(ready["type"], "ready");
        ws
    }
}

pub(crate) fn refresh_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("cambot_refresh=")
                .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        })
        .filter(|v| !v.is_empty())
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct Ws {
    pub inner: Stream,
}

impl Ws {
    pub(crate) async fn connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        let (inner, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self { inner })
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.inner
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (None when the socket closed), within 20 s.
    pub(crate) async fn recv(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.inner.next())
                .await
                .expect("no frame within 20 s")?;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Skips frames until one of type `ty` (or an error frame, which is returned).
    pub(crate) async fn next_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await.expect("socket closed");
            if v["type"] == ty || v["type"] == "error" {
                return v;
            }
        }
    }
}

impl WebDaemon {
    pub(crate) async fn daemon_shutdown(self) {
        let WebDaemon { daemon, .. } = self;
        daemon.shutdown().await;
    }
}
