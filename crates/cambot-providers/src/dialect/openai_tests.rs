use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::*;
use crate::types::InvalidToolInput;
use crate::types::Message;
use crate::types::ToolDefinition;
use crate::types::ToolUse;

fn decode_frames(data: &[String]) -> Result<Vec<StreamEvent>, ProviderError> {
    let mut d = StreamDecoder::default();
    let mut out = Vec::new();
    for x in data {
        d.frame(
            &Frame {
                event: None,
                data: x.clone(),
            },
            &mut out,
        )?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

fn chunk(delta: Value, finish: Value) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

fn call(id: &str, name: &str, input: Value) -> ContentBlock {
    ContentBlock::ToolUse(ToolUse {
        id: id.into(),
        name: name.into(),
        input,
        invalid_input: None,
    })
}

#[test]
fn encodes_a_full_request_exactly() -> Result<(), ProviderError> {
    let request = ModelRequest {
        system: Some("Be brief.".into()),
        messages: vec![
            Message::user("Weather?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Thinking {
                        thinking: "hidden".into(),
                        signature: None,
                    },
                    call("call_a", "get_weather", json!({"city": "Paris"})),
                    call("call_b", "get_time", json!({})),
                    ContentBlock::ToolUse(ToolUse {
                        id: "call_c".into(),
                        name: "bad".into(),
                        input: json!({}),
                        invalid_input: Some(InvalidToolInput {
                            raw: "{nope".into(),
                            error: "x".into(),
                        }),
                    }),
                ],
            },
            // Answered out of order, with text after the results.
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult(ToolResult::error("call_c", "not JSON")),
                    ContentBlock::ToolResult(ToolResult::ok("call_b", "noon")),
                    ContentBlock::ToolResult(ToolResult::ok("call_a", "18 C")),
                    ContentBlock::text("thanks"),
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text("You're welcome")],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::text("look"),
                    ContentBlock::Image {
                        media_type: "image/png".into(),
                        data: "AAAA".into(),
                    },
                ],
            },
        ],
        tools: vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Weather".into(),
            input_schema: json!({"type": "object"}),
        }],
        tool_choice: Some(ToolChoice::Tool {
            name: "get_weather".into(),
        }),
        parallel_tool_calls: Some(false),
        temperature: Some(0.25),
        stop_sequences: vec!["END".into()],
        ..ModelRequest::default()
    };
    assert_eq!(
        encode("gpt-x", 256, &request)?,
        json!({
            "model": "gpt-x",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 256,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "get_time", "arguments": "{}"}},
                    {"id": "call_c", "type": "function",
                     "function": {"name": "bad", "arguments": "{nope"}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "18 C"},
                {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
                {"role": "tool", "tool_call_id": "call_c", "content": "Error: not JSON"},
                {"role": "user", "content": "thanks"},
                {"role": "assistant", "content": "You're welcome"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ]},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather", "parameters": {"type": "object"}}}],
            "parallel_tool_calls": false,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.25,
            "stop": ["END"],
        })
    );
    Ok(())
}

#[test]
fn tool_choice_spellings() -> Result<(), ProviderError> {
    let mut request = ModelRequest {
        messages: vec![Message::user("x")],
        ..ModelRequest::default()
    };
    for (c, want) in [
        (ToolChoice::Auto, json!("auto")),
        (ToolChoice::Any, json!("required")),
        (ToolChoice::None, json!("none")),
    ] {
        request.tool_choice = Some(c);
        assert_eq!(encode("m", 1, &request)?["tool_choice"], want);
    }
    // No tools: no parallel_tool_calls either (servers reject it).
    request.parallel_tool_calls = Some(true);
    assert!(
        encode("m", 1, &request)?
            .get("parallel_tool_calls")
            .is_none()
    );
    Ok(())
}

#[test]
fn decodes_text_finish_and_usage_chunk() -> Result<(), ProviderError> {
    let events = decode_frames(&[
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9,
            "completion_tokens": 2, "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
        "[DONE]".into(),
    ])?;
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart {
                id: Some("chatcmpl-1".into()),
                model: Some("gpt-x".into())
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Usage(Usage {
                input_tokens: 9,
                output_tokens: 2,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: Some(4),
            }),
            StreamEvent::Stop {
                reason: StopReason::EndTurn,
                stop_sequence: None
            },
        ]
    );
    Ok(())
}

#[test]
fn parallel_tool_calls_are_assembled_by_index_not_id() -> Result<(), ProviderError> {
    let tc = |v: Value| chunk(json!({"tool_calls": [v]}), Value::Null);
    let events = decode_frames(&[
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        tc(json!({"index": 0, "id": "call_a", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}})),
        tc(json!({"index": 1, "id": "call_b", "type": "function",
            "function": {"name": "get_time", "arguments": "{\"tz\":"}})),
        tc(json!({"index": 0, "function": {"arguments": "{\"city\": \"Pa"}})),
        tc(json!({"index": 1, "function": {"arguments": "\"UTC\"}"}})),
        tc(json!({"index": 0, "function": {"arguments": "ris\"}"}})),
        chunk(json!({}), json!("tool_calls")),
        "[DONE]".into(),
    ])?;
    let ends: Vec<(String, Value)> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallEnd { id, input, .. } => Some((id.clone(), input.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        vec![
            ("call_a".into(), json!({"city": "Paris"})),
            ("call_b".into(), json!({"tz": "UTC"}))
        ]
    );
    let starts = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallStart { .. }))
        .count();
    assert_eq!(starts, 2);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Stop {
            reason: StopReason::ToolUse,
            stop_sequence: None
        })
    );
    Ok(())
}

