//! Non-streamed answers (`"stream": false`) and the pieces Ollama sends whole.

use serde_json::Value;
use serde_json::json;

use super::Dialect;
use super::render::ollama_done_reason;
use super::render::openai_finish_reason;
use super::render::output_tokens;
use super::render::stop_reason;
use super::render::tool_id;
use super::script::Block;
use super::script::MessageScript;
use super::script::ToolCall;

pub(crate) fn anthropic(m: &MessageScript, model: &str, seq: usize) -> Value {
    let content: Vec<Value> = m
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Block::Text(c) => json!({"type": "text", "text": c.concat()}),
            Block::Thinking { chunks, signature } => {
                json!({"type": "thinking", "thinking": chunks.concat(), "signature": signature})
            }
            Block::RedactedThinking(d) => json!({"type": "redacted_thinking", "data": d}),
            Block::Tool(t) => json!({"type": "tool_use",
                "id": tool_id(Dialect::Anthropic, t.id.as_ref(), i), "name": t.name,
                "input": t.input.clone().unwrap_or_else(|| json!({}))}),
        })
        .collect();
    json!({"id": format!("msg_standin_{seq}"), "type": "message", "role": "assistant",
        "model": model, "content": content, "stop_reason": stop_reason(m),
        "stop_sequence": m.stop_sequence,
        "usage": {"input_tokens": m.input_tokens, "output_tokens": output_tokens(m)}})
}

pub(crate) fn openai(m: &MessageScript, model: &str, seq: usize) -> Value {
    let text: String = m
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(c) => Some(c.concat()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = m
        .blocks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| match b {
            Block::Tool(t) => Some(json!({"id": tool_id(Dialect::OpenAi, t.id.as_ref(), i),
                "type": "function",
                "function": {"name": t.name, "arguments": t.fragments.concat()}})),
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !calls.is_empty()
        && let Some(obj) = message.as_object_mut()
    {
        if text.is_empty() {
            obj.insert("content".into(), Value::Null);
        }
        obj.insert("tool_calls".into(), Value::Array(calls));
    }
    let out = output_tokens(m);
    json!({"id": format!("chatcmpl-standin-{seq}"), "object": "chat.completion",
        "created": 1_764_547_200, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": openai_finish_reason(m)}],
        "usage": {"prompt_tokens": m.input_tokens, "completion_tokens": out,
                  "total_tokens": m.input_tokens + out}})
}

pub(crate) fn ollama(m: &MessageScript, model: &str) -> Value {
    let mut v = ollama_final(m, model);
    let text: String = m
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(c) => Some(c.concat()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = m
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Tool(t) => Some(ollama_call(t)),
            _ => None,
        })
        .collect();
    if let Some(msg) = v.get_mut("message").and_then(Value::as_object_mut) {
        msg.insert("content".into(), json!(text));
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
    }
    v
}

/// An Ollama tool call: arguments as an object (the raw text as a string when it is not
/// valid JSON, as some models do).
pub(crate) fn ollama_call(t: &ToolCall) -> Value {
    let arguments = match &t.input {
        Some(v) => v.clone(),
        None => json!(t.fragments.concat()),
    };
    let mut call = json!({"function": {"name": t.name, "arguments": arguments}});
    if let (Some(id), Some(obj)) = (&t.id, call.as_object_mut()) {
        obj.insert("id".into(), json!(id));
    }
    call
}

/// The last NDJSON line: `done: true`, `done_reason`, counts and durations in nanoseconds.
pub(crate) fn ollama_final(m: &MessageScript, model: &str) -> Value {
    json!({"model": model, "created_at": "2026-12-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": ""}, "done": true,
        "done_reason": ollama_done_reason(m), "total_duration": 12_000_000u64,
        "load_duration": 1_000_000u64, "prompt_eval_count": m.input_tokens,
        "prompt_eval_duration": 2_000_000u64, "eval_count": output_tokens(m),
        "eval_duration": 9_000_000u64})
}
