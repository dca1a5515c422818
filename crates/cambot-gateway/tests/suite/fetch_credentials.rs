//! Fetch credentials per run tenant: a hop whose scheme + host + port is exactly a rule's
//! origin carries the run tenant's header, no other hop (a redirect elsewhere drops it) and no
//! other tenant's run; a missing secret refuses the fetch before any connection; the run's own
//! headers never go out; secret values coming back are redacted. Checked at loopback targets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cambot_gateway::FetchAllow;
use cambot_gateway::FetchCredential;
use cambot_gateway::FetchCredentialSpec;
use cambot_gateway::Gateway;
use cambot_gateway::GatewayBuilder;
use cambot_gateway::GatewayPolicy;
use cambot_gateway::IpcService;
use cambot_gateway::RunBudget;
use cambot_gateway::RunSocket;
use cambot_protocol::TenantId;
use cambot_testkit::http_target::Answer;
use cambot_testkit::http_target::HttpTarget;
use cambot_testkit::secrets::MapSecrets;
use cambot_testkit::uds::UdsResponse;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::proxy_world::ProxyWorld;
use super::proxy_world::call_on;

const ACME_TOKEN: &str = "tok-acme-api-0123456789";
const GLOBEX_TOKEN: &str = "tok-globex-api-9876543210";

/// A rule setting `header: value` on `origin`.
pub(crate) fn rule(origin: &str, header: &str, value: &str) -> FetchCredential {
    FetchCredential::parse(&FetchCredentialSpec {
        host: origin.into(),
        header: header.into(),
        value: value.into(),
        oauth: None,
    })
    .unwrap()
}

pub(crate) fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

/// A gateway allowing fetches to `allow`, reading `secrets`, with `rules` per tenant; one
/// run of `run_tenant`.
pub(crate) async fn fetch_world(
    allow: &[String],
    secrets: Arc<MapSecrets>,
    rules: Vec<(&str, Vec<FetchCredential>)>,
    run_tenant: &str,
) -> ProxyWorld {
    let mut policy = GatewayPolicy::standard();
    policy.fetch.allow = allow
        .iter()
        .map(|a| FetchAllow::parse(a).unwrap())
        .collect();
    let rules: Vec<(TenantId, Vec<FetchCredential>)> =
        rules.into_iter().map(|(t, r)| (tenant(t), r)).collect();
    ProxyWorld::with(
        move |ipc: Arc<IpcService>| {
            let mut b: GatewayBuilder = Gateway::builder(ipc, Vec::new(), policy).secrets(secrets);
            for (t, r) in rules {
                b = b.fetch_credentials(t, r);
            }
            b
        },
        run_tenant,
        RunBudget::default(),
    )
    .await
}

pub(crate) async fn fetch(socket: &RunSocket, url: &str, headers: &[(&str, &str)]) -> UdsResponse {
    call_on(
        socket,
        "POST",
        "/v1/fetch",
        headers,
        Some(&json!({ "url": url })),
    )
    .await
}

fn origin(t: &HttpTarget) -> String {
    format!("http://127.0.0.1:{}", t.port())
}

fn has_header(head: &str, line: &str) -> bool {
    head.lines().any(|l| l.eq_ignore_ascii_case(line))
}

