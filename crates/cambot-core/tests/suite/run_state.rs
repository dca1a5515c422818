//! The daemon's store answers cursors, sessions and (when SQLite holds nothing past the cursor)
//! pending messages from memory. These tests hold it to exactly what SQLite says: after moves,
//! after a dropped caller, across a restart, and with no other store writing behind its back.

use std::collections::BTreeSet;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

const TS: &str = "2024-01-01T00:00:01.000Z";

fn db(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("cambot.db")
}

fn owner(dir: &tempfile::TempDir) -> Store {
    Store::open_owning_messages(&db(dir)).unwrap()
}

fn folder(name: &str) -> GroupFolder {
    GroupFolder::new(name).unwrap()
}

fn seqs(messages: &[cambot_core::StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Closes the owner and waits until a new owner can open the database.
fn reopen(store: Store, dir: &tempfile::TempDir) -> Store {
    store.close_message_intake();
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open_owning_messages(&db(dir)) {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "never reopened: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn cursors_and_sessions_survive_a_restart_and_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let (chat, main) = (jid("a@g.us"), folder("main"));
    assert_eq!(s.cursor(&tenant(), &chat).unwrap(), 0);
    assert_eq!(s.session(&tenant(), &main).unwrap(), None);
    s.advance_cursor_async(&tenant(), &chat, 7).await.unwrap();
    s.commit_reply_async(&tenant(), &chat, "hi", "router", Some(9))
        .await
        .unwrap();
    // Never backwards, in memory as in the row.
    s.advance_cursor(&tenant(), &chat, 3).unwrap();
    s.set_session_async(&tenant(), &main, "s-1").await.unwrap();
    s.set_session_async(&tenant(), &main, "s-2").await.unwrap();
    s.set_session(&tenant(), &folder("other"), "s-9").unwrap();
    s.clear_session(&tenant(), &folder("other")).unwrap();
    assert_eq!(s.cursor(&tenant(), &chat).unwrap(), 9);
    assert_eq!(s.session(&tenant(), &main).unwrap().as_deref(), Some("s-2"));
    assert_eq!(s.session(&tenant(), &folder("other")).unwrap(), None);
    let s = reopen(s, &dir);
    assert_eq!(s.cursor(&tenant(), &chat).unwrap(), 9);
    assert_eq!(s.session(&tenant(), &main).unwrap().as_deref(), Some("s-2"));
    assert_eq!(s.session(&tenant(), &folder("other")).unwrap(), None);
    // What a plain store reads from SQLite agrees.
    s.close_message_intake();
    drop(s);
    let plain = Store::open(&db(&dir)).unwrap();
    assert_eq!(plain.cursor(&tenant(), &chat).unwrap(), 9);
    assert_eq!(
        plain.session(&tenant(), &main).unwrap().as_deref(),
        Some("s-2")
    );
}

/// The writer thread moves the in-memory cursor when it commits, not the caller when it hears
/// back: a caller that stops waiting (a cancelled future) must not leave memory behind SQLite,
/// or the next run would answer the same messages again.
#[tokio::test]
async fn a_commit_whose_caller_stopped_waiting_still_moves_the_cursor_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let tenant = tenant();
    let plain = Store::open(&db(&dir)).unwrap();
    let mut dropped = 0;
    // The writer thread may commit and answer before the first poll looks for the answer (a
    // preempted test thread); such a round proves nothing, so there are several.
    for round in 0..20 {
        let chat = jid(&format!("c{round}@g.us"));
        let mut commit = Box::pin(s.commit_reply_async(&tenant, &chat, "hi", "router", Some(42)));
        // Polled once (which queues the write), then dropped unless already done.
        let first = std::future::poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await;
        if first.is_pending() {
            dropped += 1;
        }
        drop(commit);
        let deadline = Instant::now() + Duration::from_secs(10);
        while plain.cursor(&tenant, &chat).unwrap() != 42 {
            assert!(Instant::now() < deadline, "the reply never committed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The writer applies the move to memory just after COMMIT: a moment after SQLite shows
        // it, never only when (or if) the caller hears back.
        while s.cursor(&tenant, &chat).unwrap() != 42 {
            assert!(
                Instant::now() < deadline,
                "round {round}: memory never saw the committed cursor"
            );
            std::thread::yield_now();
        }
    }
    assert!(dropped > 0, "no commit was still pending at its first poll");
}

#[tokio::test]
async fn another_store_cannot_move_cursors_or_sessions_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = owner(&dir);
    let admin = Store::open(&db(&dir)).unwrap();
    let (chat, main) = (jid("a@g.us"), folder("main"));
    let refusals = [
        admin.advance_cursor(&tenant(), &chat, 5).unwrap_err(),
        admin
            .commit_reply(&tenant(), &chat, "hi", "cli", Some(5))
            .unwrap_err(),
        admin.set_session(&tenant(), &main, "s").unwrap_err(),
        admin.clear_session(&tenant(), &main).unwrap_err(),
    ];
    for refused in refusals {
        assert!(
            refused.to_string().contains("running cambot daemon"),
            "a clear reason: {refused}"
        );
    }
    // A reply that moves no cursor is fine (the outbox is not mirrored).
    admin
        .commit_reply(&tenant(), &chat, "hi", "cli", None)
        .unwrap();
    assert_eq!(daemon.cursor(&tenant(), &chat).unwrap(), 0);
    daemon.close_message_intake();
    drop(daemon);
    // Once the daemon is gone, the admin may.
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin.advance_cursor(&tenant(), &chat, 5).is_err() {
        assert!(
            Instant::now() < deadline,
            "the journal lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(admin.cursor(&tenant(), &chat).unwrap(), 5);
}

/// A chat with messages from before the daemon started: SQLite holds them, so pending messages
/// must come from SQLite (the overlay alone would be empty).
#[tokio::test]
async fn messages_stored_before_the_daemon_started_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Store::open(&db(&dir)).unwrap();
    let first = plain.store_message(&msg("a@g.us", "1", "one", TS)).unwrap();
    let second = plain.store_message(&msg("a@g.us", "2", "two", TS)).unwrap();
    plain
        .advance_cursor(&tenant(), &jid("a@g.us"), first)
        .unwrap();
    drop(plain);
    let s = owner(&dir);
    let pending = s.pending_messages(&tenant(), &jid("a@g.us"), 10).unwrap();
    assert_eq!(seqs(&pending), vec![second]);
    assert_eq!(
        seqs(&s.pending_messages(&tenant(), &jid("b@g.us"), 10).unwrap()),
        Vec::<i64>::new()
    );
}

/// Readers racing the mover while the cursor moves, as the router does: every message
/// acknowledged before a read and past the cursor is in that read, once, in order; nothing at
/// or before the cursor is. Reads answer from memory whenever SQLite holds nothing past the
/// cursor, and from SQLite otherwise; both happen here many times.
#[test]
fn pending_reads_during_moves_and_cursor_moves_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let chats: Vec<String> = (0..4).map(|c| format!("c{c}@g.us")).collect();
    let (writer, acked) = spawn_acked_writer(&s, &chats, 6_000, Some(64));
    let mut cursors = vec![0_i64; chats.len()];
    let mut reads = 0;
    while !writer.is_finished() || reads < 50 {
        for (c, chat) in chats.iter().enumerate() {
            let before: Vec<i64> = acked.lock().unwrap()[c].clone();
            let read = seqs(&s.pending_messages(&tenant(), &jid(chat), 100_000).unwrap());
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
            // Answer every other read's batch, as a run would.
            if reads % 2 == 0
                && let Some(&last) = read.last()
            {
                s.advance_cursor(&tenant(), &jid(chat), last).unwrap();
                cursors[c] = last;
            }
        }
        reads += 1;
    }
    writer.join().unwrap();
}
