//! External identity providers per tenant (`[[channels.web.issuers]]`): RS256 and ES256 keys
//! served by a real loopback JWKS endpoint, the tenant taken from the issuer that signed (never
//! from a claim), key rotation with a rate-limited refetch, and external users that never meet
//! local ones. Every refusal has its accepted control beside it, over HTTP and the WebSocket.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cambot_channels::web::IssuerConfig;
use cambot_channels::web::tokens::now_secs;
use cambot_protocol::TenantId;
use jsonwebtoken::Algorithm;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::Header;
use ring::signature::KeyPair;
use serde_json::Value;
use serde_json::json;

use super::support::WebDaemon;
use super::support::Ws;
use super::support::seed_users;
use super::support::start_in;
use super::support::tagging_runner;
use super::support::web_config;

/// Test-only RSA-2048 keys (PKCS#8), made with `openssl genpkey -algorithm RSA`: ring cannot
/// generate RSA keys, and the `rsa` crate carries an unfixed advisory (RUSTSEC-2023-0071).
const RSA_1: &str = include_str!("../../fixtures/rsa-test-1.pem");
const RSA_2: &str = include_str!("../../fixtures/rsa-test-2.pem");

const ISS_A: &str = "https://idp-a.test";
const ISS_B: &str = "https://idp-b.test";
const ISS_C: &str = "https://idp-c.test";

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jwk: Value,
    /// SubjectPublicKeyInfo PEM (EC keys only; for `key_file`).
    spki_pem: Option<String>,
}

fn rsa_key(pem: &str, kid: &str) -> TestKey {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = ring::rsa::KeyPair::from_pkcs8(&der).unwrap();
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
    TestKey {
        alg: Algorithm::RS256,
        kid: kid.into(),
        key: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
        }),
        spki_pem: None,
    }
}

/// A fresh P-256 key, generated here.
fn es256_key(kid: &str) -> TestKey {
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref().to_vec();
    // SPKI header of an id-ecPublicKey / prime256v1 key (RFC 5480).
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(&point);
    let b64 = STANDARD.encode(&spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    TestKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
        spki_pem: Some(format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )),
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A token from issuer `iss` for `sub`, signed by `key` under its kid; `extra` adds claims.
fn token(key: &TestKey, iss: &str, sub: &str, extra: Value) -> String {
    let now = now_secs();
    let mut c = json!({"iss": iss, "aud": "cambot", "sub": sub, "iat": now, "exp": now + 300});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &c, &key.key).unwrap()
}

/// A real HTTP server on loopback serving a JWKS that the test can swap, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: &[&TestKey]) -> Self {
        let set = Arc::new(Mutex::new(Value::Null));
        let hits = Arc::new(AtomicUsize::new(0));
        let (set2, hits2) = (Arc::clone(&set), Arc::clone(&hits));
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (set, hits) = (Arc::clone(&set2), Arc::clone(&hits2));
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(set.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = Self {
            url: format!("http://{addr}/jwks.json"),
            keys: set,
            hits,
        };
        server.serve(keys);
        server
    }

    /// Replaces the published set (a rotation at the identity provider).
    fn serve(&self, keys: &[&TestKey]) {
        let jwks: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.keys.lock().unwrap() = json!({ "keys": jwks });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn issuer(iss: &str, tenant: &str, jwks_url: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: "cambot".into(),
        tenant: TenantId::new(tenant).unwrap(),
        jwks_url: Some(jwks_url.into()),
        jwks_file: None,
        key_file: None,
        shared_secret_file: None,
        secret: None,
        resolved_secret: None,
        algorithms: Vec::new(),
        jwks_min_refresh_secs: 3600,
        jwks_max_age_secs: 3600,
    }
}

/// A daemon whose store already has these local users (and so their tenants).
async fn daemon(issuers: Vec<IssuerConfig>, users: &[(&str, &str)]) -> WebDaemon {
    let dir = tempfile::tempdir().unwrap();
    seed_users(&dir, users).await;
    let mut config = web_config();
    config.issuers = issuers;
    start_in(dir, tagging_runner(), config).await.unwrap()
}

