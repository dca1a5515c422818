#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn jid(s: &str) -> ChatJid {
    ChatJid::new(s).unwrap()
}

#[test]
fn replay_after_a_sequence_number_returns_only_newer_events() {
    let hub = Hub::new();
    let a = jid("web:t:u:1");
    hub.publish_delta(&a, "Hel");
    hub.publish_delta(&a, "lo");
    let sub = hub.subscribe(&a, 1);
    assert!(!sub.resync);
    assert_eq!(sub.head, 2);
    assert_eq!(
        sub.replay.iter().map(|e| (**e).clone()).collect::<Vec<_>>(),
        vec![StreamEvent::Delta {
            seq: 2,
            text: "lo".into()
        }]
    );
}

#[test]
fn a_reply_prunes_the_deltas_it_supersedes_but_keeps_numbering() {
    let hub = Hub::new();
    let a = jid("web:t:u:1");
    hub.publish_delta(&a, "Hel");
    hub.publish_delta(&a, "lo");
    hub.publish_reply(&a, 7, "Hello");
    let sub = hub.subscribe(&a, 0);
    assert_eq!(sub.replay.len(), 1);
    assert_eq!(sub.replay[0].seq(), 3);
    // A client that saw the first delta still gets the reply that replaces it.
    let sub = hub.subscribe(&a, 1);
    assert!(!sub.resync);
    assert_eq!(sub.replay.len(), 1);
}

#[test]
fn sessions_do_not_share_streams() {
    let hub = Hub::new();
    hub.publish_delta(&jid("web:t:u:1"), "one");
    let sub = hub.subscribe(&jid("web:t:u:2"), 0);
    assert!(sub.replay.is_empty());
    assert_eq!(sub.head, 0);
}

#[test]
fn an_uncoverable_gap_asks_for_resync() {
    let hub = Hub::new();
    let a = jid("web:t:u:1");
    for i in 0..(BUFFER_EVENTS as i64 + 10) {
        hub.publish_reply(&a, i, "x");
    }
    let sub = hub.subscribe(&a, 3);
    assert!(sub.resync);
    assert!(sub.replay.is_empty());
    // A sequence number from the future (another epoch) also resyncs.
    let sub = hub.subscribe(&jid("web:t:u:9"), 5);
    assert!(sub.resync);
    assert!(hub.replay(&a, 3).is_none());
    assert_eq!(hub.replay(&a, BUFFER_EVENTS as u64 + 9).unwrap().len(), 1);
}

#[tokio::test]
async fn live_events_reach_subscribers_in_order() {
    let hub = Hub::new();
    let a = jid("web:t:u:1");
    let mut sub = hub.subscribe(&a, 0);
    hub.publish_delta(&a, "a");
    hub.publish_reply(&a, 1, "ab");
    assert_eq!(sub.live.recv().await.unwrap().seq(), 1);
    assert_eq!(sub.live.recv().await.unwrap().seq(), 2);
}
