//! The daemon's store ([`Store::open_owning_messages`]): messages acknowledged from the ingest
//! journal before SQLite has them. Every read must see them at once, exactly once; repeats keep
//! their seq; a restart replays what was not moved; and no other store writes messages
//! meanwhile.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use pretty_assertions::assert_eq;

use super::*;

const TS: &str = "2024-01-01T00:00:01.000Z";

fn owner(dir: &tempfile::TempDir) -> Store {
    Store::open_owning_messages(&dir.path().join("cambot.db")).unwrap()
}

/// Waits until the mover has put every acknowledged message into SQLite.
fn wait_moved(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.unmoved_messages() > 0 {
        assert!(Instant::now() < deadline, "the mover never caught up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Closes the owner's intake and waits until its lock is free (its mover is done).
fn close(store: Store, dir: &tempfile::TempDir) {
    store.close_message_intake();
    drop(store);
    let plain = Store::open(&dir.path().join("cambot.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain
        .store_message(&msg("probe@g.us", "probe", "x", TS))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the journal lock was never released"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn seqs(messages: &[cambot_core::StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn a_journaled_message_is_readable_at_once_and_after_its_move() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let a = s
        .store_message_arrival(msg("a@g.us", "1", "one", TS))
        .await
        .unwrap();
    let b = s
        .store_message_arrival(msg("a@g.us", "2", "two", TS))
        .await
        .unwrap();
    assert_eq!(a.previous_in_chat, None);
    assert_eq!(b.previous_in_chat, Some(a.message.seq));
    for moved in [false, true] {
        if moved {
            wait_moved(&s);
        }
        let since = s.messages_since(&tenant(), &jid("a@g.us"), 0, 10).unwrap();
        assert_eq!(
            seqs(&since),
            vec![a.message.seq, b.message.seq],
            "moved: {moved}"
        );
        let pending = s.pending_messages(&tenant(), &jid("a@g.us"), 10).unwrap();
        assert_eq!(pending.len(), 2, "moved: {moved}");
        assert_eq!(
            s.latest_message_seq(&tenant(), &jid("a@g.us")).unwrap(),
            b.message.seq
        );
        let (new, cursor) = s
            .new_messages(&tenant(), &[jid("a@g.us")], a.message.seq)
            .unwrap();
        assert_eq!((seqs(&new), cursor), (vec![b.message.seq], b.message.seq));
        let history = s.chat_history(&tenant(), &jid("a@g.us"), 1).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].content, "two");
    }
    // The cursor hides what was answered, from the overlay as from the table.
    s.advance_cursor(&tenant(), &jid("a@g.us"), a.message.seq)
        .unwrap();
    let pending = s.pending_messages(&tenant(), &jid("a@g.us"), 10).unwrap();
    assert_eq!(seqs(&pending), vec![b.message.seq]);
}

/// Pending messages start after the router's cursor, whether the messages before it are in
/// SQLite or still in the journal's overlay (the cursor comes from SQLite; the overlay is
/// filtered by it).
#[tokio::test]
async fn pending_messages_start_after_the_cursor_moved_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let chat = jid("a@g.us");
    let mut stored = Vec::new();
    for (i, id) in ["1", "2", "3", "4"].into_iter().enumerate() {
        let a = s
            .store_message_arrival(msg("a@g.us", id, id, TS))
            .await
            .unwrap();
        stored.push(a.message.seq);
        if i == 1 {
            // 1 and 2 in SQLite; 3 and 4 most likely still unmoved (the mover waits 10 ms).
            wait_moved(&s);
        }
    }
    let pending = |s: &Store| seqs(&s.pending_messages(&tenant(), &chat, 10).unwrap());
    assert_eq!(pending(&s), stored);
    s.advance_cursor(&tenant(), &chat, stored[0]).unwrap();
    assert_eq!(pending(&s), stored[1..]);
    s.advance_cursor(&tenant(), &chat, stored[2]).unwrap();
    assert_eq!(pending(&s), stored[3..]);
    wait_moved(&s);
    assert_eq!(pending(&s), stored[3..]);
    assert_eq!(
        seqs(&s.pending_messages(&tenant(), &chat, 0).unwrap()),
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn a_repeat_keeps_its_seq_whether_or_not_it_was_moved() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let first = s
        .store_message_arrival(msg("a@g.us", "1", "draft", TS))
        .await
        .unwrap();
    // Not moved yet (the mover waits up to 10 ms): the overlay answers.
    let again = s
        .store_message_arrival(msg("a@g.us", "1", "edited", TS))
        .await
        .unwrap();
    assert_eq!(again.message.seq, first.message.seq);
    assert_eq!(
        again.previous_in_chat, None,
        "a repeat is not the chat's newest"
    );
    wait_moved(&s);
    // Moved: the table answers.
    let third = s
        .store_message_arrival(msg("a@g.us", "1", "final", TS))
        .await
        .unwrap();
    assert_eq!(third.message.seq, first.message.seq);
    for moved in [false, true] {
        if moved {
            wait_moved(&s);
        }
        let all = s.messages_since(&tenant(), &jid("a@g.us"), 0, 10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].content, "final", "moved: {moved}");
    }
    // Two deliveries in one batch: many concurrent stores of the same id get one seq.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.store_message_arrival(msg("b@g.us", "dup", &format!("v{i}"), TS))
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
}

/// Readers racing the mover: every message acknowledged before a read starts is in that read,
/// once, in seq order.
#[test]
fn reads_during_moves_never_miss_or_repeat_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let chats: Vec<String> = (0..4).map(|c| format!("c{c}@g.us")).collect();
    let (writer, acked) = spawn_acked_writer(&s, &chats, 6_000, None);
    let mut reads = 0;
    while !writer.is_finished() || reads < 50 {
        for (c, chat) in chats.iter().enumerate() {
            let before: Vec<i64> = acked.lock().unwrap()[c].clone();
            let read = seqs(&s.messages_since(&tenant(), &jid(chat), 0, 100_000).unwrap());
            assert!(read.windows(2).all(|w| w[0] < w[1]), "ordered, no repeats");
            let read: BTreeSet<i64> = read.into_iter().collect();
            let missing: Vec<&i64> = before.iter().filter(|q| !read.contains(q)).collect();
            assert!(
                missing.is_empty(),
                "read {reads} of {chat} misses {missing:?}"
            );
        }
        reads += 1;
    }
    writer.join().unwrap();
    wait_moved(&s);
    let total: usize = chats
        .iter()
        .map(|c| {
            s.messages_since(&tenant(), &jid(c), 0, 100_000)
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(total, 6_000);
}

#[tokio::test]
async fn another_store_cannot_write_messages_while_the_daemon_owns_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let daemon = owner(&dir);
    let admin = Store::open(&path).unwrap();
    let refused = admin
        .store_message_arrival(msg("a@g.us", "1", "x", TS))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("daemon"),
        "a clear reason: {refused}"
    );
    let second = Store::open_owning_messages(&path);
    assert!(second.is_err(), "one owner at a time");
    let kept = daemon
        .store_message_arrival(msg("a@g.us", "1", "x", TS))
        .await
        .unwrap();
    close(daemon, &dir);
    // Once the daemon is gone, the admin writes, above every seq the daemon handed out.
    let later = admin
        .store_message_arrival(msg("a@g.us", "2", "y", TS))
        .await
        .unwrap();
    assert!(later.message.seq > kept.message.seq);
}

#[tokio::test]
async fn a_restart_keeps_every_message_and_counts_seqs_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let mut acked = Vec::new();
    for n in 0..200 {
        acked.push(
            s.store_message_arrival(msg("a@g.us", &n.to_string(), "x", TS))
                .await
                .unwrap()
                .message
                .seq,
        );
    }
    close(s, &dir);
    let s = owner(&dir);
    let all = s
        .messages_since(&tenant(), &jid("a@g.us"), 0, 1_000)
        .unwrap();
    assert_eq!(seqs(&all), acked);
    let next = s
        .store_message_arrival(msg("a@g.us", "new", "x", TS))
        .await
        .unwrap();
    assert!(next.message.seq > *acked.last().unwrap());
    let repeat = s
        .store_message_arrival(msg("a@g.us", "7", "x", TS))
        .await
        .unwrap();
    assert_eq!(
        repeat.message.seq, acked[7],
        "a repeat from before the restart"
    );
}

