//! The seed's db.test.ts cases, ported. Cursors are message seqs instead of timestamps.

use pretty_assertions::assert_eq;

use super::*;

const G: &str = "group@g.us";

#[test]
fn stored_message_is_returned_with_its_fields() {
    let s = store();
    s.store_message(&msg(G, "m1", "hello world", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "m1");
    assert_eq!(rows[0].sender, "123@s.whatsapp.net");
    assert_eq!(rows[0].sender_name, "Alice");
    assert_eq!(rows[0].content, "hello world");
}

#[test]
fn empty_content_is_stored_and_returned() {
    let s = store();
    s.store_message(&msg(G, "m1", "", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).unwrap();
    assert_eq!(rows[0].content, "");
}

#[test]
fn is_from_me_is_stored_and_returned() {
    let s = store();
    let mut m = msg(G, "m1", "mine", "2024-01-01T00:00:01.000Z");
    m.is_from_me = true;
    s.store_message(&m).unwrap();
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).unwrap();
    assert!(rows[0].is_from_me);
}

#[test]
fn same_id_and_chat_twice_is_one_row_with_latest_content() {
    let s = store();
    let seq1 = s
        .store_message(&msg(G, "m1", "first", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let seq2 = s
        .store_message(&msg(G, "m1", "second", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    assert_eq!(seq1, seq2, "a repeat keeps its arrival seq");
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].content, "second");
}

fn four_messages(s: &Store) -> Vec<i64> {
    let mut seqs = Vec::new();
    seqs.push(
        s.store_message(&msg(G, "m1", "first", "2024-01-01T00:00:01.000Z"))
            .unwrap(),
    );
    seqs.push(
        s.store_message(&msg(G, "m2", "second", "2024-01-01T00:00:02.000Z"))
            .unwrap(),
    );
    let mut bot = msg(G, "m3", "bot reply", "2024-01-01T00:00:03.000Z");
    bot.is_bot_message = true;
    seqs.push(s.store_message(&bot).unwrap());
    seqs.push(
        s.store_message(&msg(G, "m4", "third", "2024-01-01T00:00:04.000Z"))
            .unwrap(),
    );
    seqs
}

#[test]
fn messages_since_returns_only_rows_after_the_cursor_and_no_bot_rows() {
    let s = store();
    let seqs = four_messages(&s);
    let rows = s.messages_since(&tenant(), &jid(G), seqs[1], 100).unwrap();
    let contents: Vec<_> = rows.iter().map(|r| r.content.as_str()).collect();
    assert_eq!(contents, vec!["third"]);
}

#[test]
fn bot_flagged_rows_are_excluded() {
    let s = store();
    four_messages(&s);
    let rows = s.messages_since(&tenant(), &jid(G), 0, 100).unwrap();
    assert!(rows.iter().all(|r| r.content != "bot reply"));
}

#[test]
fn empty_cursor_returns_all_non_bot_rows() {
    let s = store();
    four_messages(&s);
    assert_eq!(
        s.messages_since(&tenant(), &jid(G), 0, 100).unwrap().len(),
        3
    );
}

#[test]
fn new_messages_across_chats_with_max_cursor() {
    let s = store();
    let a = s
        .store_message(&msg("g1@g.us", "a1", "g1 msg1", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let b = s
        .store_message(&msg("g2@g.us", "b1", "g2 msg1", "2024-01-01T00:00:02.000Z"))
        .unwrap();
    let mut bot = msg("g1@g.us", "a2", "bot", "2024-01-01T00:00:03.000Z");
    bot.is_bot_message = true;
    s.store_message(&bot).unwrap();
    let c = s
        .store_message(&msg("g1@g.us", "a3", "g1 msg2", "2024-01-01T00:00:04.000Z"))
        .unwrap();
    let (rows, cursor) = s
        .new_messages(&tenant(), &[jid("g1@g.us"), jid("g2@g.us")], 0)
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(cursor, c);
    assert!(a < b && b < c);
}

#[test]
fn new_messages_filters_by_cursor() {
    let s = store();
    let a = s
        .store_message(&msg("g1@g.us", "a1", "one", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    s.store_message(&msg("g2@g.us", "b1", "two", "2024-01-01T00:00:02.000Z"))
        .unwrap();
    let (rows, _) = s
        .new_messages(&tenant(), &[jid("g1@g.us"), jid("g2@g.us")], a)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].content, "two");
}

#[test]
fn new_messages_with_no_chats_returns_nothing_and_keeps_cursor() {
    let s = store();
    s.store_message(&msg(G, "m1", "x", "2024-01-01T00:00:01.000Z"))
        .unwrap();
    let (rows, cursor) = s.new_messages(&tenant(), &[], 0).unwrap();
    assert!(rows.is_empty());
    assert_eq!(cursor, 0);
}

#[test]
fn chat_without_name_is_named_after_its_jid() {
    let s = store();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:00.000Z", None, None))
        .unwrap();
    assert_eq!(s.chat_name(&tenant(), &jid(G)).unwrap().as_deref(), Some(G));
}

#[test]
fn chat_with_explicit_name_keeps_it() {
    let s = store();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:00.000Z", Some("My Group"), None))
        .unwrap();
    assert_eq!(
        s.chat_name(&tenant(), &jid(G)).unwrap().as_deref(),
        Some("My Group")
    );
}

#[test]
fn later_name_updates_the_single_row() {
    let s = store();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:00.000Z", Some("Old"), None))
        .unwrap();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:01.000Z", Some("New"), None))
        .unwrap();
    assert_eq!(
        s.chat_name(&tenant(), &jid(G)).unwrap().as_deref(),
        Some("New")
    );
}

#[test]
fn older_timestamp_does_not_overwrite_newer_activity() {
    let s = store();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:05.000Z", Some("G"), None))
        .unwrap();
    s.store_chat_metadata(&meta(G, "2024-01-01T00:00:01.000Z", Some("G"), None))
        .unwrap();
    assert_eq!(
        s.chat_last_message_time(&tenant(), &jid(G))
            .unwrap()
            .as_deref(),
        Some("2024-01-01T00:00:05.000Z")
    );
}

#[test]
fn pending_messages_are_those_after_the_chat_cursor() {
    let s = store();
    let seqs = four_messages(&s);
    // four_messages stores a bot message third: never pending.
    let human = [seqs[0], seqs[1], seqs[3]];
    let pending = |s: &Store, limit| -> Vec<i64> {
        s.pending_messages(&tenant(), &jid(G), limit)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect()
    };
    assert_eq!(pending(&s, 100), human);
    assert_eq!(pending(&s, 1), human[..1]);
    s.advance_cursor(&tenant(), &jid(G), seqs[1]).unwrap();
    assert_eq!(pending(&s, 100), human[2..]);
    // Another chat's cursor does not apply.
    s.advance_cursor(&tenant(), &jid("other@g.us"), i64::MAX)
        .unwrap();
    assert_eq!(pending(&s, 100), human[2..]);
}
