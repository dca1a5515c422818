//! What ends a sign-in: an open WebSocket closes at its token's expiry and when its user is
//! disabled (through the daemon or by another process, as `cambot users disable` does); a
//! refresh token family ends at its absolute lifetime however often it rotates; the refresh
//! cookie's Secure flag.

use cambot_channels::Channel;
use cambot_channels::web::session_jid;
use cambot_channels::web::tokens::hash_refresh_token;
use cambot_channels::web::tokens::new_refresh_token;
use cambot_channels::web::tokens::now_ms;
use cambot_channels::web::tokens::now_secs;
use cambot_core::RefreshTokenRow;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use futures::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::support::PASSWORD;
use super::support::WebDaemon;
use super::support::Ws;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

/// Signs in; the access token and its `expires_at`.
async fn login_with_expiry(d: &WebDaemon, user: &str) -> (String, u64) {
    let res = d
        .http
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"user": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["expires_at"].as_u64().unwrap(),
    )
}

/// A socket subscribed to a new session of `user`; the session's chat jid.
async fn subscribed(d: &WebDaemon, token: &str, user: &str) -> (Ws, ChatJid) {
    let session = d.new_session(token).await;
    let mut ws = d.ws(token).await;
    ws.send(json!({"type": "subscribe", "session": session}))
        .await;
    assert_eq!(ws.next_of("subscribed").await["type"], "subscribed");
    let jid = session_jid(&TenantId::default_tenant(), user, &session).unwrap();
    (ws, jid)
}

/// What a socket receives until it closes: the text frames, then the close code and reason
/// (`None` if the stream ended without a close frame).
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<(u16, String)>) {
    let mut texts = Vec::new();
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), ws.inner.next())
            .await
            .expect("the socket was not closed within 30 s");
        match next {
            Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return (
                    texts,
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (texts, None),
        }
    }
}

/// After a close, nothing more arrives: the stream ends.
async fn nothing_more(ws: &mut Ws) {
    loop {
        match ws.inner.next().await {
            None | Some(Err(_)) => return,
            Some(Ok(Message::Text(t))) => panic!("a push after the close: {t}"),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_socket_closes_at_its_tokens_expiry_and_gets_no_push_after_it() {
    let mut config = web_config();
    config.access_token_ttl_secs = 3;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (token, exp) = login_with_expiry(&d, "alice").await;
    let (mut ws, jid) = subscribed(&d, &token, "alice").await;
    // Control: a push before the expiry arrives.
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid, "before")
        .await;
    let delta = ws.next_of("delta").await;
    assert_eq!(delta["text"], "before");

    let (texts, close) = until_closed(&mut ws).await;
    assert!(texts.is_empty(), "{texts:?}");
    assert_eq!(close, Some((4401, "token expired".to_owned())));
    assert!(now_secs() >= exp, "closed before the expiry");
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid, "after")
        .await;
    nothing_more(&mut ws).await;
    d.daemon_shutdown().await;
}

/// A socket that re-authenticates with a fresh token lives on past the first token's expiry.
#[tokio::test]
async fn a_fresh_token_extends_an_open_socket() {
    let mut config = web_config();
    config.access_token_ttl_secs = 1;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (token, first_exp) = login_with_expiry(&d, "alice").await;
    let (mut ws, jid) = subscribed(&d, &token, "alice").await;
    // A fresh token for the same user, valid for ten minutes, signed with the tenant's key.
    let (kid, pkcs8) = d.signing_key(&TenantId::default_tenant()).await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid);
    let now = now_secs();
    let claims = json!({
        "iss": "cambot", "aud": "cambot-web", "sub": "alice", "tid": "default",
        "iat": now, "exp": now + 600, "jti": "fresh",
    });
    let fresh = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
    )
    .unwrap();
    ws.send(json!({"type": "auth", "token": fresh})).await;
    assert_eq!(ws.next_of("ready").await["type"], "ready");
    while now_secs() <= first_exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid, "still here")
        .await;
    assert_eq!(ws.next_of("delta").await["text"], "still here");
    d.daemon_shutdown().await;
}

