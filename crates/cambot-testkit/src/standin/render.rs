//! Renders a [`Script`] in one dialect's exact wire format (llm-wire.md sections 1.1-1.3).

use std::time::Duration;

use hyper::body::Bytes;
use serde_json::Value;
use serde_json::json;

use super::Dialect;
use super::script::Block;
use super::script::ErrorClass;
use super::script::ErrorScript;
use super::script::InterruptKind;
use super::script::Kind;
use super::script::MessageScript;
use super::script::Script;
use super::script::split_words;

/// One step of writing a response body.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    Data(Bytes),
    Delay(Duration),
    /// Cut the connection mid-body.
    Drop,
    /// Never send anything again.
    Stall,
}

#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) head_delay: Duration,
    pub(crate) pieces: Vec<Piece>,
}

/// What the renderer needs to know about the request.
pub(crate) struct RequestInfo<'a> {
    pub(crate) body: &'a Value,
    /// Sequence number of the request (1-based), used in ids.
    pub(crate) seq: usize,
}

impl RequestInfo<'_> {
    fn model(&self) -> String {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("standin-model")
            .to_owned()
    }

    fn streaming(&self, dialect: Dialect) -> bool {
        match self.body.get("stream").and_then(Value::as_bool) {
            Some(s) => s,
            // Ollama streams unless told not to; the others only when asked.
            None => dialect == Dialect::Ollama,
        }
    }

    fn include_usage(&self) -> bool {
        self.body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The text of the last user message, whatever the dialect's message shape.
    fn last_user_text(&self) -> String {
        let messages = self.body.get("messages").and_then(Value::as_array);
        let last = messages
            .into_iter()
            .flatten()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        match last.and_then(|m| m.get("content")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        }
    }
}

impl RequestInfo<'_> {
    /// The text of the last tool result: an Anthropic `tool_result` block of the last user
    /// message, or an OpenAI `tool` message.
    fn last_tool_result_text(&self) -> String {
        let text_of = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        };
        let messages = self.body.get("messages").and_then(Value::as_array);
        for m in messages.into_iter().flatten().rev() {
            match m.get("role").and_then(Value::as_str) {
                Some("tool") => return m.get("content").map(text_of).unwrap_or_default(),
                Some("user") => {
                    let blocks = m.get("content").and_then(Value::as_array);
                    if let Some(b) = blocks
                        .into_iter()
                        .flatten()
                        .rev()
                        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    {
                        return b.get("content").map(text_of).unwrap_or_default();
                    }
                }
                _ => {}
            }
        }
        String::new()
    }
}

pub(crate) fn render(dialect: Dialect, script: &Script, req: &RequestInfo<'_>) -> Rendered {
    let mut headers = Vec::new();
    let (status, events) = match &script.kind {
        Kind::Message(m) => message(dialect, m, req, &mut headers),
        Kind::Echo => {
            let text: String = req.last_user_text().chars().take(40).collect();
            let m = MessageScript {
                blocks: vec![Block::Text(split_words(&format!("echo: {text}")))],
                input_tokens: 10,
                ..MessageScript::default()
            };
            message(dialect, &m, req, &mut headers)
        }
        Kind::QuoteToolResult(max) => {
            let text: String = req.last_tool_result_text().chars().take(*max).collect();
            let m = MessageScript {
                blocks: vec![Block::Text(vec![format!("quote: {text}")])],
                input_tokens: 10,
                ..MessageScript::default()
            };
            message(dialect, &m, req, &mut headers)
        }
        Kind::Error(e) => {
            let (status, body) = error_body(dialect, e, req.seq);
            headers.push(("content-type".into(), "application/json".into()));
            (status, vec![Piece::Data(Bytes::from(body.to_string()))])
        }
        Kind::Raw {
            status,
            content_type,
            chunks,
        } => {
            headers.push(("content-type".into(), content_type.clone()));
            let pieces = chunks
                .iter()
                .map(|c| Piece::Data(Bytes::from(c.clone())))
                .collect();
            (*status, pieces)
        }
    };
    headers.push(("request-id".into(), format!("req_standin_{}", req.seq)));
    headers.extend(script.headers.iter().cloned());
    let mut pieces = Vec::with_capacity(events.len() * 2);
    for p in events {
        if !script.event_delay.is_zero() && matches!(p, Piece::Data(_)) {
            pieces.push(Piece::Delay(script.event_delay));
        }
        pieces.push(p);
    }
    if let Some(n) = script.byte_chunks {
        pieces = rechunk(pieces, n);
    }
    Rendered {
        status,
        headers,
        head_delay: script.head_delay,
        pieces,
    }
}