/// Past a segment's size the journal switches to the other segment, and empties the old one
/// once its messages are durable in SQLite; nothing is lost across the switches.
#[tokio::test]
async fn segments_are_recycled_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let big = "x".repeat(4_000);
    for n in 0..6_000 {
        s.store_message_arrival(msg("a@g.us", &n.to_string(), &big, TS))
            .await
            .unwrap();
    }
    wait_moved(&s);
    let segment_len = |name: &str| {
        std::fs::metadata(dir.path().join(format!("cambot.db-ingest-{name}")))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    // 24 MB went through 8 MiB segments: without recycling one would hold far more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_len("a") + segment_len("b") > 17 << 20 {
        assert!(
            Instant::now() < deadline,
            "sealed segments were never emptied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    close(s, &dir);
    let s = owner(&dir);
    let all = s
        .messages_since(&tenant(), &jid("a@g.us"), 0, 10_000)
        .unwrap();
    assert_eq!(all.len(), 6_000);
}

/// A store that does not own the journal holds its shared lock through one file handle, however
/// many writes are in flight (a handle per write ran out of file descriptors when a thousand
/// writes waited for one commit, with `router.ingest_journal = false`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_writes_of_another_store_share_one_lock_handle() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("cambot.db")).unwrap();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // The first write opens what every later one shares (the WAL, the lock file).
    s.store_message_arrival(msg("a@g.us", "first", "x", TS))
        .await
        .unwrap();
    let before = fds();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(fds());
                std::thread::sleep(Duration::from_micros(200));
            }
            peak
        })
    };
    let mut tasks = Vec::new();
    for n in 0..3_000 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.store_message_arrival(msg("a@g.us", &n.to_string(), "x", TS))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.join().unwrap();
    // A few more may open lazily beside (the checkpoint thread's WAL handle); not one per write.
    assert!(
        peak < before + 20,
        "{before} file descriptors before, {peak} at the peak"
    );
    // Idle again: the lock is free for a daemon.
    let daemon = owner(&dir);
    assert_eq!(
        daemon
            .messages_since(&tenant(), &jid("a@g.us"), 0, 10_000)
            .unwrap()
            .len(),
        3_001
    );
}

