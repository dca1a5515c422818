use super::*;

/// Feeds `body` in chunks of `size` bytes; returns the total charged.
fn scan(content_type: &str, body: &str, size: usize) -> u64 {
    let mut s = UsageScanner::new(Some(content_type));
    let mut total = 0;
    for chunk in body.as_bytes().chunks(size) {
        total += s.feed(chunk);
    }
    total + s.finish()
}

const ANTHROPIC: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":120,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"{\\\"usage\\\":{\\\"input_tokens\\\":999999}}\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

#[test]
fn anthropic_stream_counts_input_and_cumulative_output_whatever_the_chunking() {
    for size in [1, 7, 64, ANTHROPIC.len()] {
        assert_eq!(
            scan("text/event-stream", ANTHROPIC, size),
            150,
            "chunks of {size}"
        );
    }
}

#[test]
fn openai_stream_counts_the_final_usage_chunk() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":2,\"total_tokens\":42}}\n\n\
data: [DONE]\n\n";
    assert_eq!(scan("text/event-stream; charset=utf-8", body, 5), 42);
}

#[test]
fn ollama_ndjson_counts_the_last_line() {
    let body = "{\"message\":{\"content\":\"a\"},\"done\":false}\n\
{\"message\":{\"content\":\"\"},\"done\":true,\"prompt_eval_count\":11,\"eval_count\":4}";
    assert_eq!(scan("application/x-ndjson", body, 3), 15);
}

#[test]
fn a_pretty_printed_whole_answer_is_counted_once() {
    let body = "{\n  \"id\": \"x\",\n  \"usage\": {\n    \"prompt_tokens\": 9,\n    \"completion_tokens\": 3\n  }\n}\n";
    assert_eq!(scan("application/json", body, 4), 12);
    let compact = "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}";
    assert_eq!(scan("application/json", compact, 100), 11);
}

#[test]
fn each_increase_is_charged_as_soon_as_its_line_is_complete() {
    let mut s = UsageScanner::new(Some("text/event-stream"));
    let (start, rest) = ANTHROPIC.split_at(ANTHROPIC.find("event: content").unwrap());
    assert_eq!(s.feed(start.as_bytes()), 121);
    assert_eq!(s.feed(rest.as_bytes()), 29);
    assert_eq!(s.finish(), 0);
}

#[test]
fn an_overlong_line_is_skipped_and_the_next_one_still_counts() {
    let long = format!("data: {{\"pad\":\"{}\"}}\n", "x".repeat(MAX_LINE + 10));
    let body = format!("{long}data: {{\"usage\":{{\"input_tokens\":3,\"output_tokens\":4}}}}\n");
    assert_eq!(scan("text/event-stream", &body, 8192), 7);
}
