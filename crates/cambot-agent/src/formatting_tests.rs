//! The seed's formatting.test.ts cases.

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn escape_xml_each_and_together() {
    assert_eq!(escape_xml("a & b"), "a &amp; b");
    assert_eq!(escape_xml("a < b"), "a &lt; b");
    assert_eq!(escape_xml("a > b"), "a &gt; b");
    assert_eq!(escape_xml("\"quoted\""), "&quot;quoted&quot;");
    assert_eq!(
        escape_xml("<a href=\"x\">&</a>"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
    );
    assert_eq!(escape_xml("it's plain"), "it's plain");
    assert_eq!(escape_xml(""), "");
}

fn m<'a>(sender: &'a str, content: &'a str) -> PromptMessage<'a> {
    PromptMessage {
        sender_name: sender,
        timestamp: "2024-01-01T00:00:00.000Z",
        content,
    }
}

#[test]
fn one_message_formats_exactly() {
    assert_eq!(
        format_messages([m("Alice", "hello")]),
        "<messages>\n<message sender=\"Alice\" time=\"2024-01-01T00:00:00.000Z\">hello</message>\n</messages>"
    );
}

#[test]
fn several_messages_contain_each_sender_and_content() {
    let out = format_messages([m("Alice", "hi"), m("Bob", "yo"), m("Carol", "hey")]);
    for part in ["Alice", "Bob", "Carol", ">hi<", ">yo<", ">hey<"] {
        assert!(out.contains(part), "{part} missing in {out}");
    }
    assert_eq!(out.lines().count(), 5);
}

#[test]
fn sender_and_content_are_escaped() {
    let out = format_messages([m("A<b>\"c\"", "<script>alert('x')</script>")]);
    assert!(out.contains("sender=\"A&lt;b&gt;&quot;c&quot;\""));
    assert!(out.contains("&lt;script&gt;alert('x')&lt;/script&gt;"));
    assert!(!out.contains("<script>"));
}

#[test]
fn empty_list() {
    assert_eq!(format_messages([]), "<messages>\n\n</messages>");
}

#[test]
fn trigger_rules() {
    let t = Trigger::for_name("Andy").unwrap();
    assert!(t.matches("@Andy hello"));
    assert!(t.matches("@andy hello"));
    assert!(t.matches("@ANDY hello"));
    assert!(!t.matches("hello @Andy"));
    assert!(!t.matches("@AndyExtra hello"));
    assert!(t.matches("@Andy's thing"));
    assert!(t.matches("@Andy"));
    assert!(t.matches("   @Andy hi  "));
}

#[test]
fn trigger_name_is_escaped() {
    let t = Trigger::for_name("A.B").unwrap();
    assert!(t.matches("@A.B hi"));
    assert!(!t.matches("@AxB hi"));
}

#[test]
fn gate_cases() {
    let t = Trigger::for_name("Andy").unwrap();
    let no_trigger = ["hello", "world"];
    let with_trigger = ["hello", "@Andy do it"];
    // Main processes without a trigger, even when the group says it requires one.
    assert!(passes_gate(&t, true, None, no_trigger.iter().copied()));
    assert!(passes_gate(
        &t,
        true,
        Some(true),
        no_trigger.iter().copied()
    ));
    // Non-main with undefined or true requires the trigger.
    assert!(!passes_gate(&t, false, None, no_trigger.iter().copied()));
    assert!(!passes_gate(
        &t,
        false,
        Some(true),
        no_trigger.iter().copied()
    ));
    assert!(passes_gate(
        &t,
        false,
        Some(true),
        with_trigger.iter().copied()
    ));
    // Non-main with false always processes.
    assert!(passes_gate(
        &t,
        false,
        Some(false),
        no_trigger.iter().copied()
    ));
}