/// Splits data pieces into `n`-byte pieces, merging across event boundaries.
fn rechunk(pieces: Vec<Piece>, n: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let flush = |buf: &mut Vec<u8>, out: &mut Vec<Piece>| {
        for c in buf.chunks(n) {
            out.push(Piece::Data(Bytes::copy_from_slice(c)));
        }
        buf.clear();
    };
    for p in pieces {
        match p {
            Piece::Data(d) => buf.extend_from_slice(&d),
            other => {
                flush(&mut buf, &mut out);
                out.push(other);
            }
        }
    }
    flush(&mut buf, &mut out);
    out
}

fn message(
    dialect: Dialect,
    m: &MessageScript,
    req: &RequestInfo<'_>,
    headers: &mut Vec<(String, String)>,
) -> (u16, Vec<Piece>) {
    let model = m.model.clone().unwrap_or_else(|| req.model());
    if !req.streaming(dialect) {
        headers.push(("content-type".into(), "application/json".into()));
        let body = match dialect {
            Dialect::Anthropic => super::whole::anthropic(m, &model, req.seq),
            Dialect::OpenAi => super::whole::openai(m, &model, req.seq),
            Dialect::Ollama => super::whole::ollama(m, &model),
        };
        return (200, vec![Piece::Data(Bytes::from(body.to_string()))]);
    }
    let (content_type, mut events) = match dialect {
        Dialect::Anthropic => ("text/event-stream", anthropic_events(m, &model, req.seq)),
        Dialect::OpenAi => (
            "text/event-stream",
            openai_events(m, &model, req.seq, req.include_usage()),
        ),
        Dialect::Ollama => ("application/x-ndjson", ollama_events(m, &model)),
    };
    headers.push(("content-type".into(), content_type.into()));
    headers.push(("cache-control".into(), "no-cache".into()));
    let mut tail = Vec::new();
    if let Some(i) = &m.interrupt {
        events.truncate(i.after);
        match &i.how {
            InterruptKind::Error {
                error_type,
                message,
            } => events.push(stream_error(dialect, error_type, message)),
            InterruptKind::Drop => tail.push(Piece::Drop),
            InterruptKind::Stall => tail.push(Piece::Stall),
            InterruptKind::End => {}
        }
    }
    let mut pieces: Vec<Piece> = events
        .into_iter()
        .map(|e| Piece::Data(Bytes::from(e)))
        .collect();
    pieces.extend(tail);
    (200, pieces)
}

pub(crate) fn output_tokens(m: &MessageScript) -> u64 {
    if m.output_tokens > 0 {
        return m.output_tokens;
    }
    let n: usize = m
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(c) => c.len(),
            Block::Thinking { chunks, .. } => chunks.len(),
            Block::RedactedThinking(_) => 1,
            Block::Tool(t) => t.fragments.len().max(1),
        })
        .sum();
    n.max(1) as u64
}

pub(crate) fn has_tools(m: &MessageScript) -> bool {
    m.blocks.iter().any(|b| matches!(b, Block::Tool(_)))
}

/// The stop reason in Anthropic's spelling.
pub(crate) fn stop_reason(m: &MessageScript) -> String {
    m.stop_reason.clone().unwrap_or_else(|| {
        if has_tools(m) {
            "tool_use".into()
        } else {
            "end_turn".into()
        }
    })
}

pub(crate) fn openai_finish_reason(m: &MessageScript) -> String {
    match stop_reason(m).as_str() {
        "end_turn" | "stop_sequence" => "stop".into(),
        "max_tokens" => "length".into(),
        "tool_use" => "tool_calls".into(),
        other => other.into(),
    }
}

pub(crate) fn ollama_done_reason(m: &MessageScript) -> String {
    match stop_reason(m).as_str() {
        "end_turn" | "stop_sequence" | "tool_use" => "stop".into(),
        "max_tokens" => "length".into(),
        other => other.into(),
    }
}

