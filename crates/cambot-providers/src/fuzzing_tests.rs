// Found by the `provider_stream` fuzz target: a line that is not UTF-8 made the call drop the
// frames completed before it in the same chunk, and failed a stream that had already ended, so
// the outcome depended on where the network split the body.

use super::*;
use crate::types::StopReason;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n";
const STOP: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn wire(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn frames_before_a_bad_line_are_decoded_whatever_the_chunking() {
    let body = wire(&[START.as_bytes(), b"data: \xff\n\n"]);
    let (whole, whole_end) = decode_body(Dialect::Anthropic, &[&body]);
    let (split, split_end) = decode_body(
        Dialect::Anthropic,
        &[&body[..START.len()], &body[START.len()..]],
    );
    assert_eq!(whole, split);
    assert!(matches!(
        whole.first(),
        Some(StreamEvent::MessageStart { .. })
    ));
    assert!(matches!(whole_end, Err(ProviderError::NotUtf8(_))));
    assert!(matches!(split_end, Err(ProviderError::NotUtf8(_))));
}

#[test]
fn bytes_after_the_end_of_the_message_are_ignored_in_the_same_chunk() {
    let body = wire(&[START.as_bytes(), STOP.as_bytes(), b"data: \xff\n\n"]);
    let (events, end) = decode_body(Dialect::Anthropic, &[&body]);
    assert!(end.is_ok(), "{end:?}");
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Stop {
            reason: StopReason::EndTurn,
            stop_sequence: None
        })
    );
    let cut = START.len() + STOP.len();
    assert_eq!(
        decode_body(Dialect::Anthropic, &[&body[..cut], &body[cut..]]).0,
        events
    );
}
