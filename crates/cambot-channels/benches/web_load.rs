//! Web chat load: 1,000 concurrent WebSocket sessions (50 users x 20 sessions, the default)
//! through the real web channel, daemon, router, store and group queue, with a fast stand-in
//! runner that streams two deltas and replies at once.
//!
//! Every session sends `BENCH_MESSAGES` (default 5) messages, one after another, each waiting
//! for its reply; all sessions run at once. The clients run in a child process (this binary
//! re-executed with `BENCH_CLIENT=1`), so the RSS printed is the daemon's alone. Prints accepted
//! messages/s (acks over the send phase), replies/s, p50/p99 reply latency (send to reply
//! frame) and daemon RSS. Fails if any message is unanswered or any frame reaches the wrong
//! session.
//!
//! `cargo bench -p cambot-channels --bench web_load` (env: BENCH_SESSIONS, BENCH_USERS,
//! BENCH_MESSAGES).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;

use cambot_agent::agent_run::RunRequest;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_channels::Channel;
use cambot_channels::WebChannel;
use cambot_channels::WebConfig;
use cambot_channels::web::passwords::hash_password;
use cambot_protocol::TenantId;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use futures::SinkExt;
use futures::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The allocator the `cambot` binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tokens_in(prompt: &str) -> Vec<String> {
    prompt
        .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
        .filter(|w| w.starts_with("tok-"))
        .map(str::to_owned)
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct SessionResult {
    latencies: Vec<Duration>,
    accepted: usize,
}

fn main() {
    let sessions = env_usize("BENCH_SESSIONS", 1000);
    let users = env_usize("BENCH_USERS", 50).max(1);
    let messages = env_usize("BENCH_MESSAGES", 5);
    // Two sockets per session (client and server) plus the store: raise the soft limit.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("BENCH_CLIENT").as_deref() == Ok("1") {
        rt.block_on(client());
    } else {
        rt.block_on(run(sessions, users, messages));
    }
}

/// The child process: connects every session, reports, waits for "go", runs the sessions and
/// prints the results as one JSON line.
async fn client() {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let plan: Value = serde_json::from_str(&stdin.next_line().await.unwrap().unwrap()).unwrap();
    let url = plan["url"].as_str().unwrap().to_owned();
    let messages = plan["messages"].as_u64().unwrap() as usize;
    let mut sockets = Vec::new();
    for s in plan["sessions"].as_array().unwrap() {
        let small = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(8 * 1024);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(small), false)
                .await
                .unwrap();
        send(&mut ws, json!({"type": "auth", "token": s["token"]})).await;
        expect(&mut ws, "ready").await;
        send(&mut ws, json!({"type": "subscribe", "session": s["id"]})).await;
        expect(&mut ws, "subscribed").await;
        sockets.push((ws, s["id"].as_str().unwrap().to_owned()));
    }
    println!("connected");
    assert_eq!(stdin.next_line().await.unwrap().unwrap(), "go");
    let n = sockets.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::new();
    for (i, (ws, id)) in sockets.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(session(i, ws, id, messages, barrier)));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut latencies_us = Vec::new();
    let mut accepted = 0usize;
    for t in tasks {
        let r = t.await.unwrap();
        accepted += r.accepted;
        latencies_us.extend(r.latencies.iter().map(|d| d.as_micros() as u64));
    }
    let elapsed_us = started.elapsed().as_micros() as u64;
    println!(
        "{}",
        json!({"accepted": accepted, "latencies_us": latencies_us, "elapsed_us": elapsed_us})
    );
}

/// One session: send, wait for the reply naming the message, repeat.
async fn session(
    i: usize,
    mut ws: Ws,
    id: String,
    messages: usize,
    barrier: Arc<tokio::sync::Barrier>,
) -> SessionResult {
    barrier.wait().await;
    let mut result = SessionResult {
        latencies: Vec::new(),
        accepted: 0,
    };
    for m in 0..messages {
        let tok = format!("tok-{i}-{m}");
        let sent = Instant::now();
        send(
            &mut ws,
            json!({"type": "send", "session": id, "text": tok, "client_id": format!("c{m}")}),
        )
        .await;
        loop {
            let f = next(&mut ws).await;
            assert_ne!(f["type"], "error", "session {i}: {f}");
            if f["type"] == "accepted" {
                result.accepted += 1;
                continue;
            }
            if f["type"] != "delta" && f["type"] != "reply" {
                continue;
            }
            assert_eq!(f["session"], id.as_str(), "frame for another session");
            let text = f["text"].as_str().unwrap();
            if f["type"] == "reply" {
                let got: Vec<&str> = text
                    .split("got=")
                    .nth(1)
                    .unwrap_or_default()
                    .split(',')
                    .collect();
                assert!(
                    got.iter().all(|t| t.starts_with(&format!("tok-{i}-"))),
                    "session {i} got another session's message: {text}"
                );
                if got.contains(&tok.as_str()) {
                    result.latencies.push(sent.elapsed());
                    break;
                }
            }
        }
    }
    result
}

