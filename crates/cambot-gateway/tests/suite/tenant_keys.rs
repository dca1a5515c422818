//! Model keys per run tenant: each run's upstream request carries its own tenant's key from
//! the vault, never another's; a tenant without the key gets a clear, non-retryable refusal
//! and nothing leaves the host; the environment's key serves the default tenant only; what
//! the upstream echoes back is redacted. Checked at loopback stand-ins.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cambot_gateway::Gateway;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::ModelCredential;
use cambot_gateway::ModelUpstream;
use cambot_gateway::RunBudget;
use cambot_gateway::Secret;
use cambot_testkit::secrets::MapSecrets;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::uds::UdsResponse;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::proxy_world::ProxyWorld;
use super::proxy_world::call_on;

const ACME_KEY: &str = "sk-acme-0123456789abcdef";
const GLOBEX_KEY: &str = "sk-globex-fedcba9876543210";
const HOST_KEY: &str = "sk-host-legacy-000111222";
const ACME_GITHUB: &str = "ghp_acme_github_token_42";

fn unlimited() -> RunBudget {
    RunBudget {
        model_requests: u32::MAX,
        tokens: u64::MAX,
        wall_clock: Duration::from_secs(86_400),
    }
}

fn chat() -> Value {
    json!({"model": "m", "max_tokens": 64, "stream": true,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// `name` of `dialect` at `base_url`: the vault's secret `name`, the host's legacy key.
fn upstream(name: &str, dialect: &str, base_url: &str) -> ModelUpstream {
    ModelUpstream {
        name: name.into(),
        dialect: dialect.into(),
        base_url: base_url.into(),
        credential: Some(ModelCredential::with_legacy(
            name,
            Some(Secret::new(HOST_KEY)),
        )),
    }
}

fn vault() -> Arc<MapSecrets> {
    Arc::new(
        MapSecrets::new()
            .with("acme", "anthropic", ACME_KEY)
            .with("acme", "gpt", ACME_KEY)
            .with("acme", "github", ACME_GITHUB)
            .with("globex", "anthropic", GLOBEX_KEY)
            .with("globex", "gpt", GLOBEX_KEY),
    )
}

async fn world(
    upstreams: Vec<ModelUpstream>,
    secrets: Arc<MapSecrets>,
    tenant: &str,
) -> ProxyWorld {
    ProxyWorld::with(
        move |ipc| Gateway::builder(ipc, upstreams, GatewayPolicy::standard()).secrets(secrets),
        tenant,
        unlimited(),
    )
    .await
}

fn message(r: &UdsResponse) -> &str {
    r.body["error"]["message"].as_str().unwrap_or_default()
}

fn no_retry(r: &UdsResponse) -> Option<&str> {
    r.headers.get("x-should-retry").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn two_tenants_runs_each_carry_their_own_tenants_key() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let gpt = Standin::openai().fast_echo().start_tcp().await.unwrap();
    let w = world(
        vec![
            upstream("anthropic", "anthropic", &claude.base_url()),
            upstream("gpt", "openai", &gpt.base_url()),
        ],
        vault(),
        "acme",
    )
    .await;
    let globex = w.run("globex", unlimited());
    // Interleaved on one gateway: no key leaks from one tenant's call to the next.
    for round in 0..2 {
        for (socket, tenant) in [(&w.socket, "acme"), (&globex, "globex")] {
            let r = call_on(
                socket,
                "POST",
                "/v1/model/anthropic/v1/messages",
                &[],
                Some(&chat()),
            )
            .await;
            assert_eq!(r.status, 200, "{tenant} round {round}: {}", r.body);
            let r = call_on(
                socket,
                "POST",
                "/v1/model/gpt/chat/completions",
                &[],
                Some(&chat()),
            )
            .await;
            assert_eq!(r.status, 200, "{tenant} round {round}: {}", r.body);
        }
    }
    let keys: Vec<String> = claude
        .requests()
        .iter()
        .map(|r| r.header("x-api-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, [ACME_KEY, GLOBEX_KEY, ACME_KEY, GLOBEX_KEY]);
    let bearers: Vec<String> = gpt
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    let (acme, globex) = (format!("Bearer {ACME_KEY}"), format!("Bearer {GLOBEX_KEY}"));
    assert_eq!(bearers, [acme.clone(), globex.clone(), acme, globex]);
    for r in claude.requests().iter().chain(gpt.requests().iter()) {
        let all = format!("{:?}", r.headers);
        assert!(
            !all.contains(HOST_KEY),
            "the host's key never serves a tenant: {all}"
        );
    }
}

#[tokio::test]
async fn a_run_calls_only_the_provider_its_model_choice_names() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let gpt = Standin::openai().fast_echo().start_tcp().await.unwrap();
    let w = world(
        vec![
            upstream("anthropic", "anthropic", &claude.base_url()),
            upstream("gpt", "openai", &gpt.base_url()),
        ],
        vault(),
        "acme",
    )
    .await;
    let run = w.run_of_provider("acme", "gpt");
    let own = call_on(
        &run,
        "POST",
        "/v1/model/gpt/chat/completions",
        &[],
        Some(&chat()),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let other = call_on(
        &run,
        "POST",
        "/v1/model/anthropic/v1/messages",
        &[],
        Some(&chat()),
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(
        message(&other).contains("only its own provider"),
        "{}",
        other.body
    );
    assert_eq!(
        claude.requests().len(),
        0,
        "nothing reached the other upstream"
    );
    assert_eq!(gpt.requests().len(), 1);
}

#[tokio::test]
async fn a_tenant_without_the_secret_gets_a_clear_refusal_and_nothing_is_sent() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let w = world(
        vec![upstream("anthropic", "anthropic", &claude.base_url())],
        vault(),
        "initech",
    )
    .await;
    let r = w
        .call(
            "POST",
            "/v1/model/anthropic/v1/messages",
            &[],
            Some(&chat()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(message(&r), "tenant initech has no secret 'anthropic'");
    assert_eq!(r.body["error"]["kind"], "missing_secret");
    assert_eq!(no_retry(&r), Some("false"), "waiting does not add a secret");
    assert_eq!(claude.request_count(), 0, "no request left the host");
    let stats = w.gateway.stats();
    assert_eq!(stats.missing_secret.load(Ordering::Relaxed), 1);
    assert_eq!(stats.non_local(), 0);
}

#[tokio::test]
async fn the_legacy_key_serves_the_default_tenant_only() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let secrets = Arc::new(MapSecrets::new());
    let w = world(
        vec![upstream("anthropic", "anthropic", &claude.base_url())],
        Arc::clone(&secrets),
        "default",
    )
    .await;
    let acme = w.run("acme", unlimited());
    let path = "/v1/model/anthropic/v1/messages";
    let r = w.call("POST", path, &[], Some(&chat())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call_on(&acme, "POST", path, &[], Some(&chat())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(message(&r), "tenant acme has no secret 'anthropic'");
    // Once the default tenant has its own secret, the vault wins over the environment.
    secrets.set("default", "anthropic", "sk-default-vault-key-1", None);
    let r = w.call("POST", path, &[], Some(&chat())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let keys: Vec<String> = claude
        .requests()
        .iter()
        .map(|r| r.header("x-api-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, [HOST_KEY, "sk-default-vault-key-1"]);
}

#[tokio::test]
async fn an_unreadable_vault_stops_the_call_without_a_retry() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let secrets = vault();
    let w = world(
        vec![upstream("anthropic", "anthropic", &claude.base_url())],
        Arc::clone(&secrets),
        "default",
    )
    .await;
    secrets.fail_reads(true);
    let r = w
        .call(
            "POST",
            "/v1/model/anthropic/v1/messages",
            &[],
            Some(&chat()),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body["error"]["kind"], "vault");
    assert_eq!(no_retry(&r), Some("false"));
    assert_eq!(claude.request_count(), 0, "not even the legacy key is used");
    assert_eq!(w.gateway.stats().vault_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_upstream_without_a_key_needs_no_secret() {
    let llama = Standin::openai().fast_echo().start_tcp().await.unwrap();
    let local = ModelUpstream {
        credential: None,
        ..upstream("local", "openai", &llama.base_url())
    };
    let w = world(vec![local], vault(), "initech").await;
    let r = w
        .call(
            "POST",
            "/v1/model/local/chat/completions",
            &[],
            Some(&chat()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(llama.request(0).unwrap().header("authorization"), None);
}

/// Credential-looking headers a sandbox might try to smuggle out.
const SMUGGLED: &[(&str, &str)] = &[
    ("authorization", "Bearer run-made-up"),
    ("x-api-key", "sk-stolen-by-the-run"),
    ("proxy-authorization", "Basic eDp5"),
    ("cookie", "session=abc"),
    ("x-goog-api-key", "AIza-run"),
    ("api-key", "azure-run"),
    ("x-auth-token", "tok-run"),
    ("x-amz-security-token", "amz-run"),
    ("openai-organization", "org-run"),
    ("x-forwarded-for", "10.0.0.1"),
];

#[tokio::test]
async fn sandbox_headers_never_pass_only_the_run_tenants_key() {
    let claude = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let gpt = Standin::openai().fast_echo().start_tcp().await.unwrap();
    let w = world(
        vec![
            upstream("anthropic", "anthropic", &claude.base_url()),
            upstream("gpt", "openai", &gpt.base_url()),
        ],
        vault(),
        "acme",
    )
    .await;
    for path in [
        "/v1/model/anthropic/v1/messages",
        "/v1/model/gpt/chat/completions",
    ] {
        let r = w.call("POST", path, SMUGGLED, Some(&chat())).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let seen = claude.request(0).unwrap();
    let mut names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "anthropic-version",
            "content-length",
            "content-type",
            "host",
            "x-api-key"
        ]
    );
    assert_eq!(seen.header("x-api-key"), Some(ACME_KEY));
    let seen = gpt.request(0).unwrap();
    let mut names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "authorization",
            "content-length",
            "content-type",
            "host"
        ]
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {ACME_KEY}").as_str())
    );
    for r in [claude.request(0).unwrap(), gpt.request(0).unwrap()] {
        let all = format!("{:?}", r.headers);
        for (_, value) in SMUGGLED {
            assert!(!all.contains(value), "{value} reached the upstream: {all}");
        }
    }
}

#[tokio::test]
async fn secret_values_echoed_by_the_upstream_are_redacted_and_usage_still_counts() {
    // Every answer costs 400 + 50 tokens and echoes the tenant's key (in the text and a
    // header), cut into 3-byte chunks so the key straddles chunk boundaries.
    let echoed = format!("your key {ACME_KEY} and token {ACME_GITHUB} and {GLOBEX_KEY}");
    let claude = Standin::anthropic()
        .fallback(
            Script::text(&echoed)
                .usage(400, 50)
                .header("request-id", &format!("req-{ACME_KEY}"))
                .byte_chunks(3),
        )
        .start_tcp()
        .await
        .unwrap();
    let w = ProxyWorld::with(
        |ipc| {
            Gateway::builder(
                ipc,
                vec![upstream("anthropic", "anthropic", &claude.base_url())],
                GatewayPolicy::standard(),
            )
            .secrets(vault())
        },
        "acme",
        RunBudget {
            tokens: 1000,
            ..unlimited()
        },
    )
    .await;
    let path = "/v1/model/anthropic/v1/messages";
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = w.call("POST", path, &[], Some(&chat())).await;
        statuses.push(r.status);
        if r.status != 200 {
            continue;
        }
        let text = String::from_utf8_lossy(&r.raw);
        assert!(!text.contains(ACME_KEY), "{text}");
        assert!(
            !text.contains(ACME_GITHUB),
            "every value of the tenant: {text}"
        );
        assert!(text.contains(" [REDACTED]"), "{text}");
        assert!(
            text.contains(GLOBEX_KEY),
            "only the run tenant's own values are searched for"
        );
        assert_eq!(
            r.headers.get("request-id").unwrap().to_str().unwrap(),
            "req-[REDACTED]"
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "usage metered through redaction"
    );
    assert!(w.gateway.stats().redacted.load(Ordering::Relaxed) >= 9);
}