async fn status(d: &WebDaemon, token: &str) -> u16 {
    d.get(token, "/api/sessions").await.status().as_u16()
}

/// `/api/me` over HTTP and the `ready` frame over the WebSocket: (tenant, user) for both.
async fn who(d: &WebDaemon, token: &str) -> [(String, String); 2] {
    let res = d.get(token, "/api/me").await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    let mut ws = Ws::connect(&d.ws_url(), None).await.unwrap();
    ws.send(json!({"type": "auth", "token": token})).await;
    let ready = ws.next_of("ready").await;
    assert_eq!(ready["type"], "ready", "{ready}");
    let pair = |v: &Value| {
        (
            v["tenant"].as_str().unwrap().to_owned(),
            v["user"].as_str().unwrap().to_owned(),
        )
    };
    [pair(&me), pair(&ready)]
}

/// Refused over HTTP (401) and over the WebSocket (closed without `ready`).
async fn refused(d: &WebDaemon, token: &str, why: &str) {
    assert_eq!(status(d, token).await, 401, "{why}: HTTP");
    let mut ws = Ws::connect(&d.ws_url(), None).await.unwrap();
    ws.send(json!({"type": "auth", "token": token})).await;
    assert!(ws.recv().await.is_none(), "{why}: the socket must close");
}

fn pair(tenant: &str, user: &str) -> [(String, String); 2] {
    let p = (tenant.to_owned(), user.to_owned());
    [p.clone(), p]
}

