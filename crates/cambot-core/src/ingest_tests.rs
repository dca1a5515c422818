//! The ingest path: replay of what a previous owner left in the journal, callers working the
//! ingest state themselves, and the mover's backlog.
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
fn committed_versions_go_to_the_ingest_state_or_come_back_to_the_mover() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<super::Job>(1);
    let notices = super::MovedNotices(tx.downgrade());

    notices.send(versions(&["a", "b"])).unwrap();
    match rx.try_recv() {
        Ok(super::Job::Moved(got)) => assert_eq!(ids(&got), ["a", "b"]),
        _ => panic!("the ingest state should get the moved versions"),
    }

    // A full queue never blocks the mover: the versions come back for it to drop itself.
    tx.try_send(super::Job::Close).unwrap();
    let back = notices.send(versions(&["c"])).unwrap_err();
    assert_eq!(ids(&back), ["c"]);

    // So do they once the ingest state's queue is gone; the notices do not keep it open.
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
fn the_ingest_path_drops_moved_messages_from_the_overlay() {
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

fn chat_message(chat: &str, id: &str) -> InboundMessage {
    InboundMessage {
        chat_jid: ChatJid::new(chat).unwrap(),
        ..message(id, id)
    }
}

/// Waits for `done` to say `expected` callers finished, failing (instead of hanging) if one
/// never gets its answer.
fn join_within(
    done: &std::sync::mpsc::Receiver<Vec<crate::messages::Arrival>>,
    expected: usize,
) -> Vec<Vec<crate::messages::Arrival>> {
    (0..expected)
        .map(|_| {
            done.recv_timeout(std::time::Duration::from_secs(60))
                .expect("a caller never got its answer: a job was left in the queue")
        })
        .collect()
}

#[test]
fn callers_alone_leave_no_message_unanswered_and_each_gets_its_own_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_owning_messages(&dir.path().join("cambot.db")).unwrap();
    // Without the ingest thread's rounds, a job left queued would never be answered.
    store.ingest().unwrap().set_idle_rounds(false);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    const PER_CALLER: usize = 400;
    // Sync callers on their own threads and async callers on the runtime, each in its own chat.
    let mut threads = Vec::new();
    for caller in 0..4 {
        let (store, done) = (store.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let chat = format!("sync{caller}@g.us");
            let arrivals = (0..PER_CALLER)
                .map(|i| {
                    let msg = chat_message(&chat, &format!("s{caller}-{i}"));
                    store.ingest().unwrap().store_blocking(msg).unwrap()
                })
                .collect();
            done.send(arrivals).unwrap();
        }));
    }
    for caller in 0..8 {
        let (store, done) = (store.clone(), done.clone());
        rt.spawn(async move {
            let chat = format!("async{caller}@g.us");
            let mut arrivals = Vec::new();
            for i in 0..PER_CALLER {
                let msg = chat_message(&chat, &format!("a{caller}-{i}"));
                arrivals.push(store.store_message_arrival(msg).await.unwrap());
            }
            done.send(arrivals).unwrap();
        });
    }
    let all = join_within(&finished, 12);
    let mut seqs = std::collections::HashSet::new();
    for arrivals in &all {
        assert_eq!(arrivals.len(), PER_CALLER);
        let mut previous = None;
        for a in arrivals {
            assert!(
                seqs.insert(a.message.seq),
                "seq {} handed out twice",
                a.message.seq
            );
            assert_eq!(
                a.previous_in_chat, previous,
                "{} names the wrong previous message",
                a.message.id
            );
            assert!(
                previous.is_none_or(|p| p < a.message.seq),
                "seqs go back in a chat"
            );
            previous = Some(a.message.seq);
        }
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_mover_too_far_behind_holds_messages_back_until_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_owning_messages(&dir.path().join("cambot.db")).unwrap();
    let backlog = store.ingest().unwrap().mover_backlog().unwrap();
    backlog.fetch_add(
        crate::ingest_loop::MOVER_BACKLOG,
        std::sync::atomic::Ordering::SeqCst,
    );
    let (done, answered) = std::sync::mpsc::channel();
    let s2 = store.clone();
    let caller = std::thread::spawn(move || {
        done.send(s2.store_message(&message("held", "held back")).unwrap())
            .unwrap();
    });
    assert!(
        answered
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "a message was taken while the mover was too far behind"
    );
    assert!(contents(&store).is_empty(), "nothing is stored meanwhile");
    backlog.fetch_sub(
        crate::ingest_loop::MOVER_BACKLOG,
        std::sync::atomic::Ordering::SeqCst,
    );
    // Nobody else calls: the ingest thread's round takes it.
    let seq = answered
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the held message was never taken once the mover caught up");
    caller.join().unwrap();
    assert_eq!(contents(&store), [(seq, "held back".to_owned())]);
}

#[test]
fn every_burst_of_simultaneous_callers_is_answered_in_full() {
    // A job queued while another caller is letting go of the state must not wait for the next
    // caller: here there is none until the whole burst is answered.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_owning_messages(&dir.path().join("cambot.db")).unwrap();
    store.ingest().unwrap().set_idle_rounds(false);
    store
        .ingest()
        .unwrap()
        .set_linger(std::time::Duration::from_micros(200));
    const CALLERS: usize = 6;
    const BURSTS: usize = 300;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CALLERS));
    let (done, finished) = std::sync::mpsc::channel();
    for caller in 0..CALLERS {
        let (store, done, barrier) = (store.clone(), done.clone(), barrier.clone());
        std::thread::spawn(move || {
            let chat = format!("burst{caller}@g.us");
            let arrivals = (0..BURSTS)
                .map(|i| {
                    barrier.wait();
                    let msg = chat_message(&chat, &format!("b{caller}-{i}"));
                    store.ingest().unwrap().store_blocking(msg).unwrap()
                })
                .collect();
            done.send(arrivals).unwrap();
        });
    }
    let all = join_within(&finished, CALLERS);
    assert!(all.iter().all(|a| a.len() == BURSTS));
}
