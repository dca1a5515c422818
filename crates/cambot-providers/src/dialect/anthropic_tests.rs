use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::*;
use crate::collect::MessageCollector;
use crate::types::InvalidToolInput;
use crate::types::ThinkingConfig;
use crate::types::ToolDefinition;
use crate::types::ToolResult;
use crate::types::ToolUse;

fn frame(data: Value) -> Frame {
    Frame {
        event: data.get("type").and_then(Value::as_str).map(str::to_owned),
        data: data.to_string(),
    }
}

/// Decodes whole events, then the end of the body.
fn decode(events: &[Value]) -> Result<Vec<StreamEvent>, ProviderError> {
    let mut d = StreamDecoder::default();
    let mut out = Vec::new();
    for e in events {
        d.frame(&frame(e.clone()), &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

fn message_start() -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}})
}

fn block_start(index: u64, block: Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

fn delta(index: u64, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

fn stop(index: u64) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_delta(reason: &str, output_tokens: u64) -> Value {
    json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}})
}

fn message_stop() -> Value {
    json!({"type": "message_stop"})
}

fn usage(input: u64, output: u64) -> StreamEvent {
    StreamEvent::Usage(Usage {
        input_tokens: input,
        output_tokens: output,
        cache_creation_input_tokens: None,
        cache_read_input_tokens: None,
    })
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Weather for a city".into(),
        input_schema: json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}),
    }
}

#[test]
fn encodes_a_full_request_exactly() -> Result<(), ProviderError> {
    let request = ModelRequest {
        model: None,
        system: Some("Be brief.".into()),
        messages: vec![
            Message::user("Weather in Paris?"),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Thinking {
                        thinking: "need the tool".into(),
                        signature: Some("sig==".into()),
                    },
                    ContentBlock::RedactedThinking {
                        data: "opaque".into(),
                    },
                    ContentBlock::text(""),
                    ContentBlock::ToolUse(ToolUse {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        input: json!({"city": "Paris"}),
                        invalid_input: None,
                    }),
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::text("also, hurry"),
                    ContentBlock::ToolResult(ToolResult::ok("toolu_1", "18 C")),
                ],
            },
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Tool {
            name: "get_weather".into(),
        }),
        parallel_tool_calls: Some(false),
        max_tokens: None,
        temperature: Some(0.5),
        stop_sequences: vec!["END".into()],
        thinking: Some(ThinkingConfig {
            budget_tokens: 2048,
        }),
    };
    let body = encode("claude-x", 1024, &request)?;
    assert_eq!(
        body,
        json!({
            "model": "claude-x",
            "max_tokens": 1024,
            "stream": true,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "need the tool", "signature": "sig=="},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C",
                     "is_error": false},
                    {"type": "text", "text": "also, hurry"},
                ]},
            ],
            "tools": [{"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object",
                    "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "tool", "name": "get_weather",
                "disable_parallel_tool_use": true},
            "temperature": 0.5,
            "stop_sequences": ["END"],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        })
    );
    Ok(())
}

#[test]
fn encodes_tool_choices_and_omits_what_is_unset() -> Result<(), ProviderError> {
    let mut request = ModelRequest {
        messages: vec![Message::user("hi")],
        ..ModelRequest::default()
    };
    let body = encode("m", 10, &request)?;
    assert_eq!(
        body,
        json!({"model": "m", "max_tokens": 10, "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );
    request.tools = vec![weather_tool()];
    for (choice, want) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::Any, json!({"type": "any"})),
        (ToolChoice::None, json!({"type": "none"})),
    ] {
        request.tool_choice = Some(choice);
        assert_eq!(encode("m", 10, &request)?["tool_choice"], want);
    }
    // `none` never carries disable_parallel_tool_use; no choice + no parallel is auto.
    request.parallel_tool_calls = Some(false);
    assert_eq!(
        encode("m", 10, &request)?["tool_choice"],
        json!({"type": "none"})
    );
    request.tool_choice = None;
    assert_eq!(
        encode("m", 10, &request)?["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    Ok(())
}

#[test]
fn an_invalid_tool_input_goes_back_as_an_empty_object() -> Result<(), ProviderError> {
    let request = ModelRequest {
        messages: vec![Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse(ToolUse {
                id: "t".into(),
                name: "x".into(),
                input: json!({}),
                invalid_input: Some(InvalidToolInput {
                    raw: "{oops".into(),
                    error: "bad".into(),
                }),
            })],
        }],
        ..ModelRequest::default()
    };
    let body = encode("m", 1, &request)?;
    assert_eq!(body["messages"][0]["content"][0]["input"], json!({}));
    Ok(())
}

#[test]
fn decodes_text_tool_use_usage_and_stop() -> Result<(), ProviderError> {
    let events = decode(&[
        message_start(),
        json!({"type": "ping"}),
        block_start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Hel"})),
        json!({"type": "ping"}),
        delta(0, json!({"type": "text_delta", "text": "lo"})),
        stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}),
        ),
        delta(1, json!({"type": "input_json_delta", "partial_json": ""})),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
        ),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "ris\"}"}),
        ),
        stop(1),
        message_delta("tool_use", 30),
        message_stop(),
    ])?;
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart {
                id: Some("msg_1".into()),
                model: Some("claude-x".into())
            },
            usage(25, 1),
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart {
                id: "toolu_9".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolArgsDelta {
                id: "toolu_9".into(),
                fragment: "{\"city\": \"Pa".into()
            },
            StreamEvent::ToolArgsDelta {
                id: "toolu_9".into(),
                fragment: "ris\"}".into()
            },
            StreamEvent::ToolCallEnd {
                id: "toolu_9".into(),
                input: json!({"city": "Paris"}),
                invalid_input: None
            },
            usage(25, 30),
            StreamEvent::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None
            },
        ]
    );
    Ok(())
}