#[test]
fn a_close_while_callers_store_answers_every_caller_and_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = owner(&dir);
    let (done, answered) = std::sync::mpsc::channel();
    const CALLERS: usize = 4;
    for caller in 0..CALLERS {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            let chat = format!("closing{caller}@g.us");
            let mut acknowledged = Vec::new();
            let mut refused = false;
            for i in 0..5_000 {
                match s.store_message(&msg(&chat, &format!("m{i}"), "x", TS)) {
                    Ok(seq) => acknowledged.push(seq),
                    Err(_) => {
                        refused = true;
                        break;
                    }
                }
            }
            done.send((chat, acknowledged, refused)).unwrap();
        });
    }
    // Let the callers get going, then close under them.
    while s.unmoved_messages() < 200 {
        std::thread::sleep(Duration::from_millis(1));
    }
    s.close_message_intake();
    let callers: Vec<(String, Vec<i64>, bool)> = (0..CALLERS)
        .map(|_| {
            answered
                .recv_timeout(Duration::from_secs(60))
                .expect("a caller was never answered after the close")
        })
        .collect();
    assert!(
        callers.iter().any(|(_, _, refused)| *refused),
        "no store was refused after the close (the callers finished first; store more)"
    );
    close(s, &dir);
    let reopened = owner(&dir);
    for (chat, acknowledged, _) in callers {
        let stored: BTreeSet<i64> = seqs(
            &reopened
                .messages_since(&tenant(), &jid(&chat), 0, 100_000)
                .unwrap(),
        )
        .into_iter()
        .collect();
        for seq in acknowledged {
            assert!(
                stored.contains(&seq),
                "{chat}: acknowledged seq {seq} was lost"
            );
        }
    }
}
