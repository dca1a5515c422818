//! The vault's cost per model request, end to end at the gateway: one model request through a
//! real run socket (`RunSocket::bind`) to a loopback stand-in upstream, (a) on a gateway
//! without the vault (the default tenant's legacy key, `NoSecrets`) and (b) on a gateway with
//! the real `Vault` on SQLite (tenant acme's own key, `BENCH_TENANTS` other tenants in the
//! vault, default 300). Per request (b) pays the secret lookup and decrypt plus the values
//! used to redact echoed secrets (`TenantSecrets::secret_and_values`: one read of the
//! tenant's rows). Rounds alternate (a) and (b)
//! so both see the same machine state; p50/p90 of each and the difference are printed.
//!
//! `cargo bench -p cambot-agent --bench vault_request` (env: BENCH_REQUESTS per side, default
//! 4,000; BENCH_ROUNDS, default 20).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use cambot_agent::vault;
use cambot_agent::vault::Vault;
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
use cambot_gateway::TenantSecrets;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_testkit::standin::Standin;
use serde_json::json;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentiles(mut ns: Vec<u128>) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.9))
}

fn upstream(base_url: &str) -> ModelUpstream {
    ModelUpstream {
        name: "anthropic".into(),
        dialect: "anthropic".into(),
        base_url: base_url.into(),
        credential: Some(ModelCredential::with_legacy(
            "anthropic",
            Some(Secret::new("sk-host-legacy-000111222")),
        )),
    }
}

fn bind(gateway: &Arc<Gateway>, dir: &Path, tenant: &str) -> RunSocket {
    let run_id = RunId::from_bytes(rand::random());
    let path = dir.join(format!("{}.sock", &run_id.as_str()[..8]));
    RunSocket::bind(
        Arc::clone(gateway),
        RunIdentity {
            run_id,
            tenant: TenantId::new(tenant).unwrap(),
            folder: GroupFolder::new("main").unwrap(),
            chat_jid: ChatJid::new("main@g.us").unwrap(),
            model_provider: None,
        },
        &path,
        None,
        RunBudget {
            model_requests: u32::MAX,
            tokens: u64::MAX,
            wall_clock: Duration::from_secs(86_400),
        },
    )
    .unwrap()
}

/// One model request on `socket`, as the runner sends it; its latency in ns.
async fn request(socket: &RunSocket, body: &serde_json::Value) -> u128 {
    let start = Instant::now();
    let r = cambot_testkit::uds::request(
        socket.path(),
        "POST",
        "/v1/model/anthropic/v1/messages",
        &[(RUN_TOKEN_HEADER, socket.token())],
        Some(body),
    )
    .await
    .unwrap();
    let ns = start.elapsed().as_nanos();
    assert_eq!(r.status, 200, "{}", r.body);
    ns
}

#[tokio::main]
async fn main() {
    let tenants = env_usize("BENCH_TENANTS", 300);
    let per_side = env_usize("BENCH_REQUESTS", 4_000);
    let rounds = env_usize("BENCH_ROUNDS", 20).max(1);
    let per_round = (per_side / rounds).max(1);

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
    let location = vault::KeyLocation {
        source: vault::KeySource::EnvFile,
        path: dir.path().join("keys/master.key"),
        looked: Vec::new(),
    };
    let key = vault::load_key(store.as_ref(), location, true, None)
        .await
        .unwrap()
        .unwrap();
    let vault = Arc::new(Vault::open(store.clone(), key).await.unwrap());
    for i in 0..tenants {
        let t = TenantId::new(&format!("t{i}")).unwrap();
        let value = Secret::new(format!("sk-ant-api03-{t}-{}", "x".repeat(80)));
        vault.set(&t, "anthropic", &value, None).await.unwrap();
    }
    let acme = TenantId::new("acme").unwrap();
    let acme_key = Secret::new(format!("sk-ant-api03-acme-{}", "y".repeat(80)));
    vault
        .set(&acme, "anthropic", &acme_key, None)
        .await
        .unwrap();

    let standin = Standin::anthropic()
        .fast_echo()
        .without_recording()
        .start_tcp()
        .await
        .unwrap();
    let ipc = Arc::new(IpcService::new(
        store.clone() as Arc<dyn Store>,
        DataLayout::new(dir.path()),
        Arc::new(|| {}),
        chrono_tz::UTC,
        Arc::new(|_| Box::pin(async {})),
        SendLimits::default(),
    ));
    let plain = Gateway::builder(
        Arc::clone(&ipc),
        vec![upstream(&standin.base_url())],
        GatewayPolicy::standard(),
    )
    .build()
    .unwrap();
    let with_vault = Gateway::builder(
        ipc,
        vec![upstream(&standin.base_url())],
        GatewayPolicy::standard(),
    )
    .secrets(Arc::clone(&vault) as Arc<dyn TenantSecrets>)
    .build()
    .unwrap();
    let a = bind(&plain, dir.path(), "default");
    let b = bind(&with_vault, dir.path(), "acme");
    let body = json!({"model": "m", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi"}]});

    for _ in 0..per_round {
        request(&a, &body).await;
        request(&b, &body).await;
    }
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first, so neither always follows the other.
        let order: [(&RunSocket, bool); 2] = if round % 2 == 0 {
            [(&a, false), (&b, true)]
        } else {
            [(&b, true), (&a, false)]
        };
        for (socket, is_vault) in order {
            for _ in 0..per_round {
                let ns = request(socket, &body).await;
                if is_vault {
                    with.push(ns);
                } else {
                    without.push(ns);
                }
            }
        }
    }
    // The vault's own part, alone: the one read + decrypt a request of acme makes.
    let mut alone = Vec::with_capacity(per_side);
    for _ in 0..per_side {
        let start = Instant::now();
        let (found, values) = vault.get_with_values(&acme, "anthropic").await.unwrap();
        alone.push(start.elapsed().as_nanos());
        assert!(found.is_some() && values.len() == 1);
    }
    let n = with.len();
    let (a50, a90) = percentiles(without);
    let (b50, b90) = percentiles(with);
    println!(
        "model request through a run socket to a loopback stand-in: {n} per side, {rounds} interleaved rounds, {tenants} other tenants in the vault"
    );
    println!(
        "  without the vault (default tenant, legacy key): p50 {a50:>8.1} us  p90 {a90:>8.1} us"
    );
    println!(
        "  with the vault (acme's key + its values):       p50 {b50:>8.1} us  p90 {b90:>8.1} us"
    );
    println!(
        "  added by the vault:                             p50 {:>8.1} us  p90 {:>8.1} us",
        b50 - a50,
        b90 - a90
    );
    let (v50, v90) = percentiles(alone);
    println!(
        "  Vault::get_with_values alone (same run):        p50 {v50:>8.1} us  p90 {v90:>8.1} us"
    );
}
