//! The seed's db.test.ts cases, ported. Cursors are message seqs instead of timestamps, and
//! every read is per chat (the seed's global `getNewMessages` cursor is gone).

use pretty_assertions::assert_eq;

use super::*;

const G: &str = "group@g.us";

#[tokio::test]
async fn stored_message_is_returned_with_its_fields() {
    let s = store();
    s.store_message(msg(G, "m1", "hello world", "2024-01-01T00:00:01.000Z"))
        .await
        .unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "m1");
    assert_eq!(rows[0].sender, "123@s.whatsapp.net");
    assert_eq!(rows[0].sender_name, "Alice");
    assert_eq!(rows[0].content, "hello world");
}

#[tokio::test]
async fn empty_content_is_stored_and_returned() {
    let s = store();
    s.store_message(msg(G, "m1", "", "2024-01-01T00:00:01.000Z"))
        .await
        .unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).await.unwrap();
    assert_eq!(rows[0].content, "");
}

#[tokio::test]
async fn is_from_me_is_stored_and_returned() {
    let s = store();
    let mut m = msg(G, "m1", "mine", "2024-01-01T00:00:01.000Z");
    m.is_from_me = true;
    s.store_message(m).await.unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).await.unwrap();
    assert!(rows[0].is_from_me);
}

#[tokio::test]
async fn same_id_and_chat_twice_is_one_row_with_latest_content() {
    let s = store();
    let seq1 = stored_seq(&s, msg(G, "m1", "first", "2024-01-01T00:00:01.000Z")).await;
    let seq2 = stored_seq(&s, msg(G, "m1", "second", "2024-01-01T00:00:01.000Z")).await;
    assert_eq!(seq1, seq2, "a repeat keeps its arrival seq");
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].content, "second");
}

async fn four_messages(s: &SqliteStore) -> Vec<i64> {
    let mut seqs = Vec::new();
    seqs.push(stored_seq(s, msg(G, "m1", "first", "2024-01-01T00:00:01.000Z")).await);
    seqs.push(stored_seq(s, msg(G, "m2", "second", "2024-01-01T00:00:02.000Z")).await);
    let mut bot = msg(G, "m3", "bot reply", "2024-01-01T00:00:03.000Z");
    bot.is_bot_message = true;
    seqs.push(stored_seq(s, bot).await);
    seqs.push(stored_seq(s, msg(G, "m4", "third", "2024-01-01T00:00:04.000Z")).await);
    seqs
}

#[tokio::test]
async fn messages_since_returns_only_rows_after_the_cursor_and_no_bot_rows() {
    let s = store();
    let seqs = four_messages(&s).await;
    let rows = s
        .messages_since(&tenant(), &jid(G), seqs[1], 100)
        .await
        .unwrap();
    let contents: Vec<_> = rows.iter().map(|r| r.content.as_str()).collect();
    assert_eq!(contents, vec!["third"]);
}

#[tokio::test]
async fn bot_flagged_rows_are_excluded() {
    let s = store();
    four_messages(&s).await;
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).await.unwrap();
    assert!(rows.iter().all(|r| r.content != "bot reply"));
}

#[tokio::test]
async fn empty_cursor_returns_all_non_bot_rows() {
    let s = store();
    four_messages(&s).await;
    assert_eq!(
        s.messages_since(&tenant(), &jid(G), 0, 100)
            .await
            .unwrap()
            .len(),
        3
    );
}

/// The seed's `getNewMessages` across chats, read chat by chat: bot messages are excluded,
/// each chat's rows come in seq order, and seqs order arrivals across chats too (the newest
/// seq read is the newest message stored).
#[tokio::test]
async fn messages_of_several_chats_exclude_bot_rows_and_keep_arrival_order() {
    let s = store();
    let a = stored_seq(
        &s,
        msg("g1@g.us", "a1", "g1 msg1", "2024-01-01T00:00:01.000Z"),
    )
    .await;
    let b = stored_seq(
        &s,
        msg("g2@g.us", "b1", "g2 msg1", "2024-01-01T00:00:02.000Z"),
    )
    .await;
    let mut bot = msg("g1@g.us", "a2", "bot", "2024-01-01T00:00:03.000Z");
    bot.is_bot_message = true;
    s.store_message(bot).await.unwrap();
    let c = stored_seq(
        &s,
        msg("g1@g.us", "a3", "g1 msg2", "2024-01-01T00:00:04.000Z"),
    )
    .await;
    let read = |chat: &'static str| {
        let s = &s;
        async move {
            s.messages_since(&tenant(), &jid(chat), 0, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.seq, m.content))
                .collect::<Vec<_>>()
        }
    };
    let g1 = read("g1@g.us").await;
    let g2 = read("g2@g.us").await;
    assert_eq!(g1, [(a, "g1 msg1".into()), (c, "g1 msg2".into())]);
    assert_eq!(g2, [(b, "g2 msg1".into())]);
    assert!(a < b && b < c);
    let newest = g1.iter().chain(&g2).map(|(seq, _)| *seq).max();
    assert_eq!(newest, Some(c));
    assert_eq!(
        s.latest_message_seq(&tenant(), &jid("g1@g.us"))
            .await
            .unwrap(),
        c
    );
}

