//! The JWT attack suite: every forged, stale or misdirected token gets 401, and the positive
//! controls (the same key and claims done right) get 200, so each rejection is for the reason
//! named.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cambot_channels::web::tokens::LEEWAY_SECS;
use cambot_channels::web::tokens::now_secs;
use cambot_protocol::TenantId;
use jsonwebtoken::Algorithm;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::Header;
use serde_json::Value;
use serde_json::json;

use super::support::WebDaemon;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

/// RFC 7515 appendix A.1 (also RFC 7519 section 3.1): HS256, `{"iss":"joe","exp":1300819380,
/// "http://example.com/is_root":true}`.
const RFC7515_A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The symmetric key of RFC 7515 A.1 (JWK `k`).
const RFC7515_A1_KEY: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
/// RFC 7515 appendix A.5 / RFC 7519 section 6.1: the unsecured JWS (`alg: none`).
const RFC7515_A5: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
/// RFC 8037 appendix A.4: an Ed25519 JWS (`alg: EdDSA`, no `kid`), and its public key.
const RFC8037_A4: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
const RFC8037_A4_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn status(d: &WebDaemon, token: &str) -> u16 {
    d.get(token, "/api/sessions").await.status().as_u16()
}

struct Fixture {
    d: WebDaemon,
    token: String,
    kid: String,
    key: EncodingKey,
    public_raw: Vec<u8>,
}

async fn fixture() -> Fixture {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("default", "alice").await;
    d.add_user("acme", "carol").await;
    let (token, _) = d.login("default", "alice").await;
    let public_raw = d
        .store()
        .signing_keys(&TenantId::default_tenant())
        .await
        .unwrap()
        .remove(0)
        .public_key;
    let (kid, pkcs8) = d.signing_key(&TenantId::default_tenant()).await;
    Fixture {
        d,
        token,
        kid,
        key: EncodingKey::from_ed_der(&pkcs8),
        public_raw,
    }
}

fn claims(overrides: Value) -> Value {
    let now = now_secs();
    let mut c = json!({
        "iss": "cambot", "aud": "cambot-web", "sub": "alice", "tid": "default",
        "iat": now, "exp": now + 600, "jti": "j1",
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(f: &Fixture, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(f.kid.clone());
    jsonwebtoken::encode(&header, claims, &f.key).unwrap()
}

#[tokio::test]
async fn forged_and_misdirected_access_tokens_get_401() {
    let f = fixture().await;
    let d = &f.d;
    // Positive controls: the issued token, and a token crafted with the real key and claims.
    assert_eq!(status(d, &f.token).await, 200);
    assert_eq!(status(d, &sign(&f, &claims(json!({})))).await, 200);

    let now = now_secs();
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none with a real kid",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": f.kid})),
                b64(&claims(json!({})))
            ),
        ),
        (
            "algorithm confusion: HS256 keyed with the EdDSA public key",
            {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(f.kid.clone());
                jsonwebtoken::encode(
                    &h,
                    &claims(json!({})),
                    &EncodingKey::from_secret(&f.public_raw),
                )
                .unwrap()
            },
        ),
        ("wrong aud", sign(&f, &claims(json!({"aud": "other-app"})))),
        ("wrong iss", sign(&f, &claims(json!({"iss": "evil"})))),
        ("missing aud", sign(&f, &claims(json!({"aud": null})))),
        (
            "expired",
            sign(&f, &claims(json!({"iat": now - 7200, "exp": now - 3600}))),
        ),
        (
            "iat in the future",
            sign(&f, &claims(json!({"iat": now + 3600, "exp": now + 4000}))),
        ),
        (
            "lifetime beyond a day",
            sign(&f, &claims(json!({"exp": now + 3 * 86_400}))),
        ),
        ("missing jti", sign(&f, &claims(json!({"jti": null})))),
        (
            "tenant claim does not match the key's tenant",
            sign(&f, &claims(json!({"tid": "acme", "sub": "carol"}))),
        ),
        ("unknown user", sign(&f, &claims(json!({"sub": "mallory"})))),
        ("tampered signature", {
            let (head, sig) = f.token.rsplit_once('.').unwrap();
            let mut sig: Vec<u8> = URL_SAFE_NO_PAD.decode(sig).unwrap();
            sig[0] ^= 1;
            format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig))
        }),
        ("tampered payload (sub swapped, old signature)", {
            let parts: Vec<&str> = f.token.split('.').collect();
            let mut payload: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            payload["sub"] = json!("bob");
            format!("{}.{}.{}", parts[0], b64(&payload), parts[2])
        }),
        ("unknown kid (a key cambot never issued)", {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some("0123456789abcdef0123456789abcdef".into());
            jsonwebtoken::encode(
                &h,
                &claims(json!({})),
                &EncodingKey::from_ed_der(pkcs8.as_ref()),
            )
            .unwrap()
        }),
        ("RFC 7515 A.1 (HS256 example)", RFC7515_A1.to_owned()),
        (
            "RFC 7515 A.5 / RFC 7519 6.1 (unsecured)",
            RFC7515_A5.to_owned(),
        ),
        (
            "RFC 8037 A.4 (EdDSA example, no kid)",
            RFC8037_A4.to_owned(),
        ),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
    ];
    for (name, token) in &cases {
        assert_eq!(status(d, token).await, 401, "{name} must be refused");
        // The WebSocket refuses it as well.
        let mut ws = super::support::Ws::connect(&d.ws_url(), None)
            .await
            .unwrap();
        ws.send(json!({"type": "auth", "token": token})).await;
        assert!(ws.recv().await.is_none(), "{name}: socket must close");
    }
    f.d.daemon_shutdown().await;
}

