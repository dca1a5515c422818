//! The run protocol (JSON Lines between the host and `cambot-runner`), both directions: the
//! host's capped stdout reader (`cambot_sandbox` supervision) and the runner's capped stdin
//! reader, each fed the same bytes in one piece and in fuzzer-chosen chunks, then every line
//! through `RunnerToHost::parse_line` / `HostToRunner::parse_line`.
//!
//! Properties: the lines found do not depend on the chunking; no line holds a newline; a line
//! over the cap is reported, never delivered; whatever parses re-encodes to one newline-ended
//! line that parses back to the same message.

#![no_main]

mod common;

use cambot_protocol::HostToRunner;
use cambot_protocol::RunnerToHost;
use cambot_runner::io::Line;
use cambot_runner::io::LineReader;
use cambot_runner::io::parse_input;
use cambot_sandbox::SupervisorEvent;
use cambot_sandbox::fuzzing::stdout_events;
use common::ChunkedReader;
use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = common::plan(data);
    // Small caps so the fuzzer reaches the over-cap paths; derived from the plan so they vary.
    let max_line = 16 + sizes.iter().sum::<usize>() % 256;
    let cap = if sizes.len() % 3 == 0 {
        u64::MAX
    } else {
        (body.len() as u64 * 3 / 4).max(1)
    };

    // Host side: the runner's stdout.
    let whole = common::block_on(stdout_events(ChunkedReader::whole(body), max_line, cap));
    let split = common::block_on(stdout_events(
        ChunkedReader::new(body, &sizes),
        max_line,
        cap,
    ));
    assert_eq!(whole, split, "host stdout events depend on chunking");
    for (i, ev) in whole.iter().enumerate() {
        match ev {
            SupervisorEvent::Line(line) => {
                assert!(!line.contains('\n'));
                assert!(!line.trim().is_empty());
                check_runner_line(line);
            }
            SupervisorEvent::LineTooLong { bytes } => assert!(*bytes > max_line),
            SupervisorEvent::OutputTruncated => {
                assert_eq!(i + 1, whole.len(), "events after the output cap");
            }
        }
    }

    // Runner side: the host's stdin.
    let whole = runner_lines(ChunkedReader::whole(body), 4096, max_line);
    let split = runner_lines(ChunkedReader::new(body, &sizes), 1 + sizes[0] % 7, max_line);
    assert_eq!(whole, split, "runner stdin lines depend on chunking");
    for (n, line) in whole.iter().enumerate() {
        match line {
            Line::Text(t) => {
                assert!(!t.contains('\n') && t.len() <= max_line);
                if let Some(Ok(msg)) = parse_input(t, n as u64 + 1) {
                    check_host_message(&msg);
                }
            }
            Line::TooLong { bytes } => assert!(*bytes > max_line),
            Line::NotUtf8 | Line::Eof => {}
        }
    }
});

fn runner_lines(reader: ChunkedReader, buffer: usize, cap: usize) -> Vec<Line> {
    common::block_on(async {
        let mut lines = LineReader::new(BufReader::with_capacity(buffer, reader), cap);
        let mut out = Vec::new();
        loop {
            match lines.next_line().await {
                Ok(Line::Eof) => return out,
                Ok(line) => out.push(line),
                Err(e) => panic!("reading from memory failed: {e}"),
            }
        }
    })
}

fn check_runner_line(line: &str) {
    if let Ok(msg) = RunnerToHost::parse_line(line) {
        let encoded = msg.to_line();
        assert!(encoded.ends_with('\n') && encoded.matches('\n').count() == 1);
        let back = RunnerToHost::parse_line(&encoded).expect("a re-encoded line parses");
        assert_eq!(back, msg);
    }
}

fn check_host_message(msg: &HostToRunner) {
    let encoded = msg.to_line();
    assert!(encoded.ends_with('\n') && encoded.matches('\n').count() == 1);
    let back = HostToRunner::parse_line(&encoded).expect("a re-encoded line parses");
    assert_eq!(&back, msg);
}
