use cambot_protocol::LocalClock;

use super::now_in;
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

#[test]
fn the_time_is_shown_in_the_zone_the_host_sent() {
    let utc = now_in(None);
    assert!(utc.ends_with(" UTC"), "{utc}");
    let clock = LocalClock {
        utc_offset_seconds: 5 * 3600 + 1800,
        abbreviation: "IST".into(),
    };
    let local = now_in(Some(&clock));
    assert!(local.ends_with(" IST"), "{local}");
    let minutes = |s: &str| {
        let hm = s.split(' ').nth(2).expect("a time");
        let (h, m) = hm.split_once(':').expect("hh:mm");
        h.parse::<i32>().expect("hour") * 60 + m.parse::<i32>().expect("minute")
    };
    // Both read the clock within the same minute or so; +5:30 either way round midnight.
    let diff = (minutes(&local) - minutes(&utc)).rem_euclid(24 * 60);
    assert!((329..=331).contains(&diff), "{utc} vs {local}");
}
