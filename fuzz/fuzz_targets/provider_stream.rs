//! The dialect stream decoders (Anthropic and OpenAI over SSE, Ollama over NDJSON) behind the
//! framing, driven like a streamed call (`cambot_providers::fuzzing::decode_body`: stop at the
//! end-of-message marker, flush at the end of the body), then folded by `MessageCollector`.
//!
//! Input: 1 byte dialect, then the chunk plan and the body (see `common::plan`).
//!
//! Properties: the events and the outcome do not depend on where the chunks split the body; a
//! successful stream ends with exactly one `Stop`, and folds into a message; every tool call
//! that ends was started.

#![no_main]

mod common;

use std::collections::HashSet;

use cambot_providers::Dialect;
use cambot_providers::MessageCollector;
use cambot_providers::StreamEvent;
use cambot_providers::fuzzing::decode_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&d, rest)) = data.split_first() else {
        return;
    };
    let dialect = [Dialect::Anthropic, Dialect::OpenAi, Dialect::Ollama][usize::from(d % 3)];
    let (sizes, body) = common::plan(rest);
    let (events, end) = decode_body(dialect, &[body]);
    let (split_events, split_end) = decode_body(dialect, &common::chunks(body, &sizes));
    assert_eq!(events, split_events, "events depend on chunking");
    match (&end, &split_end) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("chunking changed the outcome: {a:?} vs {b:?}"),
    }

    let mut started = HashSet::new();
    let mut collector = MessageCollector::new();
    for ev in &events {
        match ev {
            StreamEvent::ToolCallStart { id, .. } => {
                started.insert(id.clone());
            }
            StreamEvent::ToolCallEnd { id, .. } => {
                assert!(
                    started.contains(id),
                    "tool call {id:?} ended, never started"
                );
            }
            _ => {}
        }
        collector.push(ev);
    }
    let stops = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Stop { .. }))
        .count();
    assert!(stops <= 1, "{stops} stop events");
    if end.is_ok() {
        assert_eq!(stops, 1, "a finished stream without a stop event");
        assert!(matches!(events.last(), Some(StreamEvent::Stop { .. })));
        collector
            .finish()
            .expect("a finished stream folds into a message");
    }
});