#[tokio::test]
async fn each_issuer_signs_for_its_own_tenant_whatever_the_tid_claim_says() {
    let rsa = rsa_key(RSA_1, "a-rsa");
    let ec = es256_key("b-ec");
    let pinned = es256_key("c-pem");
    let (jwks_a, jwks_b) = (
        JwksServer::start(&[&rsa]).await,
        JwksServer::start(&[&ec]).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("c.pem");
    std::fs::write(&pem, pinned.spki_pem.as_ref().unwrap()).unwrap();
    let mut c = issuer(ISS_C, "default", "unused");
    c.jwks_url = None;
    c.key_file = Some(pem);
    c.algorithms = vec![Algorithm::ES256];
    let d = daemon(
        vec![
            issuer(ISS_A, "acme", &jwks_a.url),
            issuer(ISS_B, "beta", &jwks_b.url),
            c,
        ],
        &[("acme", "seed"), ("beta", "seed")],
    )
    .await;

    // RS256 from A's JWKS lands in acme, ES256 from B's in beta, ES256 from a PEM key file in
    // default: over HTTP and the WebSocket, the user named by issuer.
    let a = token(&rsa, ISS_A, "alice", json!({}));
    assert_eq!(who(&d, &a).await, pair("acme", "https://idp-a.test|alice"));
    let b = token(&ec, ISS_B, "bob", json!({}));
    assert_eq!(who(&d, &b).await, pair("beta", "https://idp-b.test|bob"));
    let p = token(&pinned, ISS_C, "carl", json!({}));
    assert_eq!(
        who(&d, &p).await,
        pair("default", "https://idp-c.test|carl")
    );

    // A `tid` naming another tenant changes nothing: the issuer decides.
    let a_says_beta = token(&rsa, ISS_A, "alice", json!({"tid": "beta"}));
    assert_eq!(
        who(&d, &a_says_beta).await,
        pair("acme", "https://idp-a.test|alice")
    );
    let b_says_acme = token(&ec, ISS_B, "bob", json!({"tid": "acme"}));
    assert_eq!(
        who(&d, &b_says_acme).await,
        pair("beta", "https://idp-b.test|bob")
    );

    // An `iss` naming one issuer with a signature by another issuer's key: refused, whichever
    // kid the header names.
    refused(
        &d,
        &token(&ec, ISS_A, "alice", json!({})),
        "iss A, signed by B",
    )
    .await;
    let foreign = rsa_key(RSA_2, "a-rsa");
    refused(
        &d,
        &token(&foreign, ISS_A, "alice", json!({})),
        "iss A, A's kid, foreign key",
    )
    .await;
    refused(
        &d,
        &token(&rsa, ISS_B, "bob", json!({"tid": "beta"})),
        "iss B, signed by A",
    )
    .await;
    refused(
        &d,
        &token(&rsa, ISS_C, "carl", json!({})),
        "iss C (pinned key), signed by A",
    )
    .await;
    // An issuer nobody configured, and a configured one with the wrong audience.
    refused(
        &d,
        &token(&rsa, "https://idp-z.test", "alice", json!({})),
        "unknown issuer",
    )
    .await;
    refused(
        &d,
        &token(&rsa, ISS_A, "alice", json!({"aud": "other"})),
        "wrong aud",
    )
    .await;
    // Algorithm confusion: HS256 keyed with A's public modulus under A's kid.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("a-rsa".into());
    let n = URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().unwrap())
        .unwrap();
    let now = now_secs();
    let hs = jsonwebtoken::encode(
        &h,
        &json!({"iss": ISS_A, "aud": "cambot", "sub": "alice", "iat": now, "exp": now + 300}),
        &EncodingKey::from_secret(&n),
    )
    .unwrap();
    refused(&d, &hs, "HS256 with A's public key").await;
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn a_rotated_jwks_is_refetched_for_a_new_kid_and_a_removed_key_is_refused() {
    let old = rsa_key(RSA_1, "2024-rsa");
    let new_rsa = rsa_key(RSA_2, "2025-rsa");
    let new_ec = es256_key("2025-ec");
    let jwks = JwksServer::start(&[&old]).await;
    let mut cfg = issuer(ISS_A, "acme", &jwks.url);
    cfg.jwks_min_refresh_secs = 1;
    let d = daemon(vec![cfg], &[("acme", "seed")]).await;

    let before = token(&old, ISS_A, "alice", json!({}));
    assert_eq!(status(&d, &before).await, 200);
    assert_eq!(jwks.hits(), 1, "fetched on first use");
    // The provider rotates: the old key is gone, two new ones (RS256, ES256) are published.
    jwks.serve(&[&new_rsa, &new_ec]);
    // Past the refetch interval, a new kid makes cambot fetch the set again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rsa_token = token(&new_rsa, ISS_A, "alice", json!({}));
    assert_eq!(
        who(&d, &rsa_token).await,
        pair("acme", "https://idp-a.test|alice")
    );
    assert_eq!(jwks.hits(), 2, "one refetch for the new kid");
    let ec_token = token(&new_ec, ISS_A, "alice", json!({}));
    assert_eq!(
        who(&d, &ec_token).await,
        pair("acme", "https://idp-a.test|alice")
    );
    // The removed key no longer verifies, though its token has not expired.
    refused(&d, &before, "signed by the removed key").await;
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn unknown_kids_do_not_refetch_the_jwks_within_the_interval() {
    let known = es256_key("known");
    let later = es256_key("later");
    let jwks = JwksServer::start(&[&known]).await;
    let d = daemon(vec![issuer(ISS_A, "acme", &jwks.url)], &[("acme", "seed")]).await;
    assert_eq!(
        status(&d, &token(&known, ISS_A, "alice", json!({}))).await,
        200
    );
    assert_eq!(jwks.hits(), 1);
    // The first unknown kid after the initial fetch is inside the hour-long interval: refused,
    // and no request reaches the provider, however many such tokens arrive.
    for i in 0..5 {
        let stranger = es256_key(&format!("stranger-{i}"));
        refused(
            &d,
            &token(&stranger, ISS_A, "alice", json!({})),
            "unknown kid",
        )
        .await;
    }
    // Even a key the provider has since published waits for the interval.
    jwks.serve(&[&known, &later]);
    refused(
        &d,
        &token(&later, ISS_A, "alice", json!({})),
        "kid published after",
    )
    .await;
    assert_eq!(jwks.hits(), 1, "no refetch inside the interval");
    assert_eq!(
        status(&d, &token(&known, ISS_A, "alice", json!({}))).await,
        200
    );
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn an_external_sub_never_reaches_a_local_user_of_that_name() {
    let key = es256_key("k");
    let jwks = JwksServer::start(&[&key]).await;
    let d = daemon(vec![issuer(ISS_A, "acme", &jwks.url)], &[("acme", "alice")]).await;
    let (local, _) = d.login("acme", "alice").await;
    let local_session = d.new_session(&local).await;
    let external = token(&key, ISS_A, "alice", json!({}));
    assert_eq!(
        who(&d, &external).await,
        pair("acme", "https://idp-a.test|alice")
    );

    // The external alice sees none of the local alice's sessions, and cannot open one.
    let listed: Value = d
        .get(&external, "/api/sessions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
    let path = format!("/api/sessions/{local_session}/history");
    assert_eq!(d.get(&external, &path).await.status(), 404);
    assert_eq!(
        d.get(&local, &path).await.status(),
        200,
        "control: the owner"
    );
    // And the other way round.
    let ext_session = d.new_session(&external).await;
    let path = format!("/api/sessions/{ext_session}/history");
    assert_eq!(d.get(&local, &path).await.status(), 404);
    assert_eq!(
        d.get(&external, &path).await.status(),
        200,
        "control: the owner"
    );
    let row = d
        .store()
        .web_session(
            &TenantId::new("acme").unwrap(),
            "https://idp-a.test|alice",
            &ext_session,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.chat_jid.as_str().starts_with("web:acme:x|"),
        "{}",
        row.chat_jid
    );

    // Disabling the local alice locks out the local alice only.
    d.store()
        .set_user_disabled(&TenantId::new("acme").unwrap(), "alice", true)
        .await
        .unwrap();
    assert_eq!(status(&d, &local).await, 401);
    assert_eq!(status(&d, &external).await, 200);
    // A sub shaped like a namespaced name is not a valid subject.
    let forged = token(&key, ISS_A, "https://idp-a.test|alice", json!({}));
    refused(&d, &forged, "sub containing the separator").await;
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn the_daemon_refuses_to_start_with_an_issuer_for_an_unknown_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = web_config();
    config.issuers = vec![issuer(ISS_A, "ghost", "http://127.0.0.1:9/jwks.json")];
    let Err(err) = start_in(dir, tagging_runner(), config.clone()).await else {
        panic!("started with an unknown tenant");
    };
    let message = err.to_string();
    assert!(
        message.contains("\"ghost\"") && message.contains(ISS_A),
        "{message}"
    );
    // Control: once the tenant exists, the same config starts.
    let dir = tempfile::tempdir().unwrap();
    seed_users(&dir, &[("ghost", "seed")]).await;
    let d = start_in(dir, tagging_runner(), config).await.unwrap();
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn an_oversized_or_redirected_jwks_is_not_used() {
    let key = es256_key("k");
    let good = json!({ "keys": [key.jwk.clone()] });
    // Valid JSON with the real key, padded past the 256 KiB cap.
    let big = json!({ "keys": [key.jwk.clone()], "padding": "x".repeat(300 * 1024) });
    let app = axum::Router::new()
        .route(
            "/good",
            axum::routing::get(move || async move { axum::Json(good) }),
        )
        .route(
            "/big",
            axum::routing::get(move || async move { axum::Json(big) }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/good") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let d = daemon(
        vec![
            issuer(ISS_A, "acme", &format!("{base}/good")),
            issuer(ISS_B, "acme", &format!("{base}/big")),
            issuer(ISS_C, "acme", &format!("{base}/moved")),
        ],
        &[("acme", "seed")],
    )
    .await;
    assert_eq!(
        status(&d, &token(&key, ISS_A, "alice", json!({}))).await,
        200,
        "control"
    );
    refused(
        &d,
        &token(&key, ISS_B, "alice", json!({})),
        "JWKS over the size cap",
    )
    .await;
    refused(
        &d,
        &token(&key, ISS_C, "alice", json!({})),
        "JWKS behind a redirect",
    )
    .await;
    d.daemon_shutdown().await;
}
