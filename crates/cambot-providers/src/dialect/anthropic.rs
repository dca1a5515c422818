//! Anthropic Messages (`POST {base}/v1/messages`, `stream: true`).
//!
//! Stream rules (llm-wire.md 1.1): events are keyed by block `index`; `input_json_delta`
//! fragments are concatenated and parsed only at `content_block_stop`; `message_delta.usage`
//! is cumulative; `ping` may come anywhere; an `error` event may follow a 200 head. Tolerated
//! quirks of compatible servers (llama.cpp): tool ids not `toolu_…`, `content_block_start`
//! without `input`, a block starting before the previous one stopped.

use std::collections::BTreeMap;

use serde_json::Map;
use serde_json::Value;
use serde_json::json;

use super::decode_json;
use super::kind_from_type;
use super::parse_tool_args;
use crate::error::ApiError;
use crate::error::ErrorKind;
use crate::error::ProviderError;
use crate::framing::Frame;
use crate::types::ContentBlock;
use crate::types::Message;
use crate::types::ModelRequest;
use crate::types::Role;
use crate::types::StopReason;
use crate::types::StreamEvent;
use crate::types::ToolChoice;
use crate::types::Usage;

pub(crate) fn encode(
    model: &str,
    max_tokens: u32,
    request: &ModelRequest,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(max_tokens));
    body.insert("stream".into(), json!(true));
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("system".into(), json!(system));
    }
    let messages: Vec<Value> = request.messages.iter().map(encode_message).collect();
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &request.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Any) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool { name }) => Some(json!({"type": "tool", "name": name})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        None => None,
    };
    if request.parallel_tool_calls == Some(false) && !request.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(obj) = c.as_object_mut()
            && obj.get("type") != Some(&json!("none"))
        {
            obj.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if !request.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop_sequences));
    }
    if let Some(th) = request.thinking {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": th.budget_tokens}),
        );
    }
    Ok(Value::Object(body))
}

fn encode_message(m: &Message) -> Value {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    // Tool results must come first in their user message.
    let (results, others): (Vec<&ContentBlock>, Vec<&ContentBlock>) = m
        .content
        .iter()
        .partition(|b| matches!(b, ContentBlock::ToolResult(_)));
    let blocks: Vec<Value> = results
        .into_iter()
        .chain(others)
        .filter_map(encode_block)
        .collect();
    json!({"role": role, "content": blocks})
}

fn encode_block(b: &ContentBlock) -> Option<Value> {
    Some(match b {
        // The API rejects empty text blocks.
        ContentBlock::Text { text } if text.is_empty() => return None,
        ContentBlock::Text { text } => json!({"type": "text", "text": text}),
        ContentBlock::Image { media_type, data } => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        ContentBlock::ToolUse(t) => {
            let input = if t.invalid_input.is_some() || !t.input.is_object() {
                json!({})
            } else {
                t.input.clone()
            };
            json!({"type": "tool_use", "id": t.id, "name": t.name, "input": input})
        }
        ContentBlock::ToolResult(r) => json!({
            "type": "tool_result",
            "tool_use_id": r.tool_use_id,
            "content": r.content,
            "is_error": r.is_error,
        }),
        ContentBlock::Thinking {
            thinking,
            signature,
        } => {
            let mut v = json!({"type": "thinking", "thinking": thinking});
            if let (Some(sig), Some(obj)) = (signature, v.as_object_mut()) {
                obj.insert("signature".into(), json!(sig));
            }
            v
        }
        ContentBlock::RedactedThinking { data } => {
            json!({"type": "redacted_thinking", "data": data})
        }
    })
}

/// `(error.type, error.message, kind)` of an error body.
pub(crate) fn error_details(
    status: u16,
    body: Option<&Value>,
) -> (Option<String>, Option<String>, ErrorKind) {
    let err = body.and_then(|b| b.get("error"));
    let error_type = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let spend_cap = err
        .and_then(|e| e.get("details"))
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str)
        == Some("enforced_spend_limit_reached");
    let kind = if spend_cap {
        ErrorKind::QuotaExceeded
    } else {
        error_type
            .as_deref()
            .and_then(kind_from_type)
            .unwrap_or_else(|| ErrorKind::from_status(status))
    };
    (error_type, message, kind)
}

#[derive(Debug)]
enum Block {
    Text,
    Thinking {
        signature: Option<String>,
    },
    Tool {
        id: String,
        json: String,
        start_input: Value,
    },
    /// Block types we do not model (server tools, citations…): deltas ignored.
    Other,
}

