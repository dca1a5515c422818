use super::*;
use crate::MessageStore;
use crate::SqliteStore;
use crate::UserStore;

fn message(n: usize, content: &str) -> InboundMessage {
    InboundMessage {
        tenant: TenantId::default_tenant(),
        chat_jid: ChatJid::new(&format!("fake:g{n}")).unwrap(),
        id: format!("m{n}"),
        sender: "u1".into(),
        sender_name: "Ünïcode sender".into(),
        content: content.into(),
        timestamp: "2026-12-01T00:00:00.000Z".into(),
        is_from_me: n.is_multiple_of(2),
        is_bot_message: n.is_multiple_of(3),
        attachments: Vec::new(),
    }
}

fn segment_of(records: &[(i64, InboundMessage)]) -> Vec<u8> {
    let mut bytes = header(7).to_vec();
    for (seq, msg) in records {
        encode(&mut bytes, *seq, msg);
    }
    bytes
}

fn three() -> Vec<(i64, InboundMessage)> {
    vec![
        (1, message(1, "hello")),
        (2, message(2, "")),
        (9, message(3, "line\nwith <xml> & \u{1F600}")),
    ]
}

#[test]
fn records_read_back_as_written() {
    let records = three();
    let bytes = segment_of(&records);
    let seg = decode_segment(&bytes);
    assert_eq!(seg.torn, None);
    let got: Vec<(i64, InboundMessage)> = seg.records.into_iter().map(|r| (r.seq, r.msg)).collect();
    assert_eq!(got, records);
}

#[test]
fn a_tail_cut_at_any_byte_keeps_every_whole_record_before_it() {
    let records = three();
    let bytes = segment_of(&records);
    let whole = segment_of(&records[..2]).len();
    for cut in whole..bytes.len() {
        let seg = decode_segment(&bytes[..cut]);
        let expect_torn = cut != whole;
        assert_eq!(seg.records.len(), 2, "cut at {cut}");
        assert_eq!(seg.torn.is_some(), expect_torn, "cut at {cut}");
    }
}

#[test]
fn a_corrupted_byte_stops_the_read_at_that_record() {
    let records = three();
    let bytes = segment_of(&records);
    let first_end = segment_of(&records[..1]).len();
    let second_end = segment_of(&records[..2]).len();
    for at in first_end..second_end {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let seg = decode_segment(&bad);
        assert_eq!(seg.records.len(), 1, "flipped byte {at}");
        assert!(seg.torn.is_some(), "flipped byte {at}");
    }
}

#[test]
fn an_empty_or_headerless_file_holds_nothing() {
    let seg = decode_segment(&[]);
    assert_eq!((seg.records.len(), seg.torn, seg.foreign), (0, None, false));
    let seg = decode_segment(b"CAMB");
    assert_eq!(seg.records.len(), 0);
    assert!(seg.torn.is_some());
    let seg = decode_segment(b"NOTAJOURNALFILE!xxxx");
    assert!(seg.foreign);
    assert!(seg.torn.unwrap().contains("header"));
}

#[test]
fn a_huge_length_is_garbage_not_an_allocation() {
    let mut bytes = header(1).to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let seg = decode_segment(&bytes);
    assert!(seg.torn.unwrap().contains("not plausible"));
}

fn write_segment(path: &Path, records: &[(i64, InboundMessage)]) {
    std::fs::write(path, segment_of(records)).unwrap();
}

/// A data directory left by a version with the ingest journal: some records were moved into
/// SQLite before the crash, some were not, the newest is torn. Opening it imports every whole
/// record under the seq it was acknowledged with, once, and renames the files.
#[tokio::test]
async fn an_old_journal_is_imported_once_and_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cambot.db");
    // The old version had already moved seq 1 into SQLite (same seq, older content).
    let store = SqliteStore::open(&db).unwrap();
    let moved = store
        .store_message(message(1, "hello (moved)"))
        .await
        .unwrap();
    assert_eq!(moved.message.seq, 1);
    drop(store);
    let [a, b] = segment_paths(&db);
    let old = [
        (1, message(1, "hello")),
        (5, message(4, "four")),
        (6, message(5, "five")),
    ];
    write_segment(&a, &old[..2]);
    let mut torn = segment_of(&old[2..]);
    torn.truncate(torn.len() - 3);
    std::fs::write(&b, torn).unwrap();
    let mut lock = db.as_os_str().to_owned();
    lock.push("-ingest.lock");
    std::fs::write(&lock, b"").unwrap();

    let store = SqliteStore::open(&db).unwrap();
    assert!(!a.exists() && !b.exists());
    assert!(renamed(&a).exists() && renamed(&b).exists());
    assert!(!Path::new(&lock).exists());
    let chat = |n: usize| ChatJid::new(&format!("fake:g{n}")).unwrap();
    let tenant = TenantId::default_tenant();
    let got = store
        .messages_since(&tenant, &chat(1), 0, 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].seq, got[0].content.as_str()), (1, "hello"));
    let four = store
        .messages_since(&tenant, &chat(4), 0, 10)
        .await
        .unwrap();
    assert_eq!(four.len(), 1);
    assert_eq!((four[0].seq, four[0].content.as_str()), (5, "four"));
    assert_eq!(
        store
            .chat_history(&tenant, &chat(5), 10)
            .await
            .unwrap()
            .len(),
        0,
        "the torn record was never acknowledged"
    );
    // New messages count on above every imported seq.
    let next = store
        .store_message(message(7, "after the upgrade"))
        .await
        .unwrap()
        .message
        .seq;
    assert!(next > 5, "{next}");
    drop(store);
    // A second open imports nothing again.
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(
        store
            .chat_history(&tenant, &chat(1), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_journal_in_an_unknown_format_stops_the_open_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cambot.db");
    let [a, _] = segment_paths(&db);
    std::fs::write(&a, b"CAMBOTJ2 from the future, with messages").unwrap();
    let err = SqliteStore::open(&db).unwrap_err();
    assert!(
        err.to_string().contains("is not an ingest journal"),
        "{err}"
    );
    assert!(a.exists(), "nothing acknowledged is thrown away");
    // An empty segment (the old version kept the idle one empty) is simply retired.
    std::fs::write(&a, b"").unwrap();
    SqliteStore::open(&db).unwrap();
    assert!(!a.exists());
}