#[test]
fn usage_is_cumulative_and_cache_counts_are_kept() -> Result<(), ProviderError> {
    let mut start = message_start();
    start["message"]["usage"] = json!({"input_tokens": 5, "output_tokens": 1,
        "cache_creation_input_tokens": 7, "cache_read_input_tokens": 3});
    let events = decode(&[
        start,
        message_delta("end_turn", 10),
        json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 12}}),
        message_stop(),
    ])?;
    let usages: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Usage(_)))
        .collect();
    assert_eq!(usages.len(), 3);
    assert_eq!(
        usages[2],
        &StreamEvent::Usage(Usage {
            input_tokens: 5,
            output_tokens: 12,
            cache_creation_input_tokens: Some(7),
            cache_read_input_tokens: Some(3),
        })
    );
    Ok(())
}

#[test]
fn unknown_stop_reasons_are_kept_verbatim() -> Result<(), ProviderError> {
    for (wire, want) in [
        ("end_turn", StopReason::EndTurn),
        ("max_tokens", StopReason::MaxTokens),
        ("pause_turn", StopReason::PauseTurn),
        ("refusal", StopReason::Refusal),
        (
            "model_context_window_exceeded",
            StopReason::Other("model_context_window_exceeded".into()),
        ),
    ] {
        let events = decode(&[message_start(), message_delta(wire, 1), message_stop()])?;
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Stop {
                reason: want,
                stop_sequence: None
            })
        );
    }
    let events = decode(&[
        message_start(),
        json!({"type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"}}),
        message_stop(),
    ])?;
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Stop {
            reason: StopReason::StopSequence,
            stop_sequence: Some("END".into())
        })
    );
    Ok(())
}

#[test]
fn thinking_blocks_round_trip_unchanged() -> Result<(), ProviderError> {
    let events = decode(&[
        message_start(),
        block_start(
            0,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ),
        delta(
            0,
            json!({"type": "thinking_delta", "thinking": "step one, "}),
        ),
        delta(0, json!({"type": "thinking_delta", "thinking": "step two"})),
        delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBCg=="}),
        ),
        stop(0),
        block_start(1, json!({"type": "redacted_thinking", "data": "ENC"})),
        stop(1),
        block_start(2, json!({"type": "text", "text": "done"})),
        stop(2),
        message_delta("end_turn", 9),
        message_stop(),
    ])?;
    assert!(events.contains(&StreamEvent::ThinkingEnd {
        signature: Some("EqQBCg==".into())
    }));
    let mut c = MessageCollector::new();
    for e in &events {
        c.push(e);
    }
    let msg = c.finish()?;
    let request = ModelRequest {
        messages: vec![Message::user("q"), msg.message, Message::user("next")],
        ..ModelRequest::default()
    };
    let body = encode("m", 1, &request)?;
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "step one, step two", "signature": "EqQBCg=="},
            {"type": "redacted_thinking", "data": "ENC"},
            {"type": "text", "text": "done"},
        ])
    );
    Ok(())
}

