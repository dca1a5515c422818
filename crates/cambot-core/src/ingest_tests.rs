//! Replay of what a previous owner left in the journal.
#![allow(clippy::unwrap_used)]

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;

use crate::Store;
use crate::journal;

fn message(id: &str, content: &str) -> InboundMessage {
    InboundMessage {
        tenant: TenantId::default_tenant(),
        chat_jid: ChatJid::new("x@g.us").unwrap(),
        id: id.into(),
        sender: "s".into(),
        sender_name: "S".into(),
        content: content.into(),
        timestamp: "2024-01-01T00:00:00.000Z".into(),
        is_from_me: false,
        is_bot_message: false,
    }
}

fn segment(generation: u64, records: &[(i64, InboundMessage)]) -> Vec<u8> {
    let mut bytes = journal::header(generation).to_vec();
    for (seq, msg) in records {
        journal::encode(&mut bytes, *seq, msg);
    }
    bytes
}

fn contents(store: &Store) -> Vec<(i64, String)> {
    store
        .messages_since(
            &TenantId::default_tenant(),
            &ChatJid::new("x@g.us").unwrap(),
            0,
            100,
        )
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, m.content))
        .collect()
}

#[test]
fn a_restart_replays_both_segments_in_generation_order_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cambot.db");
    drop(Store::open(&db).unwrap());
    let [a, b] = journal::segment_paths(&db);
    // `b` is the older segment: its version of seq 5 was superseded by a repeat in `a`.
    std::fs::write(
        &b,
        segment(2, &[(4, message("m4", "four")), (5, message("m5", "old"))]),
    )
    .unwrap();
    let mut newer = segment(
        3,
        &[(5, message("m5", "edited")), (6, message("m6", "six"))],
    );
    let whole = newer.len();
    journal::encode(&mut newer, 7, &message("m7", "torn"));
    newer.truncate(whole + 11);
    std::fs::write(&a, newer).unwrap();

    let expected = vec![
        (4, "four".to_owned()),
        (5, "edited".to_owned()),
        (6, "six".to_owned()),
    ];
    let store = Store::open_owning_messages(&db).unwrap();
    assert_eq!(contents(&store), expected);
    assert_eq!(store.unmoved_messages(), 0, "replayed straight into SQLite");
    assert_eq!(
        journal::read_segment(&a).unwrap().records.len(),
        0,
        "replayed segments start over"
    );
    let next = store.store_message(&message("m8", "eight")).unwrap();
    assert!(next > 6, "seqs count on after the replayed ones: {next}");
    store.close_message_intake();
    drop(store);

    // Replaying again (the journal now holds only m8) changes nothing else.
    let store = Store::open_owning_messages(&db).unwrap();
    let mut with_eight = expected;
    with_eight.push((next, "eight".to_owned()));
    assert_eq!(contents(&store), with_eight);
}

fn versions(ids: &[&str]) -> Vec<crate::overlay::Version> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| crate::overlay::Version {
            record: i as u64 + 1,
            message: std::sync::Arc::new(crate::messages::StoredMessage::stored(
                message(id, id),
                i as i64 + 1,
            )),
        })
        .collect()
}

fn ids(versions: &[crate::overlay::Version]) -> Vec<String> {
    versions.iter().map(|v| v.message.id.clone()).collect()
}

#[test]
fn committed_versions_go_to_the_ingest_thread_or_come_back_to_the_mover() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<super::Job>(1);
    let notices = super::MovedNotices(tx.downgrade());

    notices.send(versions(&["a", "b"])).unwrap();
    match rx.try_recv() {
        Ok(super::Job::Moved(got)) => assert_eq!(ids(&got), ["a", "b"]),
        _ => panic!("the ingest thread should get the moved versions"),
    }

    // A full queue never blocks the mover: the versions come back for it to drop itself.
    tx.try_send(super::Job::Close).unwrap();
    let back = notices.send(versions(&["c"])).unwrap_err();
    assert_eq!(ids(&back), ["c"]);

    // So do they once the ingest thread's queue is gone; the notices do not keep it open.
    drop(rx);
    let back = notices.send(versions(&["d"])).unwrap_err();
    assert_eq!(ids(&back), ["d"]);
    drop(tx);
    let back = notices.send(versions(&["e"])).unwrap_err();
    assert_eq!(ids(&back), ["e"]);
}

/// Stores `count` messages through the journal and waits until every one has left the overlay.
fn store_and_wait_until_moved(store: &Store, count: usize) {
    for i in 0..count {
        store
            .store_message(&message(&format!("m{i}"), "hello"))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.unmoved_messages() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} messages never left the overlay",
            store.unmoved_messages()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_ingest_thread_drops_moved_messages_from_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_owning_messages(&dir.path().join("cambot.db")).unwrap();
    store_and_wait_until_moved(&store, 2_000);
    assert_eq!(
        contents(&store).len(),
        100,
        "the first 100 messages are read back from SQLite"
    );
}

#[test]
fn the_writers_backstop_checkpoint_syncs_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cambot.db");
    let store = Store::open_owning_messages(&db).unwrap();
    let durability = store.journal_durability().unwrap();
    // At the real threshold (16,000 pages) a test would have to write for long: fire at 4.
    crate::backstop::install(&store.conn().unwrap(), &durability, 4);
    store_and_wait_until_moved(&store, 500);
    assert!(
        durability
            .backstop_checkpoints
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the backstop never synced the journal"
    );
    assert_eq!(contents(&store).len(), 100);
}
