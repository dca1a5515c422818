#![allow(clippy::unwrap_used, clippy::expect_used)]

use cambot_providers::ToolUse;
use pretty_assertions::assert_eq;

use super::*;

fn tool_call(id: &str) -> Message {
    Message {
        role: Role::Assistant,
        content: vec![ContentBlock::ToolUse(ToolUse {
            id: id.into(),
            name: "bash".into(),
            input: serde_json::json!({"command": "ls"}),
            invalid_input: None,
        })],
    }
}

#[test]
fn sessions_resume_from_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::open(dir.path(), None).unwrap();
    assert!(!s.resumed());
    assert!(valid_id(s.id()));
    s.push(Message::user("hi")).unwrap();
    s.push(Message::assistant("hello")).unwrap();
    let id = s.id().to_owned();
    assert_eq!(s.path(), dir.path().join(format!("{id}.jsonl")));
    let again = Session::open(dir.path(), Some(&id)).unwrap();
    assert!(again.resumed());
    assert_eq!(again.messages(), s.messages());
    let text = std::fs::read_to_string(s.path()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.starts_with("{\"type\":\"message\"")));
}

#[test]
fn unusable_ids_start_a_new_session_and_unknown_ones_start_that_id() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../x", "", "a/b", "-rf", "x.jsonl"] {
        let s = Session::open(dir.path(), Some(bad)).unwrap();
        assert_ne!(s.id(), bad);
        assert!(s.id().starts_with("s-"));
    }
    let s = Session::open(dir.path(), Some("known-id_1")).unwrap();
    assert_eq!(s.id(), "known-id_1");
    assert!(!s.resumed());
}

#[test]
fn a_torn_transcript_is_repaired_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::open(dir.path(), Some("torn")).unwrap();
    s.push(Message::user("do it")).unwrap();
    s.push(tool_call("t1")).unwrap();
    // The run was killed mid-write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path())
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"type\":\"message\",\"at\":\"x\",\"mess").unwrap();
    let again = Session::open(dir.path(), Some("torn")).unwrap();
    let m = again.messages();
    assert_eq!(m.len(), 3);
    assert!(
        matches!(&m[2].content[0], ContentBlock::ToolResult(r) if r.is_error && r.tool_use_id == "t1")
    );
}

#[test]
fn repair_merges_roles_and_starts_with_the_user() {
    let msgs = vec![
        Message::assistant("orphan"),
        Message::user("a"),
        tool_call("t1"),
        Message::tool_results([ToolResult::ok("t1", "out")]),
        Message::user("b"),
    ];
    let r = repair(msgs);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].text(), "a");
    assert_eq!(r[2].content.len(), 2);
    assert!(matches!(r[2].content[0], ContentBlock::ToolResult(_)));
    assert_eq!(r[2].text(), "b");
}

#[test]
fn truncate_and_compact_rewrite_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::open(dir.path(), Some("rw")).unwrap();
    for t in ["1", "2", "3"] {
        s.push(Message::user(t)).unwrap();
    }
    s.truncate(1).unwrap();
    assert_eq!(
        Session::open(dir.path(), Some("rw"))
            .unwrap()
            .messages()
            .len(),
        1
    );
    s.compact(
        "sum".into(),
        Some("/a.md".into()),
        vec![Message::user("kept")],
    )
    .unwrap();
    let again = Session::open(dir.path(), Some("rw")).unwrap();
    assert_eq!(again.summary(), Some("sum"));
    assert_eq!(again.messages(), [Message::user("kept")]);
}
