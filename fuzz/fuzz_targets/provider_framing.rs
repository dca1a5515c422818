//! The providers' body framing: server-sent events (Anthropic, OpenAI) and NDJSON (Ollama),
//! `cambot_providers::fuzzing::frames` over the private `Framer`, fed the same bytes in one
//! piece, in fuzzer-chosen chunks and byte by byte.
//!
//! Properties: frames (or the failure) do not depend on where the chunks split the body;
//! NDJSON frames are single non-blank lines without an SSE event name; no frame holds a CR, and
//! only SSE data (joined `data:` lines) holds a LF.

#![no_main]

mod common;

use cambot_providers::fuzzing::frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = common::plan(data);
    for sse in [true, false] {
        let whole = frames(sse, &[body]);
        let split = frames(sse, &common::chunks(body, &sizes));
        let bytes = frames(sse, &common::chunks(body, &[1]));
        for other in [&split, &bytes] {
            match (&whole, other) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "frames depend on chunking (sse: {sse})"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("chunking changed the outcome (sse: {sse}): {a:?} vs {b:?}"),
            }
        }
        let Ok(frames) = whole else {
            continue;
        };
        for (event, data) in &frames {
            assert!(!data.contains('\r'));
            if let Some(e) = event {
                assert!(!e.contains(['\r', '\n']));
            }
            if !sse {
                assert!(event.is_none() && !data.contains('\n') && !data.trim().is_empty());
            }
        }
    }
});
