//! Streaming and reconnect: deltas arrive before the reply, and a client that lost its socket
//! gets exactly what it missed when it resubscribes with its last sequence number.

use std::collections::HashSet;

use serde_json::Value;
use serde_json::json;

use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

#[tokio::test]
async fn deltas_stream_before_the_reply_and_a_reconnect_replays_what_was_missed() {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("default", "alice").await;
    let (alice, _) = d.login("default", "alice").await;
    let s = d.new_session(&alice).await;

    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "subscribe", "session": s})).await;
    let sub = ws.next_of("subscribed").await;
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    ws.send(json!({"type": "send", "session": s, "text": "tok-1", "client_id": "m1"}))
        .await;
    let mut frames: Vec<Value> = Vec::new();
    while frames.last().is_none_or(|f| f["type"] != "reply") {
        let f = ws.recv().await.unwrap();
        if f["type"] == "delta" || f["type"] == "reply" {
            frames.push(f);
        }
    }
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["delta", "delta", "reply"]);
    let streamed: String = frames[..2]
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, frames[2]["text"].as_str().unwrap());
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let last_seen = seqs[2];
    assert_eq!(d.channel.streams_in_memory(), 1);

    // The socket drops; three more messages are answered while the client is away.
    drop(ws);
    for i in 2..=4 {
        let res = d
            .post(
                &alice,
                &format!("/api/sessions/{s}/messages"),
                json!({"text": format!("tok-{i}"), "client_id": format!("m{i}")}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let replies = d.wait_replies(&alice, &s, 2).await;
    assert!(!replies.is_empty());
    // Wait until every message is answered (the runner may batch follow-ups into one turn).
    let mut answered: HashSet<String> = HashSet::new();
    for _ in 0..2000 {
        let h = d.history(&alice, &s).await;
        answered = h["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["role"] == "assistant")
            .flat_map(|i| {
                i["text"]
                    .as_str()
                    .unwrap()
                    .split("got=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        if answered.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(answered.len(), 4, "{answered:?}");

    // Reconnect with the epoch and the last sequence number: exactly the missed replies, in
    // order, no duplicates, nothing lost.
    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "subscribe", "session": s, "epoch": epoch, "after": last_seen}))
        .await;
    let sub = ws.next_of("subscribed").await;
    assert_eq!(sub["resync"], false);
    let head = sub["head"].as_u64().unwrap();
    let mut replayed = Vec::new();
    let mut seq = last_seen;
    while seq < head {
        let f = ws.recv().await.unwrap();
        seq = f["seq"].as_u64().unwrap();
        assert!(seq > last_seen);
        if f["type"] == "reply" {
            replayed.extend(
                f["text"]
                    .as_str()
                    .unwrap()
                    .split("got=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .map(str::to_owned),
            );
        }
    }
    replayed.sort();
    assert_eq!(replayed, ["tok-2", "tok-3", "tok-4"]);

    // A client from another epoch (server restarted) replays the buffer from the start.
    let mut ws = d.ws(&alice).await;
    ws.send(json!({"type": "subscribe", "session": s, "epoch": "old", "after": 2}))
        .await;
    let sub = ws.next_of("subscribed").await;
    assert_eq!(sub["resync"], false);
    let first = ws.recv().await.unwrap();
    assert_eq!(first["type"], "reply");
    assert!(first["seq"].as_u64().unwrap() <= last_seen);

    // Resending a message with the same client id (after a drop) is stored once.
    for _ in 0..2 {
        let res = d
            .post(
                &alice,
                &format!("/api/sessions/{s}/messages"),
                json!({"text": "tok-5", "client_id": "m5"}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let h = d.history(&alice, &s).await;
    let users = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["role"] == "user" && i["text"] == "tok-5")
        .count();
    assert_eq!(users, 1);
    d.daemon_shutdown().await;
}
