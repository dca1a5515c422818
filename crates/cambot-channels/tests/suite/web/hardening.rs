//! Origin checks, CORS, security headers, body and rate limits.

use serde_json::json;

use super::support::Ws;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

#[tokio::test]
async fn websocket_origin_cors_and_security_headers() {
    let mut config = web_config();
    config.allowed_origins = vec!["https://chat.example.com".into()];
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let (alice, _) = d.login("default", "alice").await;

    // WebSocket: a foreign origin is refused at the upgrade; own and configured origins pass.
    let err = Ws::connect(&d.ws_url(), Some("https://evil.example")).await;
    assert!(err.is_err(), "foreign origin must be refused");
    let own = d.base.clone();
    for origin in [own.as_str(), "https://chat.example.com"] {
        let mut ws = Ws::connect(&d.ws_url(), Some(origin)).await.unwrap();
        ws.send(json!({"type": "auth", "token": alice})).await;
        assert_eq!(ws.next_of("ready").await["type"], "ready");
    }

    // CORS: only configured origins get CORS headers; a foreign preflight is refused.
    let pre = |origin: &'static str| {
        d.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/sessions", d.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let ok = pre("https://chat.example.com").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    let bad = pre("https://evil.example").await.unwrap();
    assert_eq!(bad.status(), 403);
    assert!(bad.headers().get("access-control-allow-origin").is_none());
    let res = d
        .http
        .get(format!("{}/api/sessions", d.base))
        .bearer_auth(&alice)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // A cookie call from a foreign origin is refused even with a valid cookie.
    let (_, cookie) = d.login("default", "alice").await;
    let res = d
        .http
        .post(format!("{}/api/auth/refresh", d.base))
        .header("cookie", format!("cambot_refresh={cookie}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Security headers on the page; the page itself carries no inline script or handler.
    let page = d.http.get(&d.base).send().await.unwrap();
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    let lower = html.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script: {tag}");
    }
    assert!(
        !lower.contains(" onclick=")
            && !lower.contains(" onload=")
            && !lower.contains("javascript:")
    );
    let api = d.get(&alice, "/api/sessions").await;
    assert_eq!(api.headers()["cache-control"], "no-store");
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn body_limits_and_per_user_rate_limits() {
    let mut config = web_config();
    config.max_body_bytes = 4096;
    config.max_upload_bytes = 8192;
    config.max_message_chars = 100;
    config.messages_per_minute = 3;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    d.add_user("default", "bob").await;
    let (alice, _) = d.login("default", "alice").await;
    let (bob, _) = d.login("default", "bob").await;
    let s = d.new_session(&alice).await; // one of alice's three
    let big = "x".repeat(5000);
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{s}/messages"),
            json!({"text": big}),
        )
        .await;
    assert_eq!(res.status(), 413);
    let long = "y".repeat(101);
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{s}/messages"),
            json!({"text": long}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = d
        .http
        .post(format!("{}/api/sessions/{s}/uploads?name=a.bin", d.base))
        .bearer_auth(&alice)
        .body(vec![0u8; 9000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // A WebSocket frame over the limit closes the socket.
    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "send", "session": s, "text": "z".repeat(5000)}))
        .await;
    assert!(ws.recv().await.is_none());

    for i in 0..2 {
        let res = d
            .post(
                &alice,
                &format!("/api/sessions/{s}/messages"),
                json!({"text": format!("tok-{i}")}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let res = d
        .post(
            &alice,
            &format!("/api/sessions/{s}/messages"),
            json!({"text": "tok-over"}),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    // Limits are per user: bob is unaffected.
    let sb = d.new_session(&bob).await;
    let res = d
        .post(
            &bob,
            &format!("/api/sessions/{sb}/messages"),
            json!({"text": "tok-b"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    d.daemon_shutdown().await;
}

#[tokio::test]
async fn a_socket_that_never_authenticates_cannot_do_anything() {
    let d = start(tagging_runner(), web_config()).await;
    let mut ws = Ws::connect(&d.ws_url(), None).await.unwrap();
    ws.send(json!({"type": "subscribe", "session": "0123456789abcdef0123456789abcdef"}))
        .await;
    assert!(ws.recv().await.is_none());
    d.daemon_shutdown().await;
}
