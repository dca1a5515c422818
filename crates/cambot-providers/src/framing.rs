//! Byte chunks → frames. Server-sent events (Anthropic, OpenAI) and newline-delimited JSON
//! (Ollama). Both are incremental and synchronous: chunks may split a line (or a UTF-8
//! character, or a `\r\n`) anywhere.

use crate::error::ProviderError;

/// One decoded unit: an SSE event (`event` is its `event:` line, if any) or one NDJSON line
/// (`event` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Which framing a body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Sse,
    Ndjson,
}

/// Largest line accepted; a provider sending more without a newline is broken.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Framer {
    framing: Framing,
    /// Bytes not yet forming a complete line.
    buf: Vec<u8>,
    /// How much of `buf` was already scanned without finding a line end, so a long line sent
    /// in many small chunks is scanned once, not once per chunk.
    scanned: usize,
    /// SSE state of the event being assembled.
    event: Option<String>,
    data: Option<String>,
}

impl Framer {
    pub(crate) fn new(framing: Framing) -> Self {
        Self {
            framing,
            buf: Vec::new(),
            scanned: 0,
            event: None,
            data: None,
        }
    }

    /// Feeds a chunk; complete frames are appended to `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            match self.buf[i] {
                b'\n' => {
                    let line = line_str(&self.buf[start..i])?.to_owned();
                    self.line(&line, out);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    if i + 1 == self.buf.len() {
                        // Might be the first half of "\r\n": wait for the next chunk.
                        break;
                    }
                    let line = line_str(&self.buf[start..i])?.to_owned();
                    self.line(&line, out);
                    i += if self.buf[i + 1] == b'\n' { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        self.buf.drain(..start);
        self.scanned = i - start;
        if self.buf.len() > MAX_LINE {
            return Err(ProviderError::Decode(format!(
                "a line exceeded {MAX_LINE} bytes"
            )));
        }
        Ok(())
    }

    /// The body ended: flushes a last line without terminator (and, for SSE, a last event
    /// without its blank line).
    pub(crate) fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        let line = line_str(&rest)?.trim_end_matches('\r').to_owned();
        if !line.is_empty() {
            self.line(&line, out);
        }
        if self.framing == Framing::Sse {
            self.line("", out);
        }
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<Frame>) {
        match self.framing {
            Framing::Ndjson => {
                if !line.trim().is_empty() {
                    out.push(Frame {
                        event: None,
                        data: line.to_owned(),
                    });
                }
            }
            Framing::Sse => self.sse_line(line, out),
        }
    }

    fn sse_line(&mut self, line: &str, out: &mut Vec<Frame>) {
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(Frame { event, data });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            // `id` and `retry` mean nothing for a one-shot POST stream.
            _ => {}
        }
    }
}

fn line_str(bytes: &[u8]) -> Result<&str, ProviderError> {
    std::str::from_utf8(bytes).map_err(ProviderError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, chunks: &[&[u8]]) -> Result<Vec<Frame>, ProviderError> {
        let mut f = Framer::new(framing);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(out)
    }

    fn ev(event: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn a_long_line_in_one_byte_chunks_is_scanned_once() -> Result<(), ProviderError> {
        // Rescanning the buffered partial line per chunk would take ~10^10 steps here.
        let line = format!("{{\"pad\":\"{}\"}}\r\n", "x".repeat(256 * 1024));
        let mut f = Framer::new(Framing::Ndjson);
        let mut out = Vec::new();
        for b in line.as_bytes() {
            f.push(std::slice::from_ref(b), &mut out)?;
        }
        f.finish(&mut out)?;
        assert_eq!(out, vec![ev(None, line.trim_end())]);
        Ok(())
    }

    #[test]
    fn sse_events_survive_any_chunking() -> Result<(), ProviderError> {
        let wire = "event: ping\ndata: {\"type\":\"ping\"}\n\n: comment\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\ndata: [DONE]\n\n";
        let want = vec![
            ev(Some("ping"), "{\"type\":\"ping\"}"),
            ev(Some("x"), "a\nb"),
            ev(None, "[DONE]"),
        ];
        let bytes = wire.as_bytes();
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(frames(Framing::Sse, &[a, b])?, want, "split at {split}");
        }
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(frames(Framing::Sse, &single)?, want);
        Ok(())
    }

    #[test]
    fn utf8_split_across_chunks_is_reassembled() -> Result<(), ProviderError> {
        let wire = "data: héllo ☃\n\n".as_bytes();
        let single: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(frames(Framing::Sse, &single)?, vec![ev(None, "héllo ☃")]);
        Ok(())
    }

    #[test]
    fn sse_event_without_blank_line_is_flushed_at_eof_but_lone_event_line_is_not()
    -> Result<(), ProviderError> {
        assert_eq!(frames(Framing::Sse, &[b"data: x"])?, vec![ev(None, "x")]);
        assert_eq!(frames(Framing::Sse, &[b"event: ping\n\n"])?, vec![]);
        Ok(())
    }

    #[test]
    fn ndjson_lines_split_anywhere_and_blank_lines_ignored() -> Result<(), ProviderError> {
        let wire = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(
                frames(Framing::Ndjson, &[a, b])?,
                vec![
                    ev(None, "{\"a\":1}"),
                    ev(None, "{\"b\":2}"),
                    ev(None, "{\"c\":3}")
                ]
            );
        }
        Ok(())
    }

    #[test]
    fn invalid_utf8_is_a_decode_error() {
        assert!(matches!(
            frames(Framing::Ndjson, &[b"\xff\xfe\n"]),
            Err(ProviderError::NotUtf8(_))
        ));
    }
}