#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    stop_reason: Option<StopReason>,
    stop_sequence: Option<String>,
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
        let data = decode_json(&frame.data)?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(frame.event.as_deref())
            .unwrap_or_default();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let msg = data.get("message");
                let s = |k: &str| {
                    msg.and_then(|m| m.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                out.push(StreamEvent::MessageStart {
                    id: s("id"),
                    model: s("model"),
                });
                if let Some(u) = msg.and_then(|m| m.get("usage")) {
                    merge_usage(&mut self.usage, u);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            "content_block_start" => self.block_start(index, &data, out),
            "content_block_delta" => self.block_delta(index, &data, out),
            "content_block_stop" => self.block_stop(index, out),
            "message_delta" => {
                let delta = data.get("delta");
                if let Some(r) = delta
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(StopReason::from_name(r));
                }
                if let Some(s) = delta
                    .and_then(|d| d.get("stop_sequence"))
                    .and_then(Value::as_str)
                {
                    self.stop_sequence = Some(s.to_owned());
                }
                if let Some(u) = data.get("usage") {
                    merge_usage(&mut self.usage, u);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            "message_stop" => self.stop(out),
            "error" => {
                let (error_type, message, kind) = error_details(0, Some(&data));
                let kind = if kind == ErrorKind::Other {
                    ErrorKind::Server
                } else {
                    kind
                };
                return Err(ApiError {
                    status: None,
                    kind,
                    error_type,
                    message: message.unwrap_or_else(|| "error event without a message".into()),
                    retry_after: None,
                    should_retry: None,
                    request_id: None,
                }
                .into());
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, index: u64, data: &Value, out: &mut Vec<StreamEvent>) {
        let cb = data.get("content_block");
        let s = |k: &str| {
            cb.and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let block = match cb.and_then(|c| c.get("type")).and_then(Value::as_str) {
            Some("text") => {
                let text = s("text");
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta { text });
                }
                Block::Text
            }
            Some("thinking") => {
                let thinking = s("thinking");
                if !thinking.is_empty() {
                    out.push(StreamEvent::ThinkingDelta { thinking });
                }
                let signature = Some(s("signature")).filter(|x| !x.is_empty());
                Block::Thinking { signature }
            }
            Some("redacted_thinking") => {
                out.push(StreamEvent::RedactedThinking { data: s("data") });
                Block::Other
            }
            Some("tool_use") => {
                let id = s("id");
                out.push(StreamEvent::ToolCallStart {
                    id: id.clone(),
                    name: s("name"),
                });
                let start_input = cb
                    .and_then(|c| c.get("input"))
                    .cloned()
                    .unwrap_or(Value::Null);
                Block::Tool {
                    id,
                    json: String::new(),
                    start_input,
                }
            }
            other => {
                tracing::debug!(block_type = ?other, "ignoring unsupported content block");
                Block::Other
            }
        };
        self.blocks.insert(index, block);
    }

    fn block_delta(&mut self, index: u64, data: &Value, out: &mut Vec<StreamEvent>) {
        let Some(delta) = data.get("delta") else {
            return;
        };
        let field = |k: &str| delta.get(k).and_then(Value::as_str).map(str::to_owned);
        let Some(block) = self.blocks.get_mut(&index) else {
            tracing::debug!(index, "delta for a block that never started");
            return;
        };
        match (delta.get("type").and_then(Value::as_str), block) {
            (Some("text_delta"), Block::Text) => {
                if let Some(text) = field("text").filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            (Some("input_json_delta"), Block::Tool { id, json, .. }) => {
                if let Some(fragment) = field("partial_json").filter(|f| !f.is_empty()) {
                    json.push_str(&fragment);
                    out.push(StreamEvent::ToolArgsDelta {
                        id: id.clone(),
                        fragment,
                    });
                }
            }
            (Some("thinking_delta"), Block::Thinking { .. }) => {
                if let Some(thinking) = field("thinking").filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ThinkingDelta { thinking });
                }
            }
            (Some("signature_delta"), Block::Thinking { signature }) => {
                if let Some(sig) = field("signature") {
                    signature.get_or_insert_with(String::new).push_str(&sig);
                }
            }
            _ => {}
        }
    }

    fn block_stop(&mut self, index: u64, out: &mut Vec<StreamEvent>) {
        match self.blocks.remove(&index) {
            Some(Block::Tool {
                id,
                json,
                start_input,
            }) => {
                let (input, invalid_input) = if json.trim().is_empty() && start_input.is_object() {
                    (start_input, None)
                } else {
                    parse_tool_args(&json)
                };
                out.push(StreamEvent::ToolCallEnd {
                    id,
                    input,
                    invalid_input,
                });
            }
            Some(Block::Thinking { signature }) => {
                out.push(StreamEvent::ThinkingEnd { signature });
            }
            Some(Block::Text | Block::Other) | None => {}
        }
    }

    fn stop(&mut self, out: &mut Vec<StreamEvent>) {
        // Close blocks a lenient server left open, in index order.
        let open: Vec<u64> = self.blocks.keys().copied().collect();
        for index in open {
            self.block_stop(index, out);
        }
        self.done = true;
        out.push(StreamEvent::Stop {
            reason: self.stop_reason.clone().unwrap_or(StopReason::EndTurn),
            stop_sequence: self.stop_sequence.take(),
        });
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        // A server that sent the stop reason but not `message_stop` still finished the message.
        if self.stop_reason.is_some() && self.blocks.is_empty() {
            self.stop(out);
            return Ok(());
        }
        Err(ProviderError::IncompleteStream)
    }
}

/// Replaces the counters present in `u` (cumulative semantics).
fn merge_usage(usage: &mut Usage, u: &Value) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    if let Some(v) = n("input_tokens") {
        usage.input_tokens = v;
    }
    if let Some(v) = n("output_tokens") {
        usage.output_tokens = v;
    }
    if let Some(v) = n("cache_creation_input_tokens") {
        usage.cache_creation_input_tokens = Some(v);
    }
    if let Some(v) = n("cache_read_input_tokens") {
        usage.cache_read_input_tokens = Some(v);
    }
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