#[test]
fn tool_arguments_empty_or_invalid_never_fail_the_stream() -> Result<(), ProviderError> {
    let events = decode(&[
        message_start(),
        block_start(
            0,
            json!({"type": "tool_use", "id": "a", "name": "noargs", "input": {}}),
        ),
        stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "b", "name": "bad", "input": {}}),
        ),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"x\": "}),
        ),
        stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "c", "name": "arr", "input": {}}),
        ),
        delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "[1]"}),
        ),
        stop(2),
        message_delta("tool_use", 3),
        message_stop(),
    ])?;
    let ends: Vec<&StreamEvent> = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::ToolCallEnd { .. }))
        .collect();
    assert_eq!(
        ends[0],
        &StreamEvent::ToolCallEnd {
            id: "a".into(),
            input: json!({}),
            invalid_input: None
        }
    );
    match ends[1] {
        StreamEvent::ToolCallEnd {
            input,
            invalid_input: Some(bad),
            ..
        } => {
            assert_eq!(input, &json!({}));
            assert_eq!(bad.raw, "{\"x\": ");
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
    assert!(matches!(
        ends[2],
        StreamEvent::ToolCallEnd {
            invalid_input: Some(_),
            ..
        }
    ));
    Ok(())
}

#[test]
fn llama_server_quirks_are_tolerated() -> Result<(), ProviderError> {
    // Tool ids not toolu_, no `input` in content_block_start, block 1 starts before block 0
    // stops, both stops at the end, no `event:` line.
    let mut d = StreamDecoder::default();
    let mut out = Vec::new();
    let events = [
        message_start(),
        block_start(0, json!({"type": "tool_use", "id": "abc", "name": "f"})),
        delta(
            0,
            json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"}),
        ),
        block_start(1, json!({"type": "tool_use", "id": "def", "name": "g"})),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"b\":2}"}),
        ),
        stop(0),
        stop(1),
        message_delta("tool_use", 2),
        message_stop(),
    ];
    for e in events {
        d.frame(
            &Frame {
                event: None,
                data: e.to_string(),
            },
            &mut out,
        )?;
    }
    d.finish(&mut out)?;
    let inputs: Vec<(String, Value)> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallEnd { id, input, .. } => Some((id.clone(), input.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        inputs,
        vec![
            ("abc".into(), json!({"a": 1})),
            ("def".into(), json!({"b": 2}))
        ]
    );
    Ok(())
}

#[test]
fn a_mid_stream_error_event_is_a_typed_api_error() {
    let mut d = StreamDecoder::default();
    let mut out = Vec::new();
    let r = d.frame(&frame(message_start()), &mut out).and_then(|()| {
        d.frame(
            &frame(json!({"type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"}})),
            &mut out,
        )
    });
    let err = r.expect_err("error event");
    let api = err.api().expect("api error");
    assert_eq!(api.status, None);
    assert_eq!(api.kind, ErrorKind::Overloaded);
    assert_eq!(api.error_type.as_deref(), Some("overloaded_error"));
    assert!(err.retryable());
}

#[test]
fn a_body_ending_early_is_incomplete_unless_the_stop_reason_came() -> Result<(), ProviderError> {
    let cut = decode(&[
        message_start(),
        block_start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "par"})),
    ]);
    assert!(
        matches!(cut, Err(ProviderError::IncompleteStream)),
        "{cut:?}"
    );
    let lenient = decode(&[message_start(), message_delta("end_turn", 1)])?;
    assert_eq!(
        lenient.last(),
        Some(&StreamEvent::Stop {
            reason: StopReason::EndTurn,
            stop_sequence: None
        })
    );
    Ok(())
}

#[test]
fn events_after_message_stop_and_unknown_types_are_ignored() -> Result<(), ProviderError> {
    let events = decode(&[
        message_start(),
        json!({"type": "some_future_event", "x": 1}),
        block_start(
            0,
            json!({"type": "server_tool_use", "id": "s", "name": "web"}),
        ),
        delta(0, json!({"type": "citations_delta", "citation": {}})),
        stop(0),
        message_delta("end_turn", 1),
        message_stop(),
        json!({"type": "error", "error": {"type": "api_error", "message": "late"}}),
    ])?;
    assert_eq!(events.len(), 4, "{events:?}");
    Ok(())
}

#[test]
fn error_bodies_map_to_kinds() {
    let body = |t: &str| json!({"type": "error", "error": {"type": t, "message": "m"}});
    let cases = [
        (400, "invalid_request_error", ErrorKind::InvalidRequest),
        (401, "authentication_error", ErrorKind::Authentication),
        (403, "permission_error", ErrorKind::Permission),
        (404, "not_found_error", ErrorKind::NotFound),
        (413, "request_too_large", ErrorKind::RequestTooLarge),
        (429, "rate_limit_error", ErrorKind::RateLimited),
        (500, "api_error", ErrorKind::Server),
        (529, "overloaded_error", ErrorKind::Overloaded),
        (418, "brand_new_error", ErrorKind::Other),
        (503, "brand_new_error", ErrorKind::Server),
    ];
    for (status, t, kind) in cases {
        let (ty, msg, k) = error_details(status, Some(&body(t)));
        assert_eq!(
            (ty.as_deref(), msg.as_deref(), k),
            (Some(t), Some("m"), kind),
            "{t}"
        );
    }
    let spend = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "cap",
        "details": {"error_code": "enforced_spend_limit_reached"}}});
    assert_eq!(error_details(429, Some(&spend)).2, ErrorKind::QuotaExceeded);
    assert_eq!(error_details(502, None), (None, None, ErrorKind::Server));
}
