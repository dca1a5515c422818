//! OpenAI Chat Completions (`POST {base}/chat/completions`, `stream: true`) and every
//! compatible server.
//!
//! Stream rules (llm-wire.md 1.2): data-only SSE ending in `data: [DONE]`; tool calls are keyed
//! by `delta.tool_calls[].index` (id, type and name only on the first fragment), arguments are
//! string fragments parsed at `finish_reason`; a usage chunk with `choices: []` may follow;
//! an error may arrive as `data: {"error":…}` after a 200 head.

use std::collections::BTreeMap;
use std::collections::HashMap;

use serde_json::Map;
use serde_json::Value;
use serde_json::json;

use super::decode_json;
use super::kind_from_type;
use super::parse_tool_args;
use super::value_text;
use crate::error::ApiError;
use crate::error::ErrorKind;
use crate::error::ProviderError;
use crate::framing::Frame;
use crate::types::ContentBlock;
use crate::types::ModelRequest;
use crate::types::Role;
use crate::types::StopReason;
use crate::types::StreamEvent;
use crate::types::ToolChoice;
use crate::types::ToolResult;
use crate::types::Usage;

pub(crate) fn encode(
    model: &str,
    max_tokens: u32,
    request: &ModelRequest,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    body.insert("max_tokens".into(), json!(max_tokens));
    body.insert("messages".into(), Value::Array(encode_messages(request)));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(p) = request.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(choice) = &request.tool_choice {
        let c = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Any => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool { name } => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), c);
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if !request.stop_sequences.is_empty() {
        body.insert("stop".into(), json!(request.stop_sequences));
    }
    Ok(Value::Object(body))
}

/// Messages in Chat Completions form. Tool results become one `role: tool` message each,
/// ordered as the calls of the preceding assistant message (whatever order the caller
/// answered in), before any other user content of that turn.
pub(crate) fn encode_messages(request: &ModelRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    let mut call_order: HashMap<&str, usize> = HashMap::new();
    for m in &request.messages {
        match m.role {
            Role::Assistant => {
                call_order = m
                    .tool_uses()
                    .enumerate()
                    .map(|(i, t)| (t.id.as_str(), i))
                    .collect();
                out.push(encode_assistant(&m.content));
            }
            Role::User => {
                let mut results: Vec<&ToolResult> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::ToolResult(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                results.sort_by_key(|r| {
                    call_order
                        .get(r.tool_use_id.as_str())
                        .copied()
                        .unwrap_or(usize::MAX)
                });
                for r in results {
                    out.push(json!({
                        "role": "tool",
                        "tool_call_id": r.tool_use_id,
                        "content": tool_result_text(r),
                    }));
                }
                if let Some(content) = user_content(&m.content) {
                    out.push(json!({"role": "user", "content": content}));
                }
            }
        }
    }
    out
}

/// OpenAI has no `is_error`: errors are marked in the text.
pub(crate) fn tool_result_text(r: &ToolResult) -> String {
    if r.is_error && !r.content.starts_with("Error") {
        format!("Error: {}", r.content)
    } else {
        r.content.clone()
    }
}

/// A plain string when the message is text only, content parts when it holds images, `None`
/// when nothing but tool results.
fn user_content(blocks: &[ContentBlock]) -> Option<Value> {
    let has_image = blocks
        .iter()
        .any(|b| matches!(b, ContentBlock::Image { .. }));
    let mut text = String::new();
    let mut parts = Vec::new();
    for b in blocks {
        match b {
            ContentBlock::Text { text: t } => {
                text.push_str(t);
                parts.push(json!({"type": "text", "text": t}));
            }
            ContentBlock::Image { media_type, data } => parts.push(json!({
                "type": "image_url",
                "image_url": {"url": format!("data:{media_type};base64,{data}")},
            })),
            _ => {}
        }
    }
    if has_image {
        Some(Value::Array(parts))
    } else if parts.is_empty() {
        None
    } else {
        Some(Value::String(text))
    }
}

fn encode_assistant(blocks: &[ContentBlock]) -> Value {
    let text: String = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(t) => {
                // Invalid arguments go back verbatim: the model sees what it sent.
                let arguments = match &t.invalid_input {
                    Some(bad) => bad.raw.clone(),
                    None => t.input.to_string(),
                };
                Some(json!({
                    "id": t.id,
                    "type": "function",
                    "function": {"name": t.name, "arguments": arguments},
                }))
            }
            _ => None,
        })
        .collect();
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    if text.is_empty() && !calls.is_empty() {
        msg.insert("content".into(), Value::Null);
    } else {
        msg.insert("content".into(), json!(text));
    }
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(msg)
}

