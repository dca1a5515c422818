//! A run's socket within its limits: at most 8 connections served at once (more wait, and a
//! connection that never finishes its request head is closed after 30 s), and over-size heads
//! and bodies refused while the server stays up for the next request.

use std::time::Duration;

use cambot_gateway::RunBudget;
use cambot_testkit::standin::Standin;
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

use super::proxy_world::ProxyWorld;
use super::proxy_world::upstream;

/// Opens a connection that starts a request and never finishes its head.
async fn half_open(w: &ProxyWorld) -> tokio::net::UnixStream {
    let mut s = tokio::net::UnixStream::connect(w.path()).await.unwrap();
    s.write_all(b"POST /v1/ipc/list_groups HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    s
}

async fn list_groups(w: &ProxyWorld) -> u16 {
    w.call("POST", "/v1/ipc/list_groups", &[], Some(&json!({})))
        .await
        .status
}

// Paused time: a wait ends only once nothing else can make progress, so "not served within
// 10 s" means "not served while 8 connections were open", not a race.
#[tokio::test(start_paused = true)]
async fn at_most_eight_connections_are_served_and_the_ninth_waits_its_turn() {
    let w = ProxyWorld::new(Vec::new(), RunBudget::default()).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(half_open(&w).await);
    }
    let ninth = list_groups(&w);
    tokio::pin!(ninth);
    assert!(
        tokio::time::timeout(Duration::from_secs(10), ninth.as_mut())
            .await
            .is_err(),
        "a ninth connection is not served while eight are open"
    );
    drop(held.pop());
    let status = ninth.await;
    assert!(
        status == 200 || status == 403,
        "served once a slot freed: {status}"
    );

    // Slots held by heads that never complete free themselves after the read timeout: the
    // server closed the stalled connections.
    let newest = half_open(&w).await;
    let status = list_groups(&w).await;
    assert!(status == 200 || status == 403, "{status}");
    for mut stalled in held {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(1), stalled.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a stalled connection is closed by the server: {read:?}"
        );
    }
    drop(newest);
}

#[tokio::test]
async fn over_size_heads_and_bodies_are_refused_and_the_server_stays_up() {
    let up = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![upstream("claude", "anthropic", &up.base_url())],
        RunBudget::default(),
    )
    .await;
    let ipc = "POST /v1/ipc/send_message HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json";
    let model = "POST /v1/model/claude/v1/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json";

    // A head over 16 KiB.
    let big_header = format!(
        "{ipc}\r\nx-pad: {}\r\ncontent-length: 2",
        "a".repeat(20 * 1024)
    );
    assert_eq!(w.raw(&big_header, b"{}".to_vec()).await, 431);
    assert_eq!(list_groups(&w).await, 200);

    // A host-tool body over 256 KiB, announced and chunked.
    let body = json!({"text": "x".repeat(256 * 1024)})
        .to_string()
        .into_bytes();
    let head = format!("{ipc}\r\ncontent-length: {}", body.len());
    assert_eq!(w.raw(&head, body.clone()).await, 413);
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = format!("{ipc}\r\ntransfer-encoding: chunked");
    assert_eq!(w.raw(&head, chunked).await, 413);
    assert_eq!(list_groups(&w).await, 200);

    // A model body over 8 MiB never reaches the upstream; 1 MiB does.
    let body = vec![b' '; 8 * 1024 * 1024 + 1];
    let head = format!("{model}\r\ncontent-length: {}", body.len());
    assert_eq!(w.raw(&head, body).await, 413);
    assert_eq!(up.request_count(), 0);
    let mut body = json!({"model": "m", "max_tokens": 8, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
    .into_bytes();
    body.extend(std::iter::repeat_n(b' ', 1024 * 1024));
    let head = format!("{model}\r\ncontent-length: {}", body.len());
    assert_eq!(w.raw(&head, body).await, 200);
    assert_eq!(up.request_count(), 1);
    assert_eq!(list_groups(&w).await, 200);
}
