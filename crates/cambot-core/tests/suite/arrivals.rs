//! What the store tells the router about a message it just stored: the message as stored and
//! the seq of the chat's previous message, which lets the router pipe it without a read.
#![allow(clippy::disallowed_methods)] // Opens the database file directly, as another process would.

use cambot_core::Arrival;
use pretty_assertions::assert_eq;

use super::*;

const A: &str = "a@g.us";
const B: &str = "b@g.us";
const TS: &str = "2024-01-01T00:00:01.000Z";

#[tokio::test]
async fn each_message_names_the_previous_one_in_its_own_chat() {
    let s = store();
    let a1 = s.store_message(msg(A, "1", "one", TS)).await.unwrap();
    assert_eq!(a1.previous_in_chat, None, "nothing known before the first");
    let b1 = s.store_message(msg(B, "1", "other", TS)).await.unwrap();
    assert_eq!(b1.previous_in_chat, None, "another chat has its own chain");
    let a2 = s.store_message(msg(A, "2", "two", TS)).await.unwrap();
    assert_eq!(a2.previous_in_chat, Some(a1.message.seq));
    let b2 = s.store_message(msg(B, "2", "again", TS)).await.unwrap();
    assert_eq!(b2.previous_in_chat, Some(b1.message.seq));
}

#[tokio::test]
async fn the_arrival_is_the_row_a_reader_gets_back() {
    let s = store();
    let mut m = msg(A, "1", "hello <b>", TS);
    m.is_from_me = true;
    let arrival = s.store_message(m).await.unwrap();
    let rows = s.messages_since(&tenant(), &jid(A), 0, 10).await.unwrap();
    assert_eq!(rows, vec![arrival.message]);
}

#[tokio::test]
async fn a_repeated_delivery_keeps_its_seq_and_names_no_previous() {
    let s = store();
    let first = s.store_message(msg(A, "1", "first", TS)).await.unwrap();
    let second = s.store_message(msg(A, "2", "second", TS)).await.unwrap();
    let repeat = s.store_message(msg(A, "1", "edited", TS)).await.unwrap();
    assert_eq!(repeat.message.seq, first.message.seq);
    assert_eq!(repeat.previous_in_chat, None);
    // The repeat did not become the chat's newest message.
    let third = s.store_message(msg(A, "3", "third", TS)).await.unwrap();
    assert_eq!(third.previous_in_chat, Some(second.message.seq));
    let rows = s.messages_since(&tenant(), &jid(A), 0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.content.as_str()).collect::<Vec<_>>(),
        vec!["edited", "second", "third"]
    );
}

#[tokio::test]
async fn a_bot_message_is_in_the_chain_so_the_next_one_does_not_skip_past_it() {
    let s = store();
    let user = s.store_message(msg(A, "1", "hi", TS)).await.unwrap();
    let mut bot = msg(A, "2", "Andy: hello", TS);
    bot.is_bot_message = true;
    let bot = s.store_message(bot).await.unwrap();
    assert_eq!(bot.previous_in_chat, Some(user.message.seq));
    let next = s.store_message(msg(A, "3", "and?", TS)).await.unwrap();
    assert_eq!(next.previous_in_chat, Some(bot.message.seq));
}

#[tokio::test]
async fn concurrent_stores_into_one_chat_form_one_unbroken_chain() {
    let s = std::sync::Arc::new(store());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.store_message(msg(A, &i.to_string(), "x", TS))
                .await
                .unwrap()
        }));
    }
    let mut arrivals = Vec::new();
    for t in tasks {
        arrivals.push(t.await.unwrap());
    }
    arrivals.sort_by_key(|a| a.message.seq);
    assert_eq!(arrivals[0].previous_in_chat, None);
    for pair in arrivals.windows(2) {
        assert_eq!(pair[1].previous_in_chat, Some(pair[0].message.seq));
    }
}

#[tokio::test]
async fn a_message_stored_by_another_connection_is_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let daemon = SqliteStore::open(&path).unwrap();
    let admin = SqliteStore::open(&path).unwrap();
    let first = daemon.store_message(msg(A, "1", "one", TS)).await.unwrap();
    let by_admin = admin.store_message(msg(A, "2", "two", TS)).await.unwrap();
    assert!(by_admin.message.seq > first.message.seq);
    let third = daemon
        .store_message(msg(A, "3", "three", TS))
        .await
        .unwrap();
    assert_ne!(
        third.previous_in_chat,
        Some(first.message.seq),
        "the daemon's writer must not claim nothing came between"
    );
}

/// `data_version` is how the daemon notices an admin command in another process; its own writes
/// must not look like one (they made it re-read every registration once a second under load).
#[tokio::test]
async fn data_version_moves_for_another_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let daemon = SqliteStore::open(&path).unwrap();
    let admin = SqliteStore::open(&path).unwrap();
    let before = daemon.data_version().await.unwrap();
    for i in 0..5 {
        daemon
            .store_message(msg(A, &format!("own{i}"), "mine", TS))
            .await
            .unwrap();
    }
    assert_eq!(daemon.data_version().await.unwrap(), before, "own writes");
    admin
        .store_message(msg(A, "theirs", "admin", TS))
        .await
        .unwrap();
    assert_ne!(
        daemon.data_version().await.unwrap(),
        before,
        "another connection's write"
    );
}

