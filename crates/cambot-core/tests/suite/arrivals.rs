//! What the store tells the router about a message it just stored: the message as stored and
//! the seq of the chat's previous message, which lets the router pipe it without a read.

use pretty_assertions::assert_eq;

use super::*;

const A: &str = "a@g.us";
const B: &str = "b@g.us";
const TS: &str = "2024-01-01T00:00:01.000Z";

#[tokio::test]
async fn each_message_names_the_previous_one_in_its_own_chat() {
    let s = store();
    let a1 = s
        .store_message_arrival(msg(A, "1", "one", TS))
        .await
        .unwrap();
    assert_eq!(a1.previous_in_chat, None, "nothing known before the first");
    let b1 = s
        .store_message_arrival(msg(B, "1", "other", TS))
        .await
        .unwrap();
    assert_eq!(b1.previous_in_chat, None, "another chat has its own chain");
    let a2 = s
        .store_message_arrival(msg(A, "2", "two", TS))
        .await
        .unwrap();
    assert_eq!(a2.previous_in_chat, Some(a1.message.seq));
    let b2 = s
        .store_message_arrival(msg(B, "2", "again", TS))
        .await
        .unwrap();
    assert_eq!(b2.previous_in_chat, Some(b1.message.seq));
}

#[tokio::test]
async fn the_arrival_is_the_row_a_reader_gets_back() {
    let s = store();
    let mut m = msg(A, "1", "hello <b>", TS);
    m.is_from_me = true;
    let arrival = s.store_message_arrival(m).await.unwrap();
    let rows = s.messages_since(&tenant(), &jid(A), 0, 10).unwrap();
    assert_eq!(rows, vec![arrival.message]);
}

#[tokio::test]
async fn a_repeated_delivery_keeps_its_seq_and_names_no_previous() {
    let s = store();
    let first = s
        .store_message_arrival(msg(A, "1", "first", TS))
        .await
        .unwrap();
    let second = s
        .store_message_arrival(msg(A, "2", "second", TS))
        .await
        .unwrap();
    let repeat = s
        .store_message_arrival(msg(A, "1", "edited", TS))
        .await
        .unwrap();
    assert_eq!(repeat.message.seq, first.message.seq);
    assert_eq!(repeat.previous_in_chat, None);
    // The repeat did not become the chat's newest message.
    let third = s
        .store_message_arrival(msg(A, "3", "third", TS))
        .await
        .unwrap();
    assert_eq!(third.previous_in_chat, Some(second.message.seq));
    let rows = s.messages_since(&tenant(), &jid(A), 0, 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.content.as_str()).collect::<Vec<_>>(),
        vec!["edited", "second", "third"]
    );
}

#[tokio::test]
async fn a_bot_message_is_in_the_chain_so_the_next_one_does_not_skip_past_it() {
    let s = store();
    let user = s
        .store_message_arrival(msg(A, "1", "hi", TS))
        .await
        .unwrap();
    let mut bot = msg(A, "2", "Andy: hello", TS);
    bot.is_bot_message = true;
    let bot = s.store_message_arrival(bot).await.unwrap();
    assert_eq!(bot.previous_in_chat, Some(user.message.seq));
    let next = s
        .store_message_arrival(msg(A, "3", "and?", TS))
        .await
        .unwrap();
    assert_eq!(next.previous_in_chat, Some(bot.message.seq));
}

#[tokio::test]
async fn concurrent_stores_into_one_chat_form_one_unbroken_chain() {
    let s = std::sync::Arc::new(store());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.store_message_arrival(msg(A, &i.to_string(), "x", TS))
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
    let daemon = cambot_core::Store::open(&path).unwrap();
    let admin = cambot_core::Store::open(&path).unwrap();
    let first = daemon
        .store_message_arrival(msg(A, "1", "one", TS))
        .await
        .unwrap();
    let by_admin = admin
        .store_message_arrival(msg(A, "2", "two", TS))
        .await
        .unwrap();
    assert!(by_admin.message.seq > first.message.seq);
    let third = daemon
        .store_message_arrival(msg(A, "3", "three", TS))
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
    let daemon = cambot_core::Store::open(&path).unwrap();
    let admin = cambot_core::Store::open(&path).unwrap();
    let before = daemon.data_version().unwrap();
    for i in 0..5 {
        daemon
            .store_message_arrival(msg(A, &format!("own{i}"), "mine", TS))
            .await
            .unwrap();
    }
    assert_eq!(daemon.data_version().unwrap(), before, "own writes");
    admin
        .store_message_arrival(msg(A, "theirs", "admin", TS))
        .await
        .unwrap();
    assert_ne!(
        daemon.data_version().unwrap(),
        before,
        "another connection's write"
    );
}

/// Chat metadata and sessions written from async code share the batch writer's transactions
/// with messages (the router writes them on runtime threads, which must not wait on the
/// connection's lock), and read back like the synchronous writes.
#[tokio::test]
async fn metadata_and_sessions_from_async_callers_commit_with_the_messages() {
    let s = store();
    let folder = cambot_protocol::GroupFolder::new("team").unwrap();
    let t = tenant();
    let (named, session, arrival) = tokio::join!(
        s.store_chat_metadata_async(meta(A, TS, Some("Team A"), Some(true))),
        s.set_session_async(&t, &folder, "session-1"),
        s.store_message_arrival(msg(A, "1", "hi", TS)),
    );
    named.unwrap();
    session.unwrap();
    assert_eq!(arrival.unwrap().message.content, "hi");
    assert_eq!(
        s.chat_name(&tenant(), &jid(A)).unwrap().as_deref(),
        Some("Team A")
    );
    assert_eq!(
        s.session(&tenant(), &folder).unwrap().as_deref(),
        Some("session-1")
    );
    s.set_session_async(&tenant(), &folder, "session-2")
        .await
        .unwrap();
    assert_eq!(
        s.session(&tenant(), &folder).unwrap().as_deref(),
        Some("session-2")
    );
}
