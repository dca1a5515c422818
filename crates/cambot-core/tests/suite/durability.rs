//! The file store as the daemon and the admin CLI use it: several stores (processes) on one
//! database, each seeing the others' commits at once; a restart keeps every acknowledged
//! message and counts seqs on; repeats keep their seq; reads racing writes are exact.

use std::collections::BTreeSet;

use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

const TS: &str = "2024-01-01T00:00:01.000Z";

fn db(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("cambot.db")
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&db(dir)).unwrap()
}

fn folder(name: &str) -> GroupFolder {
    GroupFolder::new(name).unwrap()
}

fn seqs(messages: &[cambot_core::StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn a_restart_keeps_every_message_cursor_and_session_and_counts_seqs_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let (chat, main) = (jid("a@g.us"), folder("main"));
    let mut acked = Vec::new();
    for n in 0..200 {
        acked.push(
            s.store_message(msg("a@g.us", &n.to_string(), "x", TS))
                .await
                .unwrap()
                .message
                .seq,
        );
    }
    s.advance_cursor(&tenant(), &chat, acked[9]).await.unwrap();
    // Never backwards.
    s.advance_cursor(&tenant(), &chat, acked[3]).await.unwrap();
    s.set_session(&tenant(), &main, "s-2").await.unwrap();
    s.set_session(&tenant(), &folder("other"), "s-9")
        .await
        .unwrap();
    s.clear_session(&tenant(), &folder("other")).await.unwrap();
    drop(s);
    let s = open(&dir);
    let all = s
        .messages_since(&tenant(), &jid("a@g.us"), 0, 1_000)
        .await
        .unwrap();
    assert_eq!(seqs(&all), acked);
    assert_eq!(s.cursor(&tenant(), &chat).await.unwrap(), acked[9]);
    assert_eq!(
        seqs(&s.pending_messages(&tenant(), &chat, 1_000).await.unwrap()),
        acked[10..].to_vec()
    );
    assert_eq!(
        s.session(&tenant(), &main).await.unwrap().as_deref(),
        Some("s-2")
    );
    assert_eq!(s.session(&tenant(), &folder("other")).await.unwrap(), None);
    let next = s
        .store_message(msg("a@g.us", "new", "x", TS))
        .await
        .unwrap();
    assert!(next.message.seq > *acked.last().unwrap());
    let repeat = s
        .store_message(msg("a@g.us", "7", "edited", TS))
        .await
        .unwrap();
    assert_eq!(
        repeat.message.seq, acked[7],
        "a repeat from before the restart"
    );
    assert_eq!(repeat.previous_in_chat, None, "a repeat is not the newest");
}

/// The admin CLI is another process with its own store: what it writes while the daemon runs
/// (messages, cursors, sessions, registrations) the daemon's store reads back at once, and the
/// other way round.
#[tokio::test]
async fn two_stores_on_one_database_see_each_others_writes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = open(&dir);
    let admin = open(&dir);
    let chat = jid("a@g.us");
    let first = daemon
        .store_message(msg("a@g.us", "1", "one", TS))
        .await
        .unwrap();
    let second = stored_seq(&admin, msg("a@g.us", "2", "two", TS)).await;
    assert!(second > first.message.seq, "seqs are shared, not per store");
    assert_eq!(
        seqs(&daemon.pending_messages(&tenant(), &chat, 10).await.unwrap()),
        vec![first.message.seq, second]
    );
    // The daemon's writer remembered the chat's newest message; the admin's write must not be
    // skipped by the next arrival's "previous" link.
    let third = daemon
        .store_message(msg("a@g.us", "3", "three", TS))
        .await
        .unwrap();
    assert_ne!(third.previous_in_chat, Some(first.message.seq));
    admin
        .advance_cursor(&tenant(), &chat, second)
        .await
        .unwrap();
    assert_eq!(daemon.cursor(&tenant(), &chat).await.unwrap(), second);
    assert_eq!(
        seqs(&daemon.pending_messages(&tenant(), &chat, 10).await.unwrap()),
        vec![third.message.seq]
    );
    admin
        .set_session(&tenant(), &folder("main"), "s-1")
        .await
        .unwrap();
    assert_eq!(
        daemon
            .session(&tenant(), &folder("main"))
            .await
            .unwrap()
            .as_deref(),
        Some("s-1")
    );
    daemon
        .set_session(&tenant(), &folder("main"), "s-2")
        .await
        .unwrap();
    assert_eq!(
        admin
            .session(&tenant(), &folder("main"))
            .await
            .unwrap()
            .as_deref(),
        Some("s-2")
    );
    admin
        .clear_session(&tenant(), &folder("main"))
        .await
        .unwrap();
    assert_eq!(
        daemon.session(&tenant(), &folder("main")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn many_concurrent_deliveries_of_one_id_get_one_seq() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.store_message(msg("b@g.us", "dup", &format!("v{i}"), TS))
                .await
                .unwrap()
                .message
                .seq
        }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        got.insert(t.await.unwrap());
    }
    assert_eq!(got.len(), 1, "one seq for one id");
    let all = s
        .messages_since(&tenant(), &jid("b@g.us"), 0, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

/// Readers racing a writer while the cursor moves, as the router does: every message
/// acknowledged before a read and past the cursor is in that read, once, in order; nothing at
/// or before the cursor is. The writer is a task on another worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_reads_during_writes_and_cursor_moves_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let chats: Vec<String> = (0..4).map(|c| format!("c{c}@g.us")).collect();
    let (writer, acked) = spawn_acked_writer(&s, &chats, 3_000, Some(64));
    let mut cursors = vec![0_i64; chats.len()];
    let mut reads = 0;
    while !writer.is_finished() || reads < 50 {
        for (c, chat) in chats.iter().enumerate() {
            let before: Vec<i64> = acked.lock().unwrap()[c].clone();
            let read = seqs(
                &s.pending_messages(&tenant(), &jid(chat), 100_000)
                    .await
                    .unwrap(),
            );
            assert!(read.windows(2).all(|w| w[0] < w[1]), "ordered, no repeats");
            assert!(
                read.first().is_none_or(|&q| q > cursors[c]),
                "read {reads} of {chat} shows an answered message"
            );
            let read_set: BTreeSet<i64> = read.iter().copied().collect();
            let missing: Vec<&i64> = before
                .iter()
                .filter(|&&q| q > cursors[c] && !read_set.contains(&q))
                .collect();
            assert!(
                missing.is_empty(),
                "read {reads} of {chat} (cursor {}) misses {missing:?}",
                cursors[c]
            );
            if reads % 2 == 0
                && let Some(&last) = read.last()
            {
                s.advance_cursor(&tenant(), &jid(chat), last).await.unwrap();
                cursors[c] = last;
            }
        }
        reads += 1;
    }
    writer.await.unwrap();
}