/// Disabling a user closes every socket of theirs at once (the store announces the change),
/// and their sessions' pushes stop; another user's socket is untouched.
#[tokio::test]
async fn disabling_a_user_closes_their_open_sockets() {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("default", "alice").await;
    d.add_user("default", "bob").await;
    let (alice, _) = d.login("default", "alice").await;
    let (bob, _) = d.login("default", "bob").await;
    let (mut a1, jid_a) = subscribed(&d, &alice, "alice").await;
    let mut a2 = d.ws(&alice).await;
    let (mut b, jid_b) = subscribed(&d, &bob, "bob").await;

    d.store()
        .set_user_disabled(&TenantId::default_tenant(), "alice", true)
        .await
        .unwrap();
    for ws in [&mut a1, &mut a2] {
        let (texts, close) = until_closed(ws).await;
        assert!(texts.is_empty(), "{texts:?}");
        assert_eq!(close, Some((4401, "user disabled".to_owned())));
    }
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid_a, "for alice")
        .await;
    nothing_more(&mut a1).await;
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid_b, "for bob")
        .await;
    assert_eq!(b.next_of("delta").await["text"], "for bob");
    d.daemon_shutdown().await;
}

/// A user disabled by another process (the admin CLI opens its own store) is noticed by the
/// poll of changed users, and their socket closes.
#[tokio::test]
async fn a_user_disabled_by_another_process_loses_their_sockets() {
    let mut config = web_config();
    config.user_check_secs = 1;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (alice, _) = d.login("default", "alice").await;
    let (mut ws, jid) = subscribed(&d, &alice, "alice").await;
    let cli = cambot_agent::database::open_store(&DataLayout::new(d._dir.path()))
        .await
        .unwrap();
    assert!(
        cambot_core::UserStore::set_user_disabled(
            cli.as_ref(),
            &TenantId::default_tenant(),
            "alice",
            true
        )
        .await
        .unwrap()
    );
    let (_, close) = until_closed(&mut ws).await;
    assert_eq!(close, Some((4401, "user disabled".to_owned())));
    d.channel
        .stream_delta(&TenantId::default_tenant(), &jid, "late")
        .await;
    nothing_more(&mut ws).await;
    d.daemon_shutdown().await;
}

async fn refresh(d: &WebDaemon, token: &str) -> reqwest::Response {
    d.http
        .post(format!("{}/api/auth/refresh", d.base))
        .header("cookie", format!("cambot_refresh={token}"))
        .send()
        .await
        .unwrap()
}

fn max_age(res: &reqwest::Response) -> i64 {
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    cookie
        .split(';')
        .find_map(|kv| kv.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap()
}

/// A stored refresh token of a family that began `age_ms` ago (its own expiry far off).
async fn family_started(d: &WebDaemon, age_ms: i64) -> String {
    let token = new_refresh_token();
    let now = now_ms();
    d.store()
        .insert_refresh(&RefreshTokenRow {
            hash: hash_refresh_token(&token),
            family: format!("family-{age_ms}"),
            tenant: TenantId::default_tenant(),
            user_id: "alice".into(),
            expires_ms: now + 365 * 86_400_000,
            family_created_ms: now - age_ms,
        })
        .await
        .unwrap();
    token
}

/// Rotation never extends a family beyond its first issue plus `refresh_family_ttl_secs`
/// (default 30 days): a family an hour from its end rotates into cookies that expire with it,
/// and a family past its end is refused.
#[tokio::test]
async fn refresh_families_end_at_their_absolute_lifetime() {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("default", "alice").await;
    const DAY_MS: i64 = 86_400_000;
    let hour_left = family_started(&d, 30 * DAY_MS - 3_600_000).await;
    let res = refresh(&d, &hour_left).await;
    assert_eq!(res.status(), 200);
    assert!(max_age(&res) <= 3_600, "{}", max_age(&res));
    let next = super::support::refresh_cookie(&res).unwrap();
    let res = refresh(&d, &next).await;
    assert_eq!(res.status(), 200);
    assert!(max_age(&res) <= 3_600, "rotation did not extend the family");

    let over = family_started(&d, 30 * DAY_MS + 1_000).await;
    assert_eq!(refresh(&d, &over).await.status(), 401);
    // A fresh sign-in's cookie lasts the token lifetime (here equal to the family's).
    let res = d
        .http
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"user": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(max_age(&res) > 29 * 86_400, "{}", max_age(&res));
    d.daemon_shutdown().await;
}

/// The Secure flag follows the resolved setting: off by default on a loopback listener, on
/// when configured (the resolution from a public listen address is tested in `app_tests`).
#[tokio::test]
async fn the_refresh_cookie_is_secure_as_resolved() {
    for (setting, secure) in [(None, false), (Some(true), true)] {
        let mut config = web_config();
        config.cookie_secure = setting;
        let d = start(tagging_runner(), config).await;
        assert_eq!(d.channel.cookie_secure(), secure);
        d.add_user("default", "alice").await;
        let res = d
            .http
            .post(format!("{}/api/auth/login", d.base))
            .json(&json!({"user": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert_eq!(
            cookie.split(';').any(|a| a.trim() == "Secure"),
            secure,
            "{cookie}"
        );
        d.daemon_shutdown().await;
    }
}
