//! Token usage read from a model response as it streams to the run, without holding the
//! stream back: each complete line (an SSE `data:` line or an NDJSON line) is parsed for the
//! dialect's usage fields. A non-streamed JSON answer (which may be pretty-printed) is also
//! kept aside, up to a cap, and parsed once it ended.
//!
//! | dialect | where | fields |
//! |---|---|---|
//! | anthropic | `message_start` `.message.usage`, `message_delta` `.usage` (cumulative), whole `.usage` | `input_tokens`, `output_tokens` |
//! | openai | last chunk `.usage` (asked for by `stream_options.include_usage`), whole `.usage` | `prompt_tokens`, `completion_tokens` |
//! | ollama | last line / whole body | `prompt_eval_count`, `eval_count` |
//!
//! Reports within one response are cumulative, so the response's cost is the largest input
//! plus the largest output seen; the run is charged each increase as soon as it is seen.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use axum::body::Bytes;
use futures::Stream;
use futures::StreamExt;
use serde_json::Value;

use crate::budget::RunMeter;

/// Longest line parsed; a longer one is skipped (no usage report is that long).
const MAX_LINE: usize = 1024 * 1024;
/// Largest non-streamed body kept aside for its usage.
const MAX_WHOLE: usize = 4 * 1024 * 1024;

/// Reads usage out of one response's bytes.
#[derive(Debug)]
pub(crate) struct UsageScanner {
    line: Vec<u8>,
    skipping: bool,
    /// The body so far when it is not a stream of lines; `None` past [`MAX_WHOLE`].
    whole: Option<Vec<u8>>,
    input: u64,
    output: u64,
    charged: u64,
}

impl UsageScanner {
    /// `content_type` of the response: SSE and NDJSON are read line by line only.
    pub(crate) fn new(content_type: Option<&str>) -> Self {
        let streamed = content_type.is_some_and(|c| {
            let c = c.to_ascii_lowercase();
            c.starts_with("text/event-stream") || c.starts_with("application/x-ndjson")
        });
        Self {
            line: Vec::new(),
            skipping: false,
            whole: (!streamed).then(Vec::new),
            input: 0,
            output: 0,
            charged: 0,
        }
    }

    /// Feeds the next chunk; returns the tokens newly reported by it.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> u64 {
        if let Some(whole) = &mut self.whole {
            if whole.len() + chunk.len() > MAX_WHOLE {
                self.whole = None;
            } else {
                whole.extend_from_slice(chunk);
            }
        }
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(i);
            rest = &tail[1..];
            if self.line.is_empty() && !self.skipping {
                self.parse_line(head);
            } else {
                self.push_line(head);
                let line = std::mem::take(&mut self.line);
                if !self.skipping {
                    self.parse_line(&line);
                }
            }
            // A line ends here, skipped or not.
            self.skipping = false;
        }
        self.push_line(rest);
        self.take_new()
    }

    /// The body ended: parses what is left; returns the tokens newly reported.
    pub(crate) fn finish(&mut self) -> u64 {
        if !self.skipping {
            let line = std::mem::take(&mut self.line);
            self.parse_line(&line);
        }
        if let Some(whole) = self.whole.take()
            && let Ok(v) = serde_json::from_slice::<Value>(&whole)
        {
            self.observe(&v);
        }
        self.take_new()
    }

    fn push_line(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + part.len() > MAX_LINE {
            self.line.clear();
            self.skipping = true;
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn parse_line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        let json = line.strip_prefix(b"data:").unwrap_or(line).trim_ascii();
        if json.first() != Some(&b'{') {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(json) {
            self.observe(&v);
        }
    }

    fn observe(&mut self, v: &Value) {
        let usage = v
            .get("usage")
            .filter(|u| u.is_object())
            .or_else(|| v.pointer("/message/usage").filter(|u| u.is_object()));
        let field = |obj: Option<&Value>, key: &str| obj.and_then(|o| o.get(key)?.as_u64());
        let input = [
            field(usage, "input_tokens"),
            field(usage, "prompt_tokens"),
            field(Some(v), "prompt_eval_count"),
        ];
        let output = [
            field(usage, "output_tokens"),
            field(usage, "completion_tokens"),
            field(Some(v), "eval_count"),
        ];
        for n in input.into_iter().flatten() {
            self.input = self.input.max(n);
        }
        for n in output.into_iter().flatten() {
            self.output = self.output.max(n);
        }
    }

    fn take_new(&mut self) -> u64 {
        let total = self.input.saturating_add(self.output);
        let new = total.saturating_sub(self.charged);
        self.charged = total;
        new
    }
}

/// A response body passed through unchanged, chunk for chunk, charging the run with the
/// usage it reports. Dropped early (the run hung up), it charges what it has seen.
pub(crate) struct Metered<S> {
    body: S,
    scanner: UsageScanner,
    meter: Arc<RunMeter>,
    done: bool,
}

impl<S> Metered<S> {
    pub(crate) fn new(body: S, scanner: UsageScanner, meter: Arc<RunMeter>) -> Self {
        Self {
            body,
            scanner,
            meter,
            done: false,
        }
    }
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.body.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.meter.charge(this.scanner.feed(&bytes));
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.meter.charge(this.scanner.finish());
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        if !self.done {
            self.meter.charge(self.scanner.finish());
        }
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