#[tokio::test]
async fn only_the_rules_exact_origin_gets_the_run_tenants_header() {
    let other = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"elsewhere"))
        .await
        .unwrap();
    let other_url = format!("{}/next", origin(&other));
    let api = HttpTarget::start(move |path| match path {
        "/away" => Answer::redirect(&other_url),
        _ => Answer::ok("text/plain", &[], b"api"),
    })
    .await
    .unwrap();
    let secrets = Arc::new(MapSecrets::new().with("acme", "api", ACME_TOKEN).with(
        "globex",
        "api",
        GLOBEX_TOKEN,
    ));
    let api_rule = rule(&origin(&api), "authorization", "Bearer secret:api");
    let w = fetch_world(
        &[origin(&api), origin(&other)],
        secrets,
        vec![("acme", vec![api_rule.clone()]), ("globex", vec![api_rule])],
        "acme",
    )
    .await;
    let globex = w.run("globex", RunBudget::default());
    let initech = w.run("initech", RunBudget::default());

    let r = fetch(&w.socket, &format!("{}/data", origin(&api)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fetch(&globex, &format!("{}/data", origin(&api)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fetch(&initech, &format!("{}/data", origin(&api)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A redirect to another origin: the header stays behind.
    let r = fetch(&w.socket, &format!("{}/away", origin(&api)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["body"], "elsewhere");

    let heads = api.heads();
    assert_eq!(heads.len(), 4);
    assert!(
        has_header(&heads[0], &format!("authorization: Bearer {ACME_TOKEN}")),
        "{}",
        heads[0]
    );
    assert!(
        has_header(&heads[1], &format!("authorization: Bearer {GLOBEX_TOKEN}")),
        "{}",
        heads[1]
    );
    assert!(
        !heads[2].to_ascii_lowercase().contains("authorization"),
        "a tenant without the rule: {}",
        heads[2]
    );
    assert!(
        has_header(&heads[3], &format!("authorization: Bearer {ACME_TOKEN}")),
        "{}",
        heads[3]
    );
    let elsewhere = other.heads();
    assert_eq!(elsewhere.len(), 1);
    assert!(
        !elsewhere[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        elsewhere[0]
    );
    assert!(!elsewhere[0].contains(ACME_TOKEN));
}

#[tokio::test]
async fn a_missing_secret_refuses_the_fetch_before_any_connection() {
    let api = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"api"))
        .await
        .unwrap();
    let w = fetch_world(
        &[origin(&api)],
        Arc::new(MapSecrets::new()),
        vec![("acme", vec![rule(&origin(&api), "x-api-key", "secret:api")])],
        "acme",
    )
    .await;
    let r = fetch(&w.socket, &format!("{}/data", origin(&api)), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["error"]["message"],
        "fetch refused: tenant acme has no secret 'api'"
    );
    assert_eq!(api.accepted(), 0, "no connection was made");
    assert_eq!(w.gateway.stats().missing_secret.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_redirect_back_into_the_rules_origin_is_checked_for_the_secret_again() {
    // The first hop needs no credential; the redirect lands on an origin whose rule's
    // secret is missing: refused at that hop, which is never connected.
    let api = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"api"))
        .await
        .unwrap();
    let api_url = format!("{}/data", origin(&api));
    let open = HttpTarget::start(move |_| Answer::redirect(&api_url))
        .await
        .unwrap();
    let w = fetch_world(
        &[origin(&api), origin(&open)],
        Arc::new(MapSecrets::new()),
        vec![("acme", vec![rule(&origin(&api), "x-api-key", "secret:api")])],
        "acme",
    )
    .await;
    let r = fetch(&w.socket, &format!("{}/go", origin(&open)), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant acme has no secret 'api'"),
        "{}",
        r.body
    );
    assert_eq!(open.accepted(), 1);
    assert_eq!(api.accepted(), 0);
}

#[tokio::test]
async fn the_runs_own_headers_never_reach_a_fetch_target() {
    let api = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"api"))
        .await
        .unwrap();
    let secrets = Arc::new(MapSecrets::new().with("acme", "api", ACME_TOKEN));
    let w = fetch_world(
        &[origin(&api)],
        secrets,
        vec![("acme", vec![rule(&origin(&api), "x-api-key", "secret:api")])],
        "acme",
    )
    .await;
    let smuggled = [
        ("authorization", "Bearer run-made-up"),
        ("x-api-key", "sk-stolen-by-the-run"),
        ("proxy-authorization", "Basic eDp5"),
        ("cookie", "session=abc"),
        ("x-goog-api-key", "AIza-run"),
        ("api-key", "azure-run"),
        ("x-auth-token", "tok-run"),
    ];
    let r = fetch(&w.socket, &format!("{}/data", origin(&api)), &smuggled).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let head = &api.heads()[0];
    let mut names: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["accept", "host", "user-agent", "x-api-key"],
        "{head}"
    );
    assert!(
        has_header(head, &format!("x-api-key: {ACME_TOKEN}")),
        "{head}"
    );
    for (_, value) in smuggled {
        assert!(!head.contains(value), "{value} reached the target: {head}");
    }
    assert!(
        !head.contains(w.socket.token()),
        "the run token stays on the host"
    );
}

#[tokio::test]
async fn secret_values_in_a_fetched_answer_are_redacted() {
    let etag = format!("\"{ACME_TOKEN}\"");
    // Long enough that the body arrives in several reads.
    let body = format!(
        "{}token={ACME_TOKEN};{}",
        "x".repeat(70_000),
        "y".repeat(70_000)
    );
    let api = HttpTarget::start(move |_| {
        Answer::ok("text/plain", &[("etag", etag.as_str())], body.as_bytes())
    })
    .await
    .unwrap();
    let secrets = Arc::new(MapSecrets::new().with("acme", "api", ACME_TOKEN));
    let w = fetch_world(&[origin(&api)], secrets, vec![], "acme").await;
    let r = fetch(&w.socket, &format!("{}/data", origin(&api)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.body["body"].as_str().unwrap();
    assert!(!text.contains(ACME_TOKEN));
    assert!(text.contains("token=[REDACTED];"));
    assert_eq!(r.body["headers"]["etag"], "\"[REDACTED]\"");
    assert_eq!(w.gateway.stats().redacted.load(Ordering::Relaxed), 2);
}