/// `(error.type or code, error.message, kind)` of an error body.
pub(crate) fn error_details(
    status: u16,
    body: Option<&Value>,
) -> (Option<String>, Option<String>, ErrorKind) {
    let err = body.and_then(|b| b.get("error"));
    // Some servers send `{"error": "text"}`.
    if let Some(Value::String(text)) = err {
        return (None, Some(text.clone()), ErrorKind::from_status(status));
    }
    let error_type = err.and_then(|e| e.get("type")).and_then(value_text);
    let code = err.and_then(|e| e.get("code")).and_then(value_text);
    let message = err.and_then(|e| e.get("message")).and_then(value_text);
    let quota = [code.as_deref(), error_type.as_deref()]
        .into_iter()
        .flatten()
        .any(|n| kind_from_type(n) == Some(ErrorKind::QuotaExceeded));
    let kind = if quota {
        ErrorKind::QuotaExceeded
    } else if status == 0 {
        // Mid-stream: only the names say what happened.
        error_type
            .as_deref()
            .and_then(kind_from_type)
            .or_else(|| code.as_deref().and_then(kind_from_type))
            .unwrap_or(ErrorKind::Server)
    } else {
        // With a status, trust it: OpenAI's 429 `type` is e.g. "requests" or "tokens".
        ErrorKind::from_status(status)
    };
    let name = if code.as_deref() == Some("insufficient_quota") {
        code
    } else {
        error_type.or(code)
    };
    (name, message, kind)
}

#[derive(Debug)]
struct Call {
    id: String,
    args: String,
    started: bool,
    name: String,
}

#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    /// Calls keyed by their `index`, in index order.
    calls: BTreeMap<u64, Call>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    thinking: bool,
    started: bool,
    pub(crate) done: bool,
}

impl StreamDecoder {
    pub(crate) fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        if frame.data.trim() == "[DONE]" {
            return self.end(out);
        }
        let chunk = decode_json(&frame.data)?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            let (error_type, message, kind) = error_details(0, Some(&chunk));
            return Err(ApiError {
                status: None,
                kind,
                error_type,
                message: message.unwrap_or_else(|| "error chunk without a message".into()),
                retry_after: None,
                should_retry: None,
                request_id: None,
            }
            .into());
        }
        if !self.started {
            self.started = true;
            let s = |k: &str| chunk.get(k).and_then(Value::as_str).map(str::to_owned);
            out.push(StreamEvent::MessageStart {
                id: s("id"),
                model: s("model"),
            });
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            let usage = Usage {
                input_tokens: n("prompt_tokens").unwrap_or(0),
                output_tokens: n("completion_tokens").unwrap_or(0),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: u
                    .get("prompt_tokens_details")
                    .and_then(|d| d.get("cached_tokens"))
                    .and_then(Value::as_u64),
            };
            self.usage = Some(usage);
            out.push(StreamEvent::Usage(usage));
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta") {
                self.delta(delta, out);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.close_thinking(out);
                self.close_calls(out);
                self.finish_reason = Some(reason.to_owned());
            }
        }
        Ok(())
    }

    fn delta(&mut self, delta: &Value, out: &mut Vec<StreamEvent>) {
        let reasoning = delta
            .get("reasoning_content")
            .or_else(|| delta.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(thinking) = reasoning {
            self.thinking = true;
            out.push(StreamEvent::ThinkingDelta {
                thinking: thinking.to_owned(),
            });
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.close_thinking(out);
            out.push(StreamEvent::TextDelta {
                text: text.to_owned(),
            });
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for (pos, tc) in calls.into_iter().flatten().enumerate() {
            self.close_thinking(out);
            let index = tc
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            let function = tc.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            let args = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = tc
                .get("id")
                .and_then(Value::as_str)
                .filter(|i| !i.is_empty());
            let call = self.calls.entry(index).or_insert_with(|| Call {
                id: id.map_or_else(|| format!("call_{index}"), str::to_owned),
                args: String::new(),
                started: false,
                name: String::new(),
            });
            if let Some(n) = name {
                call.name.push_str(n);
            }
            if !call.started && !call.name.is_empty() {
                call.started = true;
                out.push(StreamEvent::ToolCallStart {
                    id: call.id.clone(),
                    name: call.name.clone(),
                });
                // Arguments that arrived before the name (rare) are replayed now.
                if !call.args.is_empty() {
                    out.push(StreamEvent::ToolArgsDelta {
                        id: call.id.clone(),
                        fragment: call.args.clone(),
                    });
                }
            }
            if !args.is_empty() {
                call.args.push_str(args);
                if call.started {
                    out.push(StreamEvent::ToolArgsDelta {
                        id: call.id.clone(),
                        fragment: args.to_owned(),
                    });
                }
            }
        }
    }

    fn close_thinking(&mut self, out: &mut Vec<StreamEvent>) {
        if std::mem::take(&mut self.thinking) {
            out.push(StreamEvent::ThinkingEnd { signature: None });
        }
    }

    fn close_calls(&mut self, out: &mut Vec<StreamEvent>) {
        for (_, call) in std::mem::take(&mut self.calls) {
            if !call.started {
                // A call without a name cannot be run; report it as such.
                out.push(StreamEvent::ToolCallStart {
                    id: call.id.clone(),
                    name: String::new(),
                });
            }
            let (input, invalid_input) = parse_tool_args(&call.args);
            out.push(StreamEvent::ToolCallEnd {
                id: call.id,
                input,
                invalid_input,
            });
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        let Some(reason) = self.finish_reason.take() else {
            return Err(ProviderError::IncompleteStream);
        };
        self.done = true;
        out.push(StreamEvent::Stop {
            reason: map_finish_reason(&reason),
            stop_sequence: None,
        });
        Ok(())
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        // Some compatible servers end without `[DONE]`; a finish reason is enough.
        self.end(out)
    }
}

pub(crate) fn map_finish_reason(reason: &str) -> StopReason {
    match reason {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