/// The seed's `getNewMessages` filtered by its cursor: a seq read as the cursor hides that
/// message and everything before it, in every chat; the router's per-chat cursor does the same
/// for the one chat it belongs to.
#[tokio::test]
async fn messages_of_several_chats_are_filtered_by_the_cursor() {
    let s = store();
    let a = stored_seq(&s, msg("g1@g.us", "a1", "one", "2024-01-01T00:00:01.000Z")).await;
    stored_seq(&s, msg("g2@g.us", "b1", "two", "2024-01-01T00:00:02.000Z")).await;
    let since = |chat: &'static str| {
        let s = &s;
        async move {
            s.messages_since(&tenant(), &jid(chat), a, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.content)
                .collect::<Vec<_>>()
        }
    };
    assert!(since("g1@g.us").await.is_empty());
    assert_eq!(since("g2@g.us").await, ["two"]);
    s.advance_cursor(&tenant(), &jid("g1@g.us"), a)
        .await
        .unwrap();
    assert!(
        s.pending_messages(&tenant(), &jid("g1@g.us"), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let pending = s
        .pending_messages(&tenant(), &jid("g2@g.us"), 100)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].content, "two");
}

/// The seed's `getNewMessages` with no chats returned nothing and kept the cursor at 0; read
/// per chat, a chat without messages returns nothing and its cursor stays 0, whatever other
/// chats hold.
#[tokio::test]
async fn a_chat_without_messages_returns_nothing_and_keeps_its_cursor() {
    let s = store();
    s.store_message(msg(G, "m1", "x", "2024-01-01T00:00:01.000Z"))
        .await
        .unwrap();
    let empty = jid("empty@g.us");
    assert!(
        s.messages_since(&tenant(), &empty, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.pending_messages(&tenant(), &empty, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.latest_message_seq(&tenant(), &empty).await.unwrap(), 0);
    assert_eq!(s.cursor(&tenant(), &empty).await.unwrap(), 0);
}

#[tokio::test]
async fn chat_without_name_is_named_after_its_jid() {
    let s = store();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:00.000Z", None, None))
        .await
        .unwrap();
    assert_eq!(
        s.chat_name(&tenant(), &jid(G)).await.unwrap().as_deref(),
        Some(G)
    );
}

#[tokio::test]
async fn chat_with_explicit_name_keeps_it() {
    let s = store();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:00.000Z", Some("My Group"), None))
        .await
        .unwrap();
    assert_eq!(
        s.chat_name(&tenant(), &jid(G)).await.unwrap().as_deref(),
        Some("My Group")
    );
}

#[tokio::test]
async fn later_name_updates_the_single_row() {
    let s = store();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:00.000Z", Some("Old"), None))
        .await
        .unwrap();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:01.000Z", Some("New"), None))
        .await
        .unwrap();
    assert_eq!(
        s.chat_name(&tenant(), &jid(G)).await.unwrap().as_deref(),
        Some("New")
    );
}

/// The chat's activity time, as the group list shows it.
#[tokio::test]
async fn older_timestamp_does_not_overwrite_newer_activity() {
    let s = store();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:05.000Z", Some("G"), Some(true)))
        .await
        .unwrap();
    s.store_chat_metadata(meta(G, "2024-01-01T00:00:01.000Z", Some("G"), Some(true)))
        .await
        .unwrap();
    let groups = s.available_groups(&tenant()).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        groups[0].last_activity.as_deref(),
        Some("2024-01-01T00:00:05.000Z")
    );
}

#[tokio::test]
async fn pending_messages_are_those_after_the_chat_cursor() {
    let s = store();
    let seqs = four_messages(&s).await;
    // four_messages stores a bot message third: never pending.
    let human = [seqs[0], seqs[1], seqs[3]];
    let pending = |limit| {
        let s = &s;
        async move {
            s.pending_messages(&tenant(), &jid(G), limit)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(pending(100).await, human);
    assert_eq!(pending(1).await, human[..1]);
    s.advance_cursor(&tenant(), &jid(G), seqs[1]).await.unwrap();
    assert_eq!(pending(100).await, human[2..]);
    // Another chat's cursor does not apply.
    s.advance_cursor(&tenant(), &jid("other@g.us"), i64::MAX)
        .await
        .unwrap();
    assert_eq!(pending(100).await, human[2..]);
}
