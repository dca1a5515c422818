//! Ollama native chat (`POST {base}/api/chat`, NDJSON).
//!
//! Rules (llm-wire.md 1.3): tool arguments are JSON objects (not strings); tool calls arrive
//! whole; tool results are `role: tool` messages naming the tool (`tool_name`); the final line
//! has `done: true` and `done_reason` (`stop` even for tool calls); errors come as a status
//! with `{"error":"…"}`, or as such a line after a 200 head. `options.num_ctx` is always sent
//! because Ollama's default context silently truncates.

use std::collections::HashMap;

use serde_json::Map;
use serde_json::Value;
use serde_json::json;

use super::decode_json;
use crate::error::ApiError;
use crate::error::ErrorKind;
use crate::error::ProviderError;
use crate::framing::Frame;
use crate::types::ContentBlock;
use crate::types::ModelRequest;
use crate::types::Role;
use crate::types::StopReason;
use crate::types::StreamEvent;
use crate::types::ToolResult;
use crate::types::Usage;

pub(crate) fn encode(
    model: &str,
    max_tokens: u32,
    num_ctx: u32,
    request: &ModelRequest,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("stream".into(), json!(true));
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
    }
    if request.tool_choice.is_some() {
        tracing::debug!("ollama /api/chat has no tool_choice; ignoring it");
    }
    let mut options = Map::new();
    options.insert("num_ctx".into(), json!(num_ctx));
    options.insert("num_predict".into(), json!(max_tokens));
    if let Some(t) = request.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if !request.stop_sequences.is_empty() {
        options.insert("stop".into(), json!(request.stop_sequences));
    }
    body.insert("options".into(), Value::Object(options));
    if request.thinking.is_some() {
        body.insert("think".into(), json!(true));
    }
    Ok(Value::Object(body))
}

fn encode_messages(request: &ModelRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    // Tool results name their tool: remember every call's name and position by id.
    let mut calls: HashMap<String, (String, usize)> = HashMap::new();
    for m in &request.messages {
        match m.role {
            Role::Assistant => {
                calls = m
                    .tool_uses()
                    .enumerate()
                    .map(|(i, t)| (t.id.clone(), (t.name.clone(), i)))
                    .collect();
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert("content".into(), json!(m.text()));
                let thinking: String = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Thinking { thinking, .. } => Some(thinking.as_str()),
                        _ => None,
                    })
                    .collect();
                if !thinking.is_empty() {
                    msg.insert("thinking".into(), json!(thinking));
                }
                let tool_calls: Vec<Value> = m
                    .tool_uses()
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "function": {"name": t.name, "arguments": t.input},
                        })
                    })
                    .collect();
                if !tool_calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(tool_calls));
                }
                out.push(Value::Object(msg));
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
                results.sort_by_key(|r| calls.get(&r.tool_use_id).map_or(usize::MAX, |c| c.1));
                for r in results {
                    let name = calls
                        .get(&r.tool_use_id)
                        .map(|c| c.0.clone())
                        .unwrap_or_default();
                    out.push(json!({
                        "role": "tool",
                        "content": super::openai::tool_result_text(r),
                        "tool_name": name,
                        "tool_call_id": r.tool_use_id,
                    }));
                }
                let text = m.text();
                let images: Vec<&str> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Image { data, .. } => Some(data.as_str()),
                        _ => None,
                    })
                    .collect();
                if !text.is_empty() || !images.is_empty() {
                    let mut msg = json!({"role": "user", "content": text});
                    if let (false, Some(obj)) = (images.is_empty(), msg.as_object_mut()) {
                        obj.insert("images".into(), json!(images));
                    }
                    out.push(msg);
                }
            }
        }
    }
    out
}

/// `(None, error, kind)` of an error body `{"error":"…"}`.
pub(crate) fn error_details(
    status: u16,
    body: Option<&Value>,
) -> (Option<String>, Option<String>, ErrorKind) {
    let message = body.and_then(|b| b.get("error")).and_then(|e| match e {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    (None, message, ErrorKind::from_status(status))
}

#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    started: bool,
    calls: usize,
    thinking: bool,
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
        let line = decode_json(&frame.data)?;
        if let Some(err) = line.get("error").filter(|e| !e.is_null()) {
            let message = match err {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let lower = message.to_ascii_lowercase();
            let kind = if lower.contains("overloaded") || lower.contains("busy") {
                ErrorKind::Overloaded
            } else {
                ErrorKind::Server
            };
            return Err(ApiError {
                status: None,
                kind,
                error_type: None,
                message,
                retry_after: None,
                should_retry: None,
                request_id: None,
            }
            .into());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                id: None,
                model: line.get("model").and_then(Value::as_str).map(str::to_owned),
            });
        }
        if let Some(msg) = line.get("message") {
            let s = |k: &str| msg.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(thinking) = s("thinking") {
                self.thinking = true;
                out.push(StreamEvent::ThinkingDelta {
                    thinking: thinking.to_owned(),
                });
            }
            if let Some(text) = s("content") {
                self.close_thinking(out);
                out.push(StreamEvent::TextDelta {
                    text: text.to_owned(),
                });
            }
            let calls = msg.get("tool_calls").and_then(Value::as_array);
            for call in calls.into_iter().flatten() {
                self.close_thinking(out);
                self.tool_call(call, out);
            }
        }
        if line.get("done").and_then(Value::as_bool) == Some(true) {
            self.close_thinking(out);
            let n = |k: &str| line.get(k).and_then(Value::as_u64).unwrap_or(0);
            out.push(StreamEvent::Usage(Usage {
                input_tokens: n("prompt_eval_count"),
                output_tokens: n("eval_count"),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: None,
            }));
            let reason = match line.get("done_reason").and_then(Value::as_str) {
                // `stop` even when the model called tools.
                Some("stop") | None if self.calls > 0 => StopReason::ToolUse,
                Some("stop") | None => StopReason::EndTurn,
                Some("length") => StopReason::MaxTokens,
                Some(other) => StopReason::Other(other.to_owned()),
            };
            self.done = true;
            out.push(StreamEvent::Stop {
                reason,
                stop_sequence: None,
            });
        }
        Ok(())
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<StreamEvent>) {
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty())
            .map_or_else(|| format!("call_{}", self.calls), str::to_owned);
        self.calls += 1;
        let raw = function.and_then(|f| f.get("arguments"));
        let (input, invalid_input, fragment) = match raw {
            Some(v @ Value::Object(_)) => (v.clone(), None, v.to_string()),
            // Some models answer with a string holding JSON.
            Some(Value::String(s)) => {
                let (input, bad) = super::parse_tool_args(s);
                (input, bad, s.clone())
            }
            None | Some(Value::Null) => (json!({}), None, String::new()),
            Some(other) => {
                let text = other.to_string();
                let (input, bad) = super::parse_tool_args(&text);
                (input, bad, text)
            }
        };
        out.push(StreamEvent::ToolCallStart {
            id: id.clone(),
            name,
        });
        if !fragment.is_empty() {
            out.push(StreamEvent::ToolArgsDelta {
                id: id.clone(),
                fragment,
            });
        }
        out.push(StreamEvent::ToolCallEnd {
            id,
            input,
            invalid_input,
        });
    }

    fn close_thinking(&mut self, out: &mut Vec<StreamEvent>) {
        if std::mem::take(&mut self.thinking) {
            out.push(StreamEvent::ThinkingEnd { signature: None });
        }
    }

    pub(crate) fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        if self.done {
            Ok(())
        } else {
            Err(ProviderError::IncompleteStream)
        }
    }
}

#[cfg(test)]
#[path = "ollama_tests.rs"]
mod tests;
