use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::*;
use crate::types::Message;
use crate::types::ThinkingConfig;
use crate::types::ToolChoice;
use crate::types::ToolDefinition;
use crate::types::ToolUse;

fn decode_lines(lines: &[Value]) -> Result<Vec<StreamEvent>, ProviderError> {
    let mut d = StreamDecoder::default();
    let mut out = Vec::new();
    for l in lines {
        d.frame(
            &Frame {
                event: None,
                data: l.to_string(),
            },
            &mut out,
        )?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

fn line(msg: Value) -> Value {
    json!({"model": "llama3.2", "created_at": "2026-12-01T00:00:00Z", "message": msg,
        "done": false})
}

fn done(reason: &str) -> Value {
    json!({"model": "llama3.2", "created_at": "2026-12-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason,
        "total_duration": 5_000_000u64, "load_duration": 1_000u64, "prompt_eval_count": 26,
        "prompt_eval_duration": 1_000u64, "eval_count": 7, "eval_duration": 2_000u64})
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
                        thinking: "use the tool".into(),
                        signature: None,
                    },
                    ContentBlock::ToolUse(ToolUse {
                        id: "call_0".into(),
                        name: "get_weather".into(),
                        input: json!({"city": "Paris"}),
                        invalid_input: None,
                    }),
                    ContentBlock::ToolUse(ToolUse {
                        id: "call_1".into(),
                        name: "get_time".into(),
                        input: json!({}),
                        invalid_input: None,
                    }),
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult(ToolResult::ok("call_1", "noon")),
                    ContentBlock::ToolResult(ToolResult::ok("call_0", "18 C")),
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::text("and this?"),
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
        tool_choice: Some(ToolChoice::Any),
        temperature: Some(0.0),
        stop_sequences: vec!["END".into()],
        thinking: Some(ThinkingConfig { budget_tokens: 1 }),
        ..ModelRequest::default()
    };
    assert_eq!(
        encode("llama3.2", 300, 8192, &request)?,
        json!({
            "model": "llama3.2",
            "stream": true,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "", "thinking": "use the tool", "tool_calls": [
                    {"id": "call_0", "function": {"name": "get_weather",
                        "arguments": {"city": "Paris"}}},
                    {"id": "call_1", "function": {"name": "get_time", "arguments": {}}},
                ]},
                {"role": "tool", "content": "18 C", "tool_name": "get_weather",
                 "tool_call_id": "call_0"},
                {"role": "tool", "content": "noon", "tool_name": "get_time",
                 "tool_call_id": "call_1"},
                {"role": "user", "content": "and this?", "images": ["AAAA"]},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather", "parameters": {"type": "object"}}}],
            "options": {"num_ctx": 8192, "num_predict": 300, "temperature": 0.0,
                "stop": ["END"]},
            "think": true,
        })
    );
    Ok(())
}

#[test]
fn decodes_text_and_the_done_line() -> Result<(), ProviderError> {
    let events = decode_lines(&[
        line(json!({"role": "assistant", "content": "The"})),
        line(json!({"role": "assistant", "content": " sky"})),
        done("stop"),
    ])?;
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart {
                id: None,
                model: Some("llama3.2".into())
            },
            StreamEvent::TextDelta { text: "The".into() },
            StreamEvent::TextDelta {
                text: " sky".into()
            },
            StreamEvent::Usage(Usage {
                input_tokens: 26,
                output_tokens: 7,
                cache_creation_input_tokens: None,
                cache_read_input_tokens: None,
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
fn whole_tool_calls_with_object_arguments_make_the_stop_tool_use() -> Result<(), ProviderError> {
    let events = decode_lines(&[
        line(json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "given", "function": {"name": "get_time", "arguments": "{\"tz\":\"UTC\"}"}},
            {"function": {"name": "broken", "arguments": "{nope"}},
        ]})),
        done("stop"),
    ])?;
    let ends: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallEnd { .. }))
        .collect();
    assert_eq!(
        ends[0],
        &StreamEvent::ToolCallEnd {
            id: "call_0".into(),
            input: json!({"city": "Paris"}),
            invalid_input: None
        }
    );
    assert_eq!(
        ends[1],
        &StreamEvent::ToolCallEnd {
            id: "given".into(),
            input: json!({"tz": "UTC"}),
            invalid_input: None
        }
    );
    assert!(matches!(
        ends[2],
        StreamEvent::ToolCallEnd { id, invalid_input: Some(bad), .. } if id == "call_2" && bad.raw == "{nope"
    ));
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
fn done_reasons_map_and_unknown_ones_are_kept() -> Result<(), ProviderError> {
    for (wire, want) in [
        ("stop", StopReason::EndTurn),
        ("length", StopReason::MaxTokens),
        ("load", StopReason::Other("load".into())),
        ("unload", StopReason::Other("unload".into())),
    ] {
        let events = decode_lines(&[done(wire)])?;
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
fn thinking_lines_become_thinking_events() -> Result<(), ProviderError> {
    let events = decode_lines(&[
        line(json!({"role": "assistant", "content": "", "thinking": "hmm"})),
        line(json!({"role": "assistant", "content": "ok"})),
        done("stop"),
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
fn a_mid_stream_error_line_and_a_cut_body_are_errors() {
    let err = decode_lines(&[
        line(json!({"role": "assistant", "content": "x"})),
        json!({"error": "server busy, please try again"}),
    ])
    .expect_err("error line");
    assert_eq!(err.kind(), Some(ErrorKind::Overloaded));
    assert!(err.retryable());
    let err = decode_lines(&[json!({"error": "model crashed"})]).expect_err("error line");
    assert_eq!(err.kind(), Some(ErrorKind::Server));
    let cut = decode_lines(&[line(json!({"role": "assistant", "content": "x"}))]);
    assert!(
        matches!(cut, Err(ProviderError::IncompleteStream)),
        "{cut:?}"
    );
}

#[test]
fn error_bodies_take_their_kind_from_the_status() {
    assert_eq!(
        error_details(404, Some(&json!({"error": "model 'x' not found"}))),
        (
            None,
            Some("model 'x' not found".into()),
            ErrorKind::NotFound
        )
    );
    assert_eq!(error_details(429, None).2, ErrorKind::RateLimited);
    assert_eq!(error_details(502, None).2, ErrorKind::Server);
    assert_eq!(
        error_details(400, Some(&json!({"error": {"message": "bad"}}))).1,
        Some("bad".into())
    );
}
