//! Sign-in floods: throttled per source address as well as per user name, and the password
//! threads stay available to everyone else. Clients bind distinct loopback source addresses
//! (127.0.0.1, 127.0.0.2, ...) so the server sees distinct peers; all traffic stays on loopback.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::support::PASSWORD;
use super::support::WebDaemon;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

/// An HTTP client whose connections come from `127.0.0.<n>`.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, n]))
        .build()
        .unwrap()
}

async fn sign_in(
    d: &WebDaemon,
    client: &reqwest::Client,
    user: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"user": user, "password": password}));
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap()
}

/// A flood of wrong passwords for many user names from one address gets 429 (with
/// Retry-After) for that address, whatever `X-Forwarded-For` it sends, while another address
/// signs in; the per-user limit still holds across addresses.
#[tokio::test]
async fn a_flood_from_one_address_is_throttled_for_that_address_only() {
    let mut config = web_config();
    config.sign_ins_per_address_per_minute = 5;
    config.sign_ins_per_minute = 6;
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    d.add_user("default", "carol").await;
    let attacker = client_from(1);
    let mut statuses = Vec::new();
    for i in 0..12 {
        // A spoofed X-Forwarded-For changes nothing: no proxy is trusted.
        let spoof = format!("198.51.100.{i}");
        let res = sign_in(&d, &attacker, &format!("user{i}"), "wrong", Some(&spoof)).await;
        if res.status() == 429 {
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // The throttled address cannot sign in even with the right password...
    let res = sign_in(&d, &attacker, "alice", PASSWORD, None).await;
    assert_eq!(res.status(), 429);
    // ...another address can.
    let res = sign_in(&d, &client_from(2), "alice", PASSWORD, None).await;
    assert_eq!(res.status(), 200);

    // Per user: six attempts on carol from three addresses, then even a fresh address with
    // the right password is refused for carol (and only for carol).
    for n in 3..=5 {
        for _ in 0..2 {
            let res = sign_in(&d, &client_from(n), "carol", "wrong", None).await;
            assert_eq!(res.status(), 401);
        }
    }
    let fresh = client_from(6);
    assert_eq!(
        sign_in(&d, &fresh, "carol", PASSWORD, None).await.status(),
        429
    );
    assert_eq!(
        sign_in(&d, &fresh, "alice", PASSWORD, None).await.status(),
        200
    );
    d.daemon_shutdown().await;
}

/// Behind a configured proxy, the client named by `X-Forwarded-For` is what is throttled.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled() {
    let mut config = web_config();
    config.sign_ins_per_address_per_minute = 3;
    config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let d = start(tagging_runner(), config).await;
    d.add_user("default", "alice").await;
    let proxy = client_from(1);
    for i in 0..3 {
        let res = sign_in(&d, &proxy, &format!("u{i}"), "wrong", Some("198.51.100.7")).await;
        assert_eq!(res.status(), 401);
    }
    let res = sign_in(&d, &proxy, "alice", PASSWORD, Some("198.51.100.7")).await;
    assert_eq!(res.status(), 429);
    // A client-chosen entry left of the one the proxy added does not dodge the limit.
    let res = sign_in(
        &d,
        &proxy,
        "alice",
        PASSWORD,
        Some("203.0.113.9, 198.51.100.7"),
    )
    .await;
    assert_eq!(res.status(), 429);
    // Another client behind the same proxy signs in.
    let res = sign_in(&d, &proxy, "alice", PASSWORD, Some("198.51.100.8")).await;
    assert_eq!(res.status(), 200);
    d.daemon_shutdown().await;
}

/// While one address floods sign-ins concurrently (far more than the password threads and
/// their queue hold), another user's sign-in from another address still succeeds: one address
/// never holds more than its share of the password work. The flood gets refusals, not waits.
#[tokio::test]
async fn a_concurrent_flood_cannot_starve_other_sign_ins() {
    let mut config = web_config();
    // Only the hashing bounds are under test here.
    config.sign_ins_per_address_per_minute = 0;
    config.sign_ins_per_minute = 0;
    config.password_workers = 1;
    config.password_queue = 4;
    config.sign_ins_in_flight_per_address = 2;
    let d = Arc::new(start(tagging_runner(), config).await);
    d.add_user("default", "bob").await;
    let done = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let first_refusal = Arc::new(tokio::sync::Notify::new());
    let attacker = client_from(1);
    let mut flood = Vec::new();
    for i in 0..80 {
        let (d, done, refused, first_refusal, attacker) = (
            Arc::clone(&d),
            Arc::clone(&done),
            Arc::clone(&refused),
            Arc::clone(&first_refusal),
            attacker.clone(),
        );
        flood.push(tokio::spawn(async move {
            for round in 0..20 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let user = format!("victim{i}-{round}");
                let res = sign_in(&d, &attacker, &user, "wrong", None).await;
                match res.status().as_u16() {
                    401 => {}
                    429 | 503 => {
                        assert!(res.headers().contains_key("retry-after"));
                        refused.fetch_add(1, Ordering::SeqCst);
                        first_refusal.notify_one();
                    }
                    other => panic!("flood request answered {other}"),
                }
            }
        }));
    }
    // Sign in once the flood is saturating the password threads (it is being refused).
    tokio::time::timeout(Duration::from_secs(120), first_refusal.notified())
        .await
        .expect("the flood was never refused");
    let res = sign_in(&d, &client_from(2), "bob", PASSWORD, None).await;
    let status = res.status();
    done.store(true, Ordering::SeqCst);
    for task in flood {
        task.await.unwrap();
    }
    assert_eq!(status, 200, "bob's sign-in during the flood");
    assert!(refused.load(Ordering::SeqCst) > 0);
    let d = Arc::into_inner(d).unwrap();
    d.daemon_shutdown().await;
}
