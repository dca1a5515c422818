//! Redaction of a tenant's secret values from what goes back to its sandbox: the model
//! proxy's stream, a fetched body, the response headers passed on. Each occurrence of a value
//! becomes `[REDACTED]`.
//!
//! Streaming-safe: a value split across chunks is still caught. Only the bytes that could
//! still be the start of a value are held back (at most the longest value's length − 1); the
//! rest of each chunk goes on at once, and the output never depends on where the chunks were
//! split. Values shorter than [`MIN_REDACT_LEN`] bytes are not searched for (they would match
//! ordinary text). The search is on raw bytes: a value the upstream re-encodes (JSON escapes,
//! base64) or a model spells across two stream events is not recognised.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;

use axum::body::Bytes;
use futures::Stream;
use futures::StreamExt;

use crate::upstream::Secret;

/// Shorter values are not redacted: too likely to be ordinary text.
pub(crate) const MIN_REDACT_LEN: usize = 8;

/// What replaces each occurrence.
pub(crate) const REDACTED: &[u8] = b"[REDACTED]";

/// The values to redact, longest first.
#[derive(Clone)]
pub(crate) struct Redactor {
    needles: Arc<Vec<Secret>>,
    /// Whether a byte starts some value: most positions are skipped on this alone.
    first: Arc<[bool; 256]>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Redactor {
    pub(crate) fn new(values: impl IntoIterator<Item = Secret>) -> Self {
        let mut needles: Vec<Secret> = values
            .into_iter()
            .filter(|v| v.expose().len() >= MIN_REDACT_LEN)
            .collect();
        needles.sort_by(|a, b| {
            b.expose()
                .len()
                .cmp(&a.expose().len())
                .then_with(|| a.expose().cmp(b.expose()))
        });
        needles.dedup();
        let mut first = [false; 256];
        for n in &needles {
            if let Some(b) = n.expose().as_bytes().first() {
                first[usize::from(*b)] = true;
            }
        }
        Self {
            needles: Arc::new(needles),
            first: Arc::new(first),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `input` with every value replaced; `None` when nothing was found.
    pub(crate) fn redact(&self, input: &[u8]) -> Option<Vec<u8>> {
        if self.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        let (_, found) = self.scan(input, true, &mut out);
        (found > 0).then_some(out)
    }

    /// Appends to `out` the decided part of `buf` (redacted) and returns how many bytes of
    /// `buf` it covers and how many values it replaced. Unless `at_end`, it stops at the first
    /// position where a value may begin but `buf` ends before it can tell.
    fn scan(&self, buf: &[u8], at_end: bool, out: &mut Vec<u8>) -> (usize, u64) {
        let mut copied = 0;
        let mut found = 0;
        let mut i = 0;
        while i < buf.len() {
            if !self.first[usize::from(buf[i])] {
                i += 1;
                continue;
            }
            let rest = &buf[i..];
            let mut matched = None;
            for needle in self.needles.iter() {
                let needle = needle.expose().as_bytes();
                if rest.len() >= needle.len() {
                    if rest.starts_with(needle) {
                        matched = Some(needle.len());
                        break;
                    }
                } else if !at_end && needle.starts_with(rest) {
                    // A longer value may still match here: hold the rest back.
                    out.extend_from_slice(&buf[copied..i]);
                    return (i, found);
                }
            }
            match matched {
                Some(len) => {
                    out.extend_from_slice(&buf[copied..i]);
                    out.extend_from_slice(REDACTED);
                    found += 1;
                    i += len;
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.extend_from_slice(&buf[copied..]);
        (buf.len(), found)
    }
}

/// One stream's redaction state: the bytes held back between chunks.
#[derive(Debug, Default)]
pub(crate) struct StreamRedactor {
    redactor: Redactor,
    held: zeroize::Zeroizing<Vec<u8>>,
    /// Values replaced so far.
    pub(crate) found: u64,
}

impl StreamRedactor {
    pub(crate) fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            held: zeroize::Zeroizing::new(Vec::new()),
            found: 0,
        }
    }

    /// The part of what arrived so far that can be passed on.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.redactor.is_empty() {
            return chunk;
        }
        let mut buf = std::mem::take(&mut *self.held);
        buf.extend_from_slice(&chunk);
        let mut out = Vec::with_capacity(buf.len());
        let (used, found) = self.redactor.scan(&buf, false, &mut out);
        self.found += found;
        self.held.extend_from_slice(&buf[used..]);
        zeroize::Zeroize::zeroize(&mut buf);
        Bytes::from(out)
    }

    /// The stream ended: what was held back, redacted.
    pub(crate) fn finish(&mut self) -> Bytes {
        let held = std::mem::take(&mut *self.held);
        let mut out = Vec::with_capacity(held.len());
        let (_, found) = self.redactor.scan(&held, true, &mut out);
        self.found += found;
        Bytes::from(out)
    }
}

/// A response body with the values redacted; counts replacements into `counter`.
pub(crate) struct Redacted<S> {
    body: S,
    state: StreamRedactor,
    counter: Arc<crate::gateway::GatewayStats>,
    done: bool,
}

impl<S> Redacted<S> {
    pub(crate) fn new(
        body: S,
        redactor: Redactor,
        counter: Arc<crate::gateway::GatewayStats>,
    ) -> Self {
        Self {
            body,
            state: StreamRedactor::new(redactor),
            counter,
            done: false,
        }
    }

    fn count(&mut self) {
        let found = std::mem::take(&mut self.state.found);
        if found > 0 {
            counter_add(&self.counter.redacted, found);
        }
    }
}

fn counter_add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl<S, E> Stream for Redacted<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let out = this.state.push(bytes);
                    this.count();
                    // All of it may be held back: ask for more rather than send nothing.
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let out = this.state.finish();
                    this.count();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
