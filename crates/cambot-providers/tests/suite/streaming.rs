//! Successful calls per dialect: text, tools, usage, stop reasons, what goes on the wire.

use cambot_providers::ContentBlock;
use cambot_providers::Dialect;
use cambot_providers::Message;
use cambot_providers::ModelRequest;
use cambot_providers::ProviderExt;
use cambot_providers::StopReason;
use cambot_providers::StreamEvent;
use cambot_providers::ToolDefinition;
use cambot_providers::ToolResult;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::ToolCall;
use serde_json::json;

use super::support::*;

fn tools_request() -> ModelRequest {
    ModelRequest {
        messages: vec![Message::user("weather and time?")],
        tools: vec![
            ToolDefinition {
                name: "get_weather".into(),
                description: "Weather".into(),
                input_schema: json!({"type": "object",
                    "properties": {"city": {"type": "string"}}}),
            },
            ToolDefinition {
                name: "get_time".into(),
                description: "Time".into(),
                input_schema: json!({"type": "object"}),
            },
        ],
        ..ModelRequest::default()
    }
}

#[tokio::test]
async fn streams_text_with_usage_and_stop_in_every_dialect() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(Script::text("Hello from the stand in").usage(11, 5))
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let (events, err) = run(&p, hi()).await;
        assert!(err.is_none(), "{d}: {err:?}");
        assert_eq!(text_of(&events), "Hello from the stand in", "{d}");
        let deltas = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
            .count();
        assert_eq!(deltas, 5, "{d}: streamed word by word");
        assert!(matches!(events[0], StreamEvent::MessageStart { .. }), "{d}");
        let last_usage = events.iter().rev().find_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        });
        let u = last_usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (11, 5), "{d}");
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Stop {
                reason: StopReason::EndTurn,
                stop_sequence: None
            }),
            "{d}"
        );
        assert_eq!(h.request_count(), 1);
    }
}

#[tokio::test]
async fn requests_carry_the_dialects_path_headers_and_body() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(Script::text("ok"))
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        p.complete(hi()).await.unwrap();
        let r = h.request(0).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body["model"], "m");
        assert_eq!(r.body["stream"], true);
        match d {
            Dialect::Anthropic => {
                assert_eq!(r.path, "/v1/messages");
                assert_eq!(r.header("x-api-key"), Some(KEY));
                assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(r.header("authorization"), None);
                assert_eq!(r.body["max_tokens"], 4096);
            }
            Dialect::OpenAi => {
                assert_eq!(r.path, "/v1/chat/completions");
                let bearer = format!("Bearer {KEY}");
                assert_eq!(r.header("authorization"), Some(bearer.as_str()));
                assert_eq!(r.header("x-api-key"), None);
                assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
            }
            Dialect::Ollama => {
                assert_eq!(r.path, "/api/chat");
                assert_eq!(r.header("authorization"), None);
                assert_eq!(r.header("x-api-key"), None);
                assert_eq!(r.body["options"]["num_ctx"], 8192);
            }
        }
    }
}

#[tokio::test]
async fn parallel_fragmented_tool_calls_map_to_one_internal_form() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(
                Script::message()
                    .with_text("Checking.")
                    .with_tool(
                        ToolCall::new("get_weather", json!({"city": "Paris", "unit": "C"}))
                            .id("call_w"),
                    )
                    .with_tool(
                        ToolCall::new("get_time", json!({}))
                            .id("call_t")
                            .fragments(["{", "}"]),
                    )
                    .interleaved(),
            )
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let msg = p.complete(tools_request()).await.unwrap();
        assert_eq!(msg.stop_reason, StopReason::ToolUse, "{d}");
        assert_eq!(msg.text(), "Checking.");
        let calls: Vec<_> = msg
            .tool_uses()
            .map(|t| (t.id.as_str(), t.name.as_str(), t.input.clone()))
            .collect();
        assert_eq!(
            calls,
            vec![
                (
                    "call_w",
                    "get_weather",
                    json!({"city": "Paris", "unit": "C"})
                ),
                ("call_t", "get_time", json!({})),
            ],
            "{d}"
        );
        assert!(msg.tool_uses().all(|t| t.invalid_input.is_none()));
    }
}