#[test]
fn whole_calls_in_one_chunk_and_invalid_arguments() -> Result<(), ProviderError> {
    // Ollama /v1 style: every call whole in one chunk, no index.
    let events = decode_frames(&[
        chunk(
            json!({"tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{bad"}},
            ]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        "[DONE]".into(),
    ])?;
    let ends: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallEnd { .. }))
        .collect();
    assert_eq!(ends.len(), 2);
    assert!(
        matches!(ends[0], StreamEvent::ToolCallEnd { id, invalid_input: None, .. } if id == "c1")
    );
    assert!(
        matches!(ends[1], StreamEvent::ToolCallEnd { id, input, invalid_input: Some(bad) }
            if id == "c2" && input == &json!({}) && bad.raw == "{bad")
    );
    Ok(())
}

#[test]
fn finish_reasons_map_and_unknown_ones_are_kept() -> Result<(), ProviderError> {
    for (wire, want) in [
        ("stop", StopReason::EndTurn),
        ("length", StopReason::MaxTokens),
        ("tool_calls", StopReason::ToolUse),
        ("function_call", StopReason::ToolUse),
        ("content_filter", StopReason::ContentFilter),
        ("eos_token", StopReason::Other("eos_token".into())),
    ] {
        let events = decode_frames(&[chunk(json!({}), json!(wire)), "[DONE]".into()])?;
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Stop {
                reason: want,
                stop_sequence: None
            })
        );
    }
    Ok(())
}

#[test]
fn reasoning_content_becomes_thinking() -> Result<(), ProviderError> {
    let events = decode_frames(&[
        chunk(json!({"reasoning_content": "hmm"}), Value::Null),
        chunk(json!({"content": "ok"}), Value::Null),
        chunk(json!({}), json!("stop")),
        "[DONE]".into(),
    ])?;
    assert_eq!(
        &events[1..4],
        &[
            StreamEvent::ThinkingDelta {
                thinking: "hmm".into()
            },
            StreamEvent::ThinkingEnd { signature: None },
            StreamEvent::TextDelta { text: "ok".into() },
        ]
    );
    Ok(())
}

#[test]
fn stream_endings() -> Result<(), ProviderError> {
    // [DONE] without a finish reason, and a cut body, are incomplete.
    let done = decode_frames(&[chunk(json!({"content": "x"}), Value::Null), "[DONE]".into()]);
    assert!(
        matches!(done, Err(ProviderError::IncompleteStream)),
        "{done:?}"
    );
    let cut = decode_frames(&[chunk(json!({"content": "x"}), Value::Null)]);
    assert!(
        matches!(cut, Err(ProviderError::IncompleteStream)),
        "{cut:?}"
    );
    // A finish reason without [DONE] is enough.
    let events = decode_frames(&[chunk(json!({}), json!("stop"))])?;
    assert!(matches!(events.last(), Some(StreamEvent::Stop { .. })));
    Ok(())
}

#[test]
fn a_mid_stream_error_chunk_is_a_typed_error() {
    let r = decode_frames(&[
        chunk(json!({"content": "x"}), Value::Null),
        json!({"error": {"message": "The server is overloaded", "type": "server_error",
            "param": null, "code": null}})
        .to_string(),
    ]);
    let err = r.expect_err("error chunk");
    let api = err.api().expect("api error");
    assert_eq!(api.status, None);
    assert_eq!(api.kind, ErrorKind::Server);
    assert_eq!(api.message, "The server is overloaded");
}

#[test]
fn error_bodies_map_to_kinds_and_insufficient_quota_is_never_retried() {
    let body = |t: &str, code: Value| json!({"error": {"message": "m", "type": t, "param": null, "code": code}});
    let (name, _, kind) = error_details(
        429,
        Some(&body("insufficient_quota", json!("insufficient_quota"))),
    );
    assert_eq!(
        (name.as_deref(), kind),
        (Some("insufficient_quota"), ErrorKind::QuotaExceeded)
    );
    let (name, _, kind) = error_details(429, Some(&body("requests", json!("rate_limit_exceeded"))));
    assert_eq!(
        (name.as_deref(), kind),
        (Some("requests"), ErrorKind::RateLimited)
    );
    assert!(kind.retryable());
    assert!(!ErrorKind::QuotaExceeded.retryable());
    assert_eq!(
        error_details(
            401,
            Some(&body("invalid_request_error", json!("invalid_api_key")))
        )
        .2,
        ErrorKind::Authentication
    );
    assert_eq!(
        error_details(503, Some(&json!({"error": "busy"}))),
        (None, Some("busy".into()), ErrorKind::Server)
    );
    assert_eq!(error_details(400, None).2, ErrorKind::InvalidRequest);
}
