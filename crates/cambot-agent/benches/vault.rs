//! Vault lookup cost per model request: `Vault::get` (one SQLite read of the row on the
//! blocking pool, then XChaCha20-Poly1305 open with the cached data key) next to the pieces:
//! the same store read alone, and the decrypt alone. p50/p90 per call, all in one run, on a
//! file database (WAL) with `BENCH_TENANTS` tenants × 1 secret (default 300).
//!
//! `cargo bench -p cambot-agent --bench vault` (env: BENCH_CALLS, default 20,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::Instant;

use cambot_agent::vault;
use cambot_agent::vault::Vault;
use cambot_core::SqliteStore;
use cambot_core::VaultStore;
use cambot_gateway::Secret;
use cambot_protocol::TenantId;

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

async fn measure<F, Fut>(calls: usize, mut f: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..calls / 10 {
        f(i).await;
    }
    let mut ns = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        f(i).await;
        ns.push(start.elapsed().as_nanos());
    }
    percentiles(ns)
}

#[tokio::main]
async fn main() {
    let tenants = env_usize("BENCH_TENANTS", 300);
    let calls = env_usize("BENCH_CALLS", 20_000);
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
    let vault = Vault::open(store.clone(), key).await.unwrap();
    let ids: Vec<TenantId> = (0..tenants)
        .map(|i| TenantId::new(&format!("t{i}")).unwrap())
        .collect();
    for t in &ids {
        let value = Secret::new(format!("sk-ant-api03-{}-{}", t, "x".repeat(80)));
        vault.set(t, "anthropic", &value, None).await.unwrap();
    }

    let (get50, get90) = measure(calls, |i| {
        let (vault, t) = (&vault, &ids[i % ids.len()]);
        async move {
            let found = vault.get(t, "anthropic").await.unwrap().unwrap();
            std::hint::black_box(found.value.expose().len());
        }
    })
    .await;
    let (read50, read90) = measure(calls, |i| {
        let (store, t) = (&store, &ids[i % ids.len()]);
        async move {
            let row = store.vault_secret(t, "anthropic").await.unwrap().unwrap();
            std::hint::black_box(row.ciphertext.len());
        }
    })
    .await;
    let (none50, none90) = measure(calls, |_| async {
        std::hint::black_box(Option::<Secret>::None);
    })
    .await;
    println!("vault lookup per model request, {tenants} tenants x 1 secret, {calls} calls each");
    println!("  without the vault       p50 {none50:>7.2} us  p90 {none90:>7.2} us");
    println!("  store read of the row   p50 {read50:>7.2} us  p90 {read90:>7.2} us");
    println!("  Vault::get (read+open)  p50 {get50:>7.2} us  p90 {get90:>7.2} us");
}
