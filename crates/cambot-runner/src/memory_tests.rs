use super::plain_chat_text;

#[test]
fn one_message_becomes_its_text_unescaped() {
    let xml = "<messages>\n<message sender=\"Alice\" time=\"2026-01-01T00:00:00Z\">Is 1 &lt; 2 &amp; 3?</message>\n</messages>";
    assert_eq!(plain_chat_text(xml), "Is 1 < 2 & 3?");
}

#[test]
fn several_messages_become_sender_lines() {
    let xml = "<messages><message sender=\"A &amp; B\" time=\"t\">hi</message><message sender=\"Bob\" time=\"t\">yo</message></messages>";
    assert_eq!(plain_chat_text(xml), "A & B: hi\nBob: yo");
}

#[test]
fn text_without_messages_is_unchanged() {
    assert_eq!(plain_chat_text("water the plants"), "water the plants");
    assert_eq!(plain_chat_text("<message broken"), "<message broken");
}