/// Chat metadata and sessions written concurrently with messages share the batch writer's
/// transactions with them (the router writes them on runtime threads, which must not wait on the
/// connection's lock), and read back like any other write.
#[tokio::test]
async fn metadata_and_sessions_from_async_callers_commit_with_the_messages() {
    let s = store();
    let folder = cambot_protocol::GroupFolder::new("team").unwrap();
    let t = tenant();
    let (named, session, arrival) = tokio::join!(
        s.store_chat_metadata(meta(A, TS, Some("Team A"), Some(true))),
        s.set_session(&t, &folder, "session-1"),
        s.store_message(msg(A, "1", "hi", TS)),
    );
    named.unwrap();
    session.unwrap();
    assert_eq!(arrival.unwrap().message.content, "hi");
    assert_eq!(
        s.chat_name(&tenant(), &jid(A)).await.unwrap().as_deref(),
        Some("Team A")
    );
    assert_eq!(
        s.session(&tenant(), &folder).await.unwrap().as_deref(),
        Some("session-1")
    );
    s.set_session(&tenant(), &folder, "session-2")
        .await
        .unwrap();
    assert_eq!(
        s.session(&tenant(), &folder).await.unwrap().as_deref(),
        Some("session-2")
    );
}

/// The writer commits every queued write in one transaction; when one of them fails, the
/// transaction is rolled back and each write of the batch runs again alone, so only the failing
/// caller gets an error. Every other write commits exactly once, and no arrival names as its
/// previous message one that existed only in the rolled-back attempt.
///
/// No write the public API can queue fails at the SQL level on its own (chats are created on
/// demand, every column is bound from a valid value, cursors and sessions are upserts), so a
/// second connection on the file, as the admin CLI has, installs a trigger that rejects one
/// message. It also holds the write lock meanwhile, so that the failing message is queued
/// together with hundreds of others and is certain to share their batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_fails_only_its_caller_and_the_rest_of_its_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let s = SqliteStore::open(&path).unwrap();
    const C: &str = "c@g.us";
    let answered = stored_seq(&s, msg(C, "1", "answer me", TS)).await;
    let admin = rusqlite::Connection::open(&path).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER reject_poison BEFORE INSERT ON messages
             WHEN NEW.content = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned message'); END;",
        )
        .unwrap();
    admin.execute_batch("BEGIN IMMEDIATE").unwrap();

    let spawn_message = |chat: &'static str, id: String, content: &'static str| {
        let s = s.clone();
        tokio::spawn(async move { s.store_message(msg(chat, &id, content, TS)).await })
    };
    // The writer takes what is queued first and waits for the lock with it...
    let mut messages = Vec::new();
    for i in 0..100 {
        let chat = if i % 2 == 0 { A } else { B };
        messages.push(spawn_message(chat, format!("early{i}"), "x"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // ...so all of these queue behind it and make up its next batch, the poison among them.
    let mut poison = None;
    for i in 0..200 {
        let chat = if i % 2 == 0 { A } else { B };
        messages.push(spawn_message(chat, format!("late{i}"), "x"));
        if i == 100 {
            poison = Some(spawn_message(A, "poison".into(), "poison"));
        }
    }
    let reply = {
        let s = s.clone();
        tokio::spawn(async move {
            s.commit_reply(cambot_core::NewReply {
                tenant: tenant(),
                chat_jid: jid(C),
                text: "the answer".into(),
                origin: "router".into(),
                advance_to: Some(answered),
            })
            .await
        })
    };
    let folder = cambot_protocol::GroupFolder::new("team").unwrap();
    let session = {
        let (s, folder) = (s.clone(), folder.clone());
        tokio::spawn(async move { s.set_session(&tenant(), &folder, "session-1").await })
    };
    let named = {
        let s = s.clone();
        tokio::spawn(async move {
            s.store_chat_metadata(meta(B, TS, Some("Team B"), Some(true)))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    admin.execute_batch("COMMIT").unwrap();

    let err = poison.unwrap().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("poisoned message"), "{err}");
    let reply_id = reply.await.unwrap().unwrap();
    session.await.unwrap().unwrap();
    named.await.unwrap().unwrap();
    let mut arrivals = Vec::new();
    for m in messages {
        arrivals.push(m.await.unwrap().unwrap());
    }

    for chat in [A, B] {
        let mut acked: Vec<&Arrival> = arrivals
            .iter()
            .filter(|a| a.message.chat_jid.as_str() == chat)
            .collect();
        acked.sort_by_key(|a| a.message.seq);
        assert_eq!(acked.len(), 150);
        let stored = s
            .messages_since(&tenant(), &jid(chat), 0, 1_000)
            .await
            .unwrap();
        assert_eq!(
            stored,
            acked.iter().map(|a| a.message.clone()).collect::<Vec<_>>(),
            "every acknowledged message of {chat} once, in seq order, and nothing else"
        );
        assert_eq!(acked[0].previous_in_chat, None);
        for pair in acked.windows(2) {
            assert_eq!(
                pair[1].previous_in_chat,
                Some(pair[0].message.seq),
                "{chat}: the chain of arrivals is unbroken"
            );
        }
    }
    let outbox = s.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1, "the reply committed once");
    assert_eq!(
        (outbox[0].id, outbox[0].text.as_str()),
        (reply_id, "the answer")
    );
    assert_eq!(s.cursor(&tenant(), &jid(C)).await.unwrap(), answered);
    assert_eq!(
        s.session(&tenant(), &folder).await.unwrap().as_deref(),
        Some("session-1")
    );
    assert_eq!(
        s.chat_name(&tenant(), &jid(B)).await.unwrap().as_deref(),
        Some("Team B")
    );
    // The writer goes on, and the rejected message was never the chat's newest.
    let newest_a = s.latest_message_seq(&tenant(), &jid(A)).await.unwrap();
    let next = s.store_message(msg(A, "after", "fine", TS)).await.unwrap();
    assert_eq!(next.previous_in_chat, Some(newest_a));
}
