use super::*;

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
    assert_eq!(seg.generation, 7);
    assert_eq!(seg.torn, None);
    assert_eq!(seg.valid_len, bytes.len() as u64);
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
        assert_eq!(seg.valid_len, whole as u64, "cut at {cut}");
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
        assert_eq!(seg.valid_len, first_end as u64);
    }
}

#[test]
fn an_empty_or_headerless_file_holds_nothing() {
    let seg = decode_segment(&[]);
    assert_eq!((seg.generation, seg.records.len(), seg.torn), (0, 0, None));
    let seg = decode_segment(b"CAMB");
    assert_eq!(seg.records.len(), 0);
    assert!(seg.torn.is_some());
    let seg = decode_segment(b"NOTAJOURNALFILE!xxxx");
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
