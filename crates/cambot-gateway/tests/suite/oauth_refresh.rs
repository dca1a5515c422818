//! The OAuth refresh of fetch credentials, on the host, against loopback stand-ins (a token
//! endpoint and a resource, both counting calls): an expired token is refreshed once before
//! the fetch, a 401 refreshes and retries once, a failed refresh is a clear error without a
//! loop, the new tokens land in the vault, and concurrent refreshes collapse into one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::routing::post;
use cambot_gateway::FetchCredential;
use cambot_gateway::FetchCredentialSpec;
use cambot_gateway::OAuthSpec;
use cambot_gateway::RunBudget;
use cambot_testkit::secrets::MapSecrets;
use pretty_assertions::assert_eq;
use tokio::sync::watch;

use super::fetch_credentials::fetch;
use super::fetch_credentials::fetch_world;

/// The token endpoint and the resource it guards, sharing the currently valid token.
#[derive(Clone)]
struct Auth {
    valid: Arc<Mutex<String>>,
    /// Token requests received / answered.
    received: Arc<AtomicUsize>,
    /// Resource requests, with the authorization each carried.
    seen: Arc<Mutex<Vec<String>>>,
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// The token endpoint answers 400 invalid_grant.
    fail: bool,
    /// The token endpoint waits until this is true.
    open: watch::Receiver<bool>,
    /// Issues tokens without making them valid at the resource.
    useless_tokens: bool,
}

struct Servers {
    auth: Auth,
    gate: watch::Sender<bool>,
    token_url: String,
    resource: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn token(State(auth): State<Auth>, body: Bytes) -> axum::response::Response {
    let n = auth.received.fetch_add(1, Ordering::SeqCst) + 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    auth.forms.lock().unwrap().push(form);
    let mut open = auth.open.clone();
    let _ = open.wait_for(|o| *o).await;
    if auth.fail {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant", "error_description": "refresh token revoked"}))).into_response();
    }
    let access = format!("tok-new-{n}-abcdefgh");
    if !auth.useless_tokens {
        *auth.valid.lock().unwrap() = access.clone();
    }
    axum::Json(serde_json::json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": format!("refresh-new-{n}")
    }))
    .into_response()
}

async fn resource(State(auth): State<Auth>, headers: HeaderMap) -> axum::response::Response {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    auth.seen.lock().unwrap().push(given.clone());
    if given == format!("Bearer {}", auth.valid.lock().unwrap()) {
        (StatusCode::OK, "the data").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "who are you").into_response()
    }
}

async fn serve(router: Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, task)
}

async fn servers(valid: &str, fail: bool, useless_tokens: bool, open: bool) -> Servers {
    let (gate, rx) = watch::channel(open);
    let auth = Auth {
        valid: Arc::new(Mutex::new(valid.to_owned())),
        received: Arc::default(),
        seen: Arc::default(),
        forms: Arc::default(),
        fail,
        open: rx,
        useless_tokens,
    };
    let (tp, t1) = serve(
        Router::new()
            .route("/oauth/token", post(token))
            .with_state(auth.clone()),
    )
    .await;
    let (rp, t2) = serve(
        Router::new()
            .route("/data", get(resource))
            .with_state(auth.clone()),
    )
    .await;
    Servers {
        auth,
        gate,
        token_url: format!("http://127.0.0.1:{tp}/oauth/token"),
        resource: format!("http://127.0.0.1:{rp}"),
        tasks: vec![t1, t2],
    }
}

fn oauth_rule(s: &Servers) -> FetchCredential {
    FetchCredential::parse(&FetchCredentialSpec {
        host: s.resource.clone(),
        header: "authorization".into(),
        value: "Bearer secret:api".into(),
        oauth: Some(OAuthSpec {
            token_url: s.token_url.clone(),
            client_id: "cambot-test".into(),
            client_secret: Some("secret:api-client".into()),
            refresh_token: "secret:api-refresh".into(),
        }),
    })
    .unwrap()
}