/// The RFC vectors are genuine: each verifies under its published key, so the 401s above are
/// policy (algorithm, claims, key id), not a broken vector.
#[test]
fn rfc_vectors_verify_under_their_published_keys() {
    let (signed, sig) = RFC7515_A1.rsplit_once('.').unwrap();
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &URL_SAFE_NO_PAD.decode(RFC7515_A1_KEY).unwrap(),
    );
    ring::hmac::verify(
        &key,
        signed.as_bytes(),
        &URL_SAFE_NO_PAD.decode(sig).unwrap(),
    )
    .unwrap();

    let (signed, sig) = RFC8037_A4.rsplit_once('.').unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        URL_SAFE_NO_PAD.decode(RFC8037_A4_X).unwrap(),
    );
    public
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .unwrap();
}

#[tokio::test]
async fn a_disabled_users_tokens_stop_working_at_once() {
    let f = fixture().await;
    let d = &f.d;
    let (token, cookie) = d.login("default", "alice").await;
    let mut ws = d.ws(&token).await;
    let session = d.new_session(&token).await;
    assert_eq!(status(d, &token).await, 200);
    d.store()
        .set_user_disabled(&TenantId::default_tenant(), "alice", true)
        .await
        .unwrap();
    assert_eq!(status(d, &token).await, 401);
    assert_eq!(status(d, &f.token).await, 401);
    // An open socket is closed on its next frame.
    ws.send(json!({"type": "subscribe", "session": session}))
        .await;
    let frame = ws.recv().await;
    assert!(
        frame.is_none() || frame.as_ref().unwrap()["code"] == "unauthorized",
        "{frame:?}"
    );
    // Refresh and sign-in fail too.
    let res = refresh(d, &cookie).await;
    assert_eq!(res.status(), 401);
    let res = d
        .http
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"user": "alice", "password": super::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    f.d.daemon_shutdown().await;
}

/// A token that is not valid yet (`nbf` beyond the clock-skew leeway) is refused; the same
/// token with a past `nbf`, or one inside the leeway, is accepted.
#[tokio::test]
async fn a_token_with_nbf_in_the_future_is_refused() {
    let f = fixture().await;
    let now = now_secs();
    let past = sign(&f, &claims(json!({"nbf": now - 5})));
    assert_eq!(status(&f.d, &past).await, 200, "nbf in the past");
    let within = sign(&f, &claims(json!({"nbf": now + LEEWAY_SECS / 2})));
    assert_eq!(status(&f.d, &within).await, 200, "nbf within the leeway");
    let future = sign(&f, &claims(json!({"nbf": now + LEEWAY_SECS + 60})));
    assert_eq!(status(&f.d, &future).await, 401, "nbf in the future");
    // Not on the WebSocket either.
    let mut ws = super::support::Ws::connect(&f.d.ws_url(), None)
        .await
        .unwrap();
    ws.send(json!({"type": "auth", "token": future})).await;
    assert!(ws.recv().await.is_none(), "the socket is closed");
    f.d.daemon_shutdown().await;
}