pub(crate) fn tool_id(dialect: Dialect, id: Option<&String>, index: usize) -> String {
    match (id, dialect) {
        (Some(id), _) => id.clone(),
        (None, Dialect::OpenAi) => format!("call_standin_{index}"),
        (None, _) => format!("toolu_standin_{index}"),
    }
}

fn sse(v: &Value) -> Vec<u8> {
    let t = v.get("type").and_then(Value::as_str).unwrap_or("message");
    format!("event: {t}\ndata: {v}\n\n").into_bytes()
}

fn data(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

fn anthropic_events(m: &MessageScript, model: &str, seq: usize) -> Vec<Vec<u8>> {
    let mut ev = vec![
        sse(&json!({"type": "message_start", "message": {
            "id": format!("msg_standin_{seq}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": m.input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }})),
        sse(&json!({"type": "ping"})),
    ];
    for (index, block) in m.blocks.iter().enumerate() {
        let start = |cb: Value| {
            sse(&json!({"type": "content_block_start", "index": index, "content_block": cb}))
        };
        let delta =
            |d: Value| sse(&json!({"type": "content_block_delta", "index": index, "delta": d}));
        match block {
            Block::Text(chunks) => {
                ev.push(start(json!({"type": "text", "text": ""})));
                for c in chunks {
                    ev.push(delta(json!({"type": "text_delta", "text": c})));
                }
            }
            Block::Thinking { chunks, signature } => {
                ev.push(start(
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                ));
                for c in chunks {
                    ev.push(delta(json!({"type": "thinking_delta", "thinking": c})));
                }
                ev.push(delta(
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            Block::RedactedThinking(data) => {
                ev.push(start(json!({"type": "redacted_thinking", "data": data})));
            }
            Block::Tool(t) => {
                let id = tool_id(Dialect::Anthropic, t.id.as_ref(), index);
                ev.push(start(
                    json!({"type": "tool_use", "id": id, "name": t.name, "input": {}}),
                ));
                // The real API opens with an empty fragment.
                ev.push(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                for f in &t.fragments {
                    ev.push(delta(
                        json!({"type": "input_json_delta", "partial_json": f}),
                    ));
                }
            }
        }
        ev.push(sse(&json!({"type": "content_block_stop", "index": index})));
    }
    ev.push(sse(&json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason(m), "stop_sequence": m.stop_sequence},
        "usage": {"output_tokens": output_tokens(m)}})));
    ev.push(sse(&json!({"type": "message_stop"})));
    ev
}

fn openai_events(m: &MessageScript, model: &str, seq: usize, usage: bool) -> Vec<Vec<u8>> {
    let id = format!("chatcmpl-standin-{seq}");
    let chunk = |delta: Value, finish: Value| {
        data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": 1_764_547_200,
            "model": model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut ev = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut calls = Vec::new();
    for (index, block) in m.blocks.iter().enumerate() {
        match block {
            Block::Text(chunks) => {
                for c in chunks {
                    ev.push(chunk(json!({"content": c}), Value::Null));
                }
            }
            Block::Thinking { chunks, .. } => {
                for c in chunks {
                    ev.push(chunk(json!({"reasoning_content": c}), Value::Null));
                }
            }
            Block::RedactedThinking(_) => {}
            Block::Tool(t) => calls.push((index, t)),
        }
    }
    // Each call: its first fragment carries id, type and name; later ones only arguments.
    let mut per_call: Vec<Vec<Vec<u8>>> = Vec::new();
    for (k, (index, t)) in calls.iter().enumerate() {
        let mut frags = Vec::new();
        let call_id = tool_id(Dialect::OpenAi, t.id.as_ref(), *index);
        frags.push(chunk(
            json!({"tool_calls": [{"index": k, "id": call_id, "type": "function",
                "function": {"name": t.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for f in &t.fragments {
            frags.push(chunk(
                json!({"tool_calls": [{"index": k, "function": {"arguments": f}}]}),
                Value::Null,
            ));
        }
        per_call.push(frags);
    }
    if m.interleave_tools {
        let longest = per_call.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for frags in &per_call {
                if let Some(f) = frags.get(i) {
                    ev.push(f.clone());
                }
            }
        }
    } else {
        ev.extend(per_call.into_iter().flatten());
    }
    ev.push(chunk(json!({}), json!(openai_finish_reason(m))));
    if usage {
        let out = output_tokens(m);
        ev.push(data(&json!({"id": id, "object": "chat.completion.chunk",
            "created": 1_764_547_200, "model": model, "choices": [],
            "usage": {"prompt_tokens": m.input_tokens, "completion_tokens": out,
                      "total_tokens": m.input_tokens + out}})));
    }
    ev.push(b"data: [DONE]\n\n".to_vec());
    ev
}

fn ollama_line(v: &Value) -> Vec<u8> {
    format!("{v}\n").into_bytes()
}

const OLLAMA_CREATED: &str = "2026-12-01T00:00:00.000000Z";

fn ollama_events(m: &MessageScript, model: &str) -> Vec<Vec<u8>> {
    let line = |msg: Value| {
        ollama_line(
            &json!({"model": model, "created_at": OLLAMA_CREATED, "message": msg,
            "done": false}),
        )
    };
    let mut ev = Vec::new();
    let mut calls = Vec::new();
    for block in &m.blocks {
        match block {
            Block::Text(chunks) => {
                for c in chunks {
                    ev.push(line(json!({"role": "assistant", "content": c})));
                }
            }
            Block::Thinking { chunks, .. } => {
                for c in chunks {
                    ev.push(line(
                        json!({"role": "assistant", "content": "", "thinking": c}),
                    ));
                }
            }
            Block::RedactedThinking(_) => {}
            Block::Tool(t) => calls.push(super::whole::ollama_call(t)),
        }
    }
    if !calls.is_empty() {
        // Tool calls arrive whole, all in one line.
        ev.push(line(
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
        ));
    }
    ev.push(ollama_line(&super::whole::ollama_final(m, model)));
    ev
}

fn stream_error(dialect: Dialect, error_type: &str, message: &str) -> Vec<u8> {
    match dialect {
        Dialect::Anthropic => sse(&json!({"type": "error",
            "error": {"type": error_type, "message": message}})),
        Dialect::OpenAi => data(&json!({"error": {"message": message, "type": error_type,
            "param": null, "code": null}})),
        Dialect::Ollama => ollama_line(&json!({"error": message})),
    }
}

/// The status and body of an error in a dialect's shape.
pub(crate) fn error_body(dialect: Dialect, e: &ErrorScript, seq: usize) -> (u16, Value) {
    use ErrorClass as C;
    let (status, anthropic_type, openai_type, openai_code): (u16, &str, &str, Value) = match &e
        .class
    {
        C::InvalidRequest => (
            400,
            "invalid_request_error",
            "invalid_request_error",
            Value::Null,
        ),
        C::Authentication => (
            401,
            "authentication_error",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        C::Permission => (
            403,
            "permission_error",
            "invalid_request_error",
            Value::Null,
        ),
        C::NotFound => (
            404,
            "not_found_error",
            "invalid_request_error",
            json!("model_not_found"),
        ),
        C::RateLimited => (
            429,
            "rate_limit_error",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        C::QuotaExceeded => (
            429,
            "rate_limit_error",
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
        C::Overloaded => (529, "overloaded_error", "server_error", Value::Null),
        C::Server => (500, "api_error", "server_error", Value::Null),
        C::Custom { status, error_type } => (*status, error_type, error_type, json!(error_type)),
    };
    match dialect {
        Dialect::Anthropic => {
            let mut error = json!({"type": anthropic_type, "message": e.message});
            if e.class == C::QuotaExceeded
                && let Some(obj) = error.as_object_mut()
            {
                obj.insert(
                    "details".into(),
                    json!({"error_code": "enforced_spend_limit_reached"}),
                );
            }
            (
                status,
                json!({"type": "error", "error": error,
                    "request_id": format!("req_standin_{seq}")}),
            )
        }
        Dialect::OpenAi => {
            let status = if e.class == C::Overloaded {
                503
            } else {
                status
            };
            (
                status,
                json!({"error": {"message": e.message, "type": openai_type, "param": null,
                    "code": openai_code}}),
            )
        }
        Dialect::Ollama => {
            let status = if e.class == C::Overloaded {
                503
            } else {
                status
            };
            (status, json!({"error": e.message}))
        }
    }
}