/// acme's vault: the access token (expiring at `expires_ms`), its refresh token and client
/// secret.
fn vault(access: &str, expires_ms: Option<i64>) -> Arc<MapSecrets> {
    let v = MapSecrets::new()
        .with("acme", "api-refresh", "refresh-old-0123")
        .with("acme", "api-client", "client-secret-0123");
    v.set("acme", "api", access, expires_ms);
    Arc::new(v)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_stored() {
    let s = servers("nothing-valid-yet", false, false, true).await;
    let secrets = vault("tok-expired-0123", Some(1));
    // The token endpoint is allowed because the rule names it; only the resource is listed.
    let w = fetch_world(
        std::slice::from_ref(&s.resource),
        Arc::clone(&secrets),
        vec![("acme", vec![oauth_rule(&s)])],
        "acme",
    )
    .await;
    let url = format!("{}/data", s.resource);
    let r = fetch(&w.socket, &url, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], 200, "{}", r.body);
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 1);
    assert_eq!(
        *s.auth.seen.lock().unwrap(),
        ["Bearer tok-new-1-abcdefgh"],
        "the expired token was never sent"
    );
    let form = s.auth.forms.lock().unwrap()[0].clone();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "refresh-old-0123");
    assert_eq!(form["client_id"], "cambot-test");
    assert_eq!(form["client_secret"], "client-secret-0123");

    let (access, expires) = secrets.get("acme", "api").unwrap();
    assert_eq!(access, "tok-new-1-abcdefgh");
    assert!(expires.unwrap() > now_ms(), "expiry from expires_in");
    assert_eq!(
        secrets.get("acme", "api-refresh").unwrap().0,
        "refresh-new-1"
    );
    assert_eq!(
        secrets.stores(),
        [
            ("acme".to_owned(), "api".to_owned()),
            ("acme".to_owned(), "api-refresh".to_owned())
        ]
    );
    // Fresh now: the next fetch uses it without a refresh.
    let r = fetch(&w.socket, &url, &[]).await;
    assert_eq!(r.body["status"], 200, "{}", r.body);
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 1);
    assert_eq!(w.gateway.stats().oauth_refreshes.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let s = servers("someone-elses-token", false, false, true).await;
    let secrets = vault("tok-revoked-0123", None);
    let w = fetch_world(
        std::slice::from_ref(&s.resource),
        Arc::clone(&secrets),
        vec![("acme", vec![oauth_rule(&s)])],
        "acme",
    )
    .await;
    let r = fetch(&w.socket, &format!("{}/data", s.resource), &[]).await;
    assert_eq!(r.body["status"], 200, "{}", r.body);
    assert_eq!(r.body["body"], "the data");
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 1);
    assert_eq!(
        *s.auth.seen.lock().unwrap(),
        ["Bearer tok-revoked-0123", "Bearer tok-new-1-abcdefgh"]
    );
    assert_eq!(secrets.get("acme", "api").unwrap().0, "tok-new-1-abcdefgh");
}

#[tokio::test]
async fn a_second_401_goes_back_to_the_agent_without_another_refresh() {
    let s = servers("never-valid", false, true, true).await;
    let w = fetch_world(
        std::slice::from_ref(&s.resource),
        vault("tok-revoked-0123", None),
        vec![("acme", vec![oauth_rule(&s)])],
        "acme",
    )
    .await;
    let r = fetch(&w.socket, &format!("{}/data", s.resource), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], 401, "{}", r.body);
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(s.auth.seen.lock().unwrap().len(), 2, "one retry");
}

#[tokio::test]
async fn a_failed_refresh_is_a_clear_error_without_a_loop() {
    let s = servers("never-valid", true, false, true).await;
    let secrets = vault("tok-revoked-0123", None);
    let w = fetch_world(
        std::slice::from_ref(&s.resource),
        Arc::clone(&secrets),
        vec![("acme", vec![oauth_rule(&s)])],
        "acme",
    )
    .await;
    let r = fetch(&w.socket, &format!("{}/data", s.resource), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the OAuth refresh of tenant acme's 'api' at {} answered 400: invalid_grant",
            s.token_url
        )),
        "{message}"
    );
    assert!(
        !message.contains("revoked"),
        "the endpoint's prose is not repeated: {message}"
    );
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 1);
    assert_eq!(s.auth.seen.lock().unwrap().len(), 1);
    assert!(secrets.stores().is_empty(), "nothing stored");
    // An expired token with a failing refresh: the resource is never asked.
    secrets.set("acme", "api", "tok-expired-0123", Some(1));
    let r = fetch(&w.socket, &format!("{}/data", s.resource), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(s.auth.received.load(Ordering::SeqCst), 2);
    assert_eq!(s.auth.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_rule_collapse_into_one() {
    let s = servers("nothing-valid-yet", false, false, false).await;
    let secrets = vault("tok-expired-0123", Some(1));
    let w = fetch_world(
        std::slice::from_ref(&s.resource),
        Arc::clone(&secrets),
        vec![("acme", vec![oauth_rule(&s)])],
        "acme",
    )
    .await;
    let second = w.run("acme", RunBudget::default());
    let url = format!("{}/data", s.resource);
    let (a, b) = (fetch(&w.socket, &url, &[]), fetch(&second, &url, &[]));
    let released = async {
        // Both fetches have read the expired token and one refresh is at the endpoint (held
        // there): without the per-rule lock the other would be at the endpoint too.
        while secrets.lookups("acme", "api") < 3 || s.auth.received.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        s.gate.send_replace(true);
    };
    let (ra, rb, ()) = tokio::join!(a, b, released);
    assert_eq!(ra.body["status"], 200, "{}", ra.body);
    assert_eq!(rb.body["status"], 200, "{}", rb.body);
    assert_eq!(
        s.auth.received.load(Ordering::SeqCst),
        1,
        "one refresh for both"
    );
    assert_eq!(
        *s.auth.seen.lock().unwrap(),
        ["Bearer tok-new-1-abcdefgh", "Bearer tok-new-1-abcdefgh"]
    );
}