async fn refresh(d: &WebDaemon, cookie: &str) -> reqwest::Response {
    d.http
        .post(format!("{}/api/auth/refresh", d.base))
        .header("cookie", format!("cambot_refresh={cookie}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_family() {
    let f = fixture().await;
    let d = &f.d;
    let (_, first) = d.login("default", "alice").await;
    let res = refresh(d, &first).await;
    assert_eq!(res.status(), 200);
    let cookie_header = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/api/auth"] {
        assert!(cookie_header.contains(attr), "{cookie_header}");
    }
    let second = super::support::refresh_cookie(&res).unwrap();
    assert_ne!(first, second);
    let body: Value = res.json().await.unwrap();
    assert_eq!(status(d, body["access_token"].as_str().unwrap()).await, 200);

    // Replaying the rotated token: 401, and the whole family is revoked (the thief and the
    // victim both have to sign in again).
    assert_eq!(refresh(d, &first).await.status(), 401);
    assert_eq!(refresh(d, &second).await.status(), 401);
    // No cookie, or a made-up one.
    assert_eq!(refresh(d, "bogus").await.status(), 401);
    // Sign-out revokes the family too.
    let (_, third) = d.login("default", "alice").await;
    let res = d
        .http
        .post(format!("{}/api/auth/logout", d.base))
        .header("cookie", format!("cambot_refresh={third}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(refresh(d, &third).await.status(), 401);
    f.d.daemon_shutdown().await;
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_look_the_same() {
    let f = fixture().await;
    let d = &f.d;
    for (user, password) in [("alice", "wrong password"), ("nobody", "whatever1")] {
        let res = d
            .http
            .post(format!("{}/api/auth/login", d.base))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(super::support::refresh_cookie(&res).is_none());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    // A user of another tenant cannot sign in to this one with the same name.
    let res = d
        .http
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"tenant": "default", "user": "carol", "password": super::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    f.d.daemon_shutdown().await;
}

#[tokio::test]
async fn signing_keys_rotate_and_old_tokens_verify_until_they_expire() {
    let mut config = web_config();
    config.key_rotation_secs = 1;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (old, _) = d.login("default", "alice").await;
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    // Rotation is by key age; a key made more than a second ago is replaced.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (new, _) = d.login("default", "alice").await;
    assert_ne!(kid_of(&old), kid_of(&new));
    assert_eq!(status(&d, &old).await, 200);
    assert_eq!(status(&d, &new).await, 200);
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn an_external_issuer_with_a_shared_key_is_accepted_only_with_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "an external shared secret of at least 32 bytes";
    let path = dir.path().join("secret");
    std::fs::write(&path, secret).unwrap();
    let mut config = web_config();
    config.external = Some(cambot_channels::web::ExternalIssuer {
        issuer: "https://idp.example".into(),
        audience: "cambot".into(),
        jwks_file: None,
        shared_secret_file: Some(path),
        tenant: TenantId::new("acme").unwrap(),
    });
    // The issuer's tenant must exist before the daemon starts.
    let data = tempfile::tempdir().unwrap();
    super::support::seed_users(&data, &[("acme", "disabled-one")]).await;
    let d = super::support::start_in(data, tagging_runner(), config)
        .await
        .unwrap();
    d.store()
        .set_user_disabled(&TenantId::new("acme").unwrap(), "disabled-one", true)
        .await
        .unwrap();
    let now = now_secs();
    let make = |c: Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = json!({"iss": "https://idp.example", "aud": "cambot", "sub": "sso-user", "iat": now, "exp": now + 300});
    let token = make(good.clone());
    assert_eq!(status(&d, &token).await, 200);
    let me: Value = d.get(&token, "/api/me").await.json().await.unwrap();
    assert_eq!(me["tenant"], "acme");
    let mut c = good.clone();
    c["aud"] = json!("cambot-web");
    assert_eq!(status(&d, &make(c)).await, 401, "wrong aud");
    let mut c = good.clone();
    c["iss"] = json!("cambot");
    assert_eq!(status(&d, &make(c)).await, 401, "wrong iss");
    // The external `disabled-one` is `https://idp.example|disabled-one`, not the local user of
    // that name: the local row neither lends it access nor locks it out.
    let mut c = good.clone();
    c["sub"] = json!("disabled-one");
    let token = make(c);
    let me: Value = d.get(&token, "/api/me").await.json().await.unwrap();
    assert_eq!(me["user"], "https://idp.example|disabled-one");
    // `nbf`: within the leeway is accepted, beyond it is not valid yet.
    let mut c = good.clone();
    c["nbf"] = json!(now + 10);
    assert_eq!(status(&d, &make(c)).await, 200, "nbf within the leeway");
    let mut c = good.clone();
    c["nbf"] = json!(now + 120);
    assert_eq!(status(&d, &make(c)).await, 401, "nbf in the future");
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another secret that is long enough!!"),
    )
    .unwrap();
    assert_eq!(status(&d, &wrong_key).await, 401, "wrong key");
    // HS384 with the same secret: the algorithm is pinned.
    let other_alg = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &good,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&d, &other_alg).await, 401, "HS384");
    d.daemon_shutdown().await;
}

/// An Ed25519 key pair: the signing key and its public JWK under `kid`.
fn ed25519_jwk(kid: &str) -> (EncodingKey, Value) {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    });
    (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
}

#[tokio::test]
async fn an_external_issuer_with_a_jwks_is_accepted_only_with_the_key_its_kid_names() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_jwk) = ed25519_jwk("first");
    let (second, second_jwk) = ed25519_jwk("second");
    let (stranger, _) = ed25519_jwk("first");
    let path = dir.path().join("jwks.json");
    std::fs::write(
        &path,
        json!({"keys": [first_jwk.clone(), second_jwk]}).to_string(),
    )
    .unwrap();
    let mut config = web_config();
    config.external = Some(cambot_channels::web::ExternalIssuer {
        issuer: "https://idp.example".into(),
        audience: "cambot".into(),
        jwks_file: Some(path),
        shared_secret_file: None,
        tenant: TenantId::default_tenant(),
    });
    let d = start(tagging_runner(), config).await;
    let now = now_secs();
    let good = json!({"iss": "https://idp.example", "aud": "cambot", "sub": "sso-user", "iat": now, "exp": now + 300});
    let make = |kid: Option<&str>, key: &EncodingKey, c: &Value| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, c, key).unwrap()
    };
    // Positive controls: each key of the set, under its own kid.
    let token = make(Some("first"), &first, &good);
    assert_eq!(status(&d, &token).await, 200);
    let me: Value = d.get(&token, "/api/me").await.json().await.unwrap();
    assert_eq!(me["tenant"], "default");
    assert_eq!(status(&d, &make(Some("second"), &second, &good)).await, 200);
    let mut with_tenant = good.clone();
    with_tenant["tid"] = json!("acme");
    let token = make(Some("second"), &second, &with_tenant);
    let me: Value = d.get(&token, "/api/me").await.json().await.unwrap();
    assert_eq!(
        me["tenant"], "default",
        "a tid claim does not choose the tenant"
    );
    assert_eq!(me["user"], "https://idp.example|sso-user");

    let cases = [
        (
            "signed by the other key of the set",
            make(Some("first"), &second, &good),
        ),
        (
            "a key outside the set under a known kid",
            make(Some("first"), &stranger, &good),
        ),
        (
            "no kid (every key in the set has one)",
            make(None, &first, &good),
        ),
        ("unknown kid", make(Some("third"), &first, &good)),
        ("wrong aud", {
            let mut c = good.clone();
            c["aud"] = json!("cambot-web");
            make(Some("first"), &first, &c)
        }),
        ("expired", {
            let mut c = good.clone();
            c["iat"] = json!(now - 7200);
            c["exp"] = json!(now - 3600);
            make(Some("first"), &first, &c)
        }),
        (
            "algorithm confusion: HS256 keyed with the JWK's public x",
            {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("first".into());
                let x = URL_SAFE_NO_PAD
                    .decode(first_jwk["x"].as_str().unwrap())
                    .unwrap();
                jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&x)).unwrap()
            },
        ),
    ];
    for (why, token) in cases {
        assert_eq!(status(&d, &token).await, 401, "{why}");
    }
    d.daemon_shutdown().await;
}
