//! Entry points for the `cargo fuzz` targets under `fuzz/`: the private SSE / NDJSON framing and
//! the dialect stream decoders, driven exactly as a streamed call drives them. Not an API.

use crate::config::Dialect;
use crate::dialect;
use crate::dialect::Decoder;
use crate::error::ProviderError;
use crate::framing::Framer;
use crate::framing::Framing;
use crate::provider::decode_chunk;
use crate::provider::decode_end;
use crate::types::StreamEvent;

/// One frame as `(event, data)`: an SSE event, or an NDJSON line (`event` is `None`).
pub type RawFrame = (Option<String>, String);

/// Frames a body delivered as `chunks` (SSE when `sse`, else NDJSON), flushing at the end.
pub fn frames(sse: bool, chunks: &[&[u8]]) -> Result<Vec<RawFrame>, ProviderError> {
    let mut framer = Framer::new(if sse { Framing::Sse } else { Framing::Ndjson });
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk, &mut out)?;
    }
    framer.finish(&mut out)?;
    Ok(out.into_iter().map(|f| (f.event, f.data)).collect())
}

/// Decodes a 2xx streamed body of `dialect` delivered as `chunks`: the events a call yields and
/// how it ends. Like a call, it stops reading once the end-of-message marker has been decoded.
pub fn decode_body(
    dialect: Dialect,
    chunks: &[&[u8]],
) -> (Vec<StreamEvent>, Result<(), ProviderError>) {
    let mut framer = Framer::new(dialect::framing(dialect));
    let mut decoder = Decoder::new(dialect);
    let mut events = Vec::new();
    for chunk in chunks {
        if let Err(e) = decode_chunk(&mut framer, &mut decoder, chunk, &mut events) {
            return (events, Err(e));
        }
        if decoder.is_done() {
            return (events, Ok(()));
        }
    }
    let end = decode_end(&mut framer, &mut decoder, &mut events);
    (events, end)
}

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