async fn run(sessions: usize, users: usize, messages: usize) {
    let dir = tempfile::tempdir().unwrap();
    let raw = toml::from_str(&format!(
        "max_concurrent_runs = {sessions}\n[router]\nidle_timeout_ms = 60000\nrecovery_sweep_secs = 0\n"
    ))
    .unwrap();
    // The vault's master key in the bench's directory: never the default /etc/cambot.
    let key = dir.path().join("bench-master.key").display().to_string();
    let mut config = Config::resolve(raw, None, Some(dir.path()), &|k| match k {
        "TZ" => Some("UTC".to_owned()),
        "CAMBOT_MASTER_KEY_FILE" => Some(key.clone()),
        _ => None,
    })
    .unwrap();
    config.channels.cli.enabled = false;
    let web = WebConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        messages_per_minute: 0,
        requests_per_minute: 0,
        max_connections: sessions + 64,
        ..WebConfig::default()
    };
    let runner = ScriptedRunner::quiet(|req: &RunRequest, prompt: &str| {
        let text = format!(
            "folder={} got={}",
            req.group.folder,
            tokens_in(prompt).join(",")
        );
        let mut turn = Turn::reply(text.clone());
        let (a, b) = text.split_at(text.len() / 2);
        turn.deltas = vec![a.to_owned(), b.to_owned()];
        turn
    });
    let slot: Arc<Mutex<Option<Arc<WebChannel>>>> = Arc::new(Mutex::new(None));
    let slot2 = Arc::clone(&slot);
    let web2 = web.clone();
    let daemon = Daemon::start(
        &config,
        runner,
        Box::new(move |opts| {
            Box::pin(async move {
                let channel = Arc::new(WebChannel::new(opts, &web2)?);
                channel.connect().await?;
                *slot2.lock().unwrap() = Some(Arc::clone(&channel));
                Ok(vec![channel as Arc<dyn Channel>])
            })
        }),
    )
    .await
    .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    let addr = channel.local_addr().unwrap();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let rss_start = rss_kib();

    // Users and their tokens.
    let hash = hash_password("bench password").unwrap();
    let tenant = TenantId::default_tenant();
    let mut tokens = Vec::new();
    for u in 0..users {
        let name = format!("user{u}");
        daemon
            .router()
            .store()
            .add_user(&tenant, &name, &hash)
            .await
            .unwrap();
        let res: Value = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"user": name, "password": "bench password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(res["access_token"].as_str().unwrap().to_owned());
    }
    let rss_users = rss_kib();
    // Sessions.
    let mut ids = Vec::new();
    for i in 0..sessions {
        let token = &tokens[i % users];
        let res: Value = http
            .post(format!("{base}/api/sessions"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(res["id"].as_str().unwrap().to_owned());
    }
    let rss_sessions = rss_kib();
    let plan = json!({
        "url": format!("ws://{addr}/ws"),
        "messages": messages,
        "sessions": ids.iter().enumerate().map(|(i, id)| json!({"id": id, "token": tokens[i % users]})).collect::<Vec<_>>(),
    });
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_CLIENT", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    to_child
        .write_all(format!("{plan}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(from_child.next_line().await.unwrap().unwrap(), "connected");
    let rss_connected = rss_kib();
    println!(
        "web_load: {sessions} sessions ({users} users), {messages} messages each, {} total",
        sessions * messages
    );
    to_child.write_all(b"go\n").await.unwrap();
    let line = from_child
        .next_line()
        .await
        .unwrap()
        .expect("client failed");
    let result: Value = serde_json::from_str(&line).unwrap();
    assert!(
        child.wait().await.unwrap().success(),
        "client process failed"
    );
    let rss_end = rss_kib();
    let accepted = result["accepted"].as_u64().unwrap() as usize;
    let mut latencies: Vec<Duration> = result["latencies_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Duration::from_micros(v.as_u64().unwrap()))
        .collect();
    let elapsed = Duration::from_micros(result["elapsed_us"].as_u64().unwrap());
    let total = sessions * messages;
    assert_eq!(accepted, total, "accepted acks");
    assert_eq!(latencies.len(), total, "messages lost");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "web_load: accepted {:.0} messages/s; replied {:.0} messages/s ({total} in {:.2} s)",
        accepted as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "web_load: reply latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "web_load: daemon RSS: {} MiB at start, {} MiB after {users} sign-ins, {} MiB after creating the sessions, {} MiB with {sessions} sockets connected, {} MiB after the run",
        rss_start / 1024,
        rss_users / 1024,
        rss_sessions / 1024,
        rss_connected / 1024,
        rss_end / 1024
    );
    println!("web_load: no message lost, none delivered to another session");
    // Every reply is also durable in its own session's history.
    let store = daemon.router().store();
    let mut replies = 0;
    for (i, id) in ids.iter().enumerate() {
        let s = store
            .web_session(&tenant, &format!("user{}", i % users), id)
            .await
            .unwrap()
            .unwrap();
        replies += store
            .chat_replies_after(&tenant, &s.chat_jid, 0, 10_000)
            .await
            .unwrap()
            .len();
    }
    assert!(replies >= sessions, "durable replies: {replies}");
    daemon.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .expect("no frame within 120 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn expect(ws: &mut Ws, ty: &str) {
    let f = next(ws).await;
    assert_eq!(f["type"], ty, "{f}");
}