#[tokio::test]
async fn tool_results_answered_out_of_order_go_back_in_call_order() {
    for d in [Dialect::OpenAi, Dialect::Ollama, Dialect::Anthropic] {
        let h = builder(d)
            .reply(Script::tool_calls([
                ToolCall::new("get_weather", json!({"city": "Oslo"})).id("c1"),
                ToolCall::new("get_time", json!({})).id("c2"),
            ]))
            .reply(Script::text("Cold, noon."))
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let first = p.complete(tools_request()).await.unwrap();
        let mut request = tools_request();
        request.messages.push(first.message.clone());
        request.messages.push(Message::tool_results([
            ToolResult::ok("c2", "12:00"),
            ToolResult::ok("c1", "-3 C"),
        ]));
        let second = p.complete(request).await.unwrap();
        assert_eq!(second.text(), "Cold, noon.");
        let sent = h.request(1).unwrap();
        let msgs = sent.messages();
        let answers: Vec<String> = match d {
            Dialect::Anthropic => msgs[2]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["tool_use_id"].as_str().unwrap().to_owned())
                .collect(),
            // One `role: tool` message per call.
            _ => msgs
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect(),
        };
        let want: Vec<String> = match d {
            Dialect::Anthropic => vec!["c2".into(), "c1".into()],
            _ => vec!["-3 C".into(), "12:00".into()],
        };
        assert_eq!(answers, want, "{d}");
        if d == Dialect::Ollama {
            let names: Vec<&str> = msgs
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["tool_name"].as_str().unwrap())
                .collect();
            assert_eq!(names, vec!["get_weather", "get_time"]);
            let args = &msgs[1]["tool_calls"][0]["function"]["arguments"];
            assert_eq!(args, &json!({"city": "Oslo"}), "arguments stay objects");
        }
    }
}

#[tokio::test]
async fn invalid_tool_argument_json_becomes_an_error_result_not_a_crash() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(Script::message().with_tool(ToolCall::raw("get_weather", "{\"city\": Par")))
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let msg = p.complete(tools_request()).await.unwrap();
        let call = msg.tool_uses().next().unwrap();
        let bad = call.invalid_input.as_ref().expect("invalid input reported");
        assert_eq!(bad.raw, "{\"city\": Par", "{d}");
        assert_eq!(call.input, json!({}));
        let result = call.invalid_input_result().unwrap();
        assert!(result.is_error);
        assert_eq!(result.tool_use_id, call.id);
    }
}

#[tokio::test]
async fn anthropic_thinking_is_streamed_and_sent_back_unchanged() {
    let h = builder(Dialect::Anthropic)
        .reply(
            Script::message()
                .with_thinking("The user wants weather.", "EqQBCgIYAhIM")
                .with_redacted_thinking("ENCRYPTED")
                .with_tool(ToolCall::new("get_weather", json!({"city": "Rome"})).id("toolu_1")),
        )
        .reply(Script::text("Sunny."))
        .start_tcp()
        .await
        .unwrap();
    let p = provider(Dialect::Anthropic, &h.base_url());
    let first = p.complete(tools_request()).await.unwrap();
    assert!(matches!(
        &first.message.content[0],
        ContentBlock::Thinking { thinking, signature: Some(s) }
            if thinking == "The user wants weather." && s == "EqQBCgIYAhIM"
    ));
    let mut request = tools_request();
    request.messages.push(first.message.clone());
    request
        .messages
        .push(Message::tool_results([ToolResult::ok("toolu_1", "25 C")]));
    p.complete(request).await.unwrap();
    let sent = h.request(1).unwrap();
    assert_eq!(
        sent.messages()[1]["content"],
        json!([
            {"type": "thinking", "thinking": "The user wants weather.",
             "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "ENCRYPTED"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Rome"}},
        ])
    );
}

#[tokio::test]
async fn unknown_stop_reasons_are_kept() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(Script::text("x").stop_reason("model_context_window_exceeded"))
            .reply(Script::text("x").stop_reason("max_tokens"))
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let msg = p.complete(hi()).await.unwrap();
        assert_eq!(
            msg.stop_reason,
            StopReason::Other("model_context_window_exceeded".into()),
            "{d}"
        );
        let msg = p.complete(hi()).await.unwrap();
        assert_eq!(msg.stop_reason, StopReason::MaxTokens, "{d}");
    }
}

#[tokio::test]
async fn frames_split_at_every_byte_still_decode() {
    for d in Dialect::ALL {
        let h = builder(d)
            .reply(
                Script::message()
                    .with_text("héllo ☃ wörld")
                    .with_tool(ToolCall::new("get_time", json!({"tz": "Europe/Zürich"})))
                    .byte_chunks(1),
            )
            .start_tcp()
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        let msg = p.complete(tools_request()).await.unwrap();
        assert_eq!(msg.text(), "héllo ☃ wörld", "{d}");
        assert_eq!(
            msg.tool_uses().next().unwrap().input,
            json!({"tz": "Europe/Zürich"})
        );
    }
}

#[tokio::test]
async fn a_unix_socket_base_url_works() {
    let dir = tempfile::tempdir().unwrap();
    for d in Dialect::ALL {
        let path = dir.path().join(format!("{d}.sock"));
        let h = builder(d)
            .reply(Script::text("over the socket"))
            .start_unix(&path)
            .await
            .unwrap();
        let p = provider(d, &h.base_url());
        assert_eq!(p.complete(hi()).await.unwrap().text(), "over the socket");
    }
}
