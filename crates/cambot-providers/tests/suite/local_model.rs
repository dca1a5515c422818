//! The real local model: `llama-server` + SmolLM2-135M-Instruct (built by
//! `scripts/setup/local-model.sh`), reached through the OpenAI and the Anthropic dialects.

use cambot_providers::ContentBlock;
use cambot_providers::Dialect;
use cambot_providers::HttpProvider;
use cambot_providers::Message;
use cambot_providers::ModelRequest;
use cambot_providers::ProviderExt;
use cambot_providers::StopReason;
use cambot_providers::StreamEvent;
use cambot_providers::ToolChoice;
use cambot_providers::ToolDefinition;
use cambot_providers::ToolResult;
use cambot_providers::models::Manifest;
use cambot_testkit::standin::llama::ALIAS;
use cambot_testkit::standin::llama::LlamaServer;
use serde_json::json;

use super::require::llama_files;
use super::support::*;

/// One real model at a time: two cores cannot run several well.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn local_provider(d: Dialect, server: &LlamaServer) -> HttpProvider {
    let mut c = config(d, &server.base_url()).with_model(ALIAS);
    c.auth = Some(cambot_providers::AuthStyle::None);
    c.max_retries = 0;
    HttpProvider::direct(c, None).unwrap()
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Get the current weather for a city".into(),
        input_schema: json!({"type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]}),
    }
}

#[tokio::test]
#[ignore = "needs the local model (scripts/setup/local-model.sh): run by scripts/test.sh"]
async fn the_installed_model_files_match_the_pinned_manifest() {
    let Some(files) = llama_files("the_installed_model_files_match_the_pinned_manifest") else {
        return;
    };
    let manifest = Manifest::builtin();
    let model = manifest.default_model().unwrap();
    let weights = model.weights().unwrap().verify(&files.model);
    assert!(weights.is_ok(), "{weights:?}");
    let template = model.chat_template().unwrap().verify(&files.chat_template);
    assert!(template.is_ok(), "{template:?}");
}

#[tokio::test]
#[ignore = "needs the local model (scripts/setup/local-model.sh): run by scripts/test.sh"]
async fn both_dialects_stream_a_real_completion() {
    let Some(files) = llama_files("both_dialects_stream_a_real_completion") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let server = LlamaServer::start(&files).await.unwrap();
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let p = local_provider(d, &server);
        let request = ModelRequest {
            messages: vec![Message::user(
                "What is the capital of France? Answer in one sentence.",
            )],
            max_tokens: Some(48),
            temperature: Some(0.0),
            ..ModelRequest::default()
        };
        let (events, err) = run(&p, request).await;
        assert!(err.is_none(), "{d}: {err:?}\n{}", server.log_tail());
        assert!(matches!(events[0], StreamEvent::MessageStart { .. }), "{d}");
        let deltas = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
            .count();
        assert!(deltas > 1, "{d}: the answer must arrive in several deltas");
        let text = text_of(&events);
        assert!(text.contains("Paris"), "{d}: {text:?}");
        let usage = events.iter().rev().find_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        });
        let usage = usage.unwrap();
        assert!(
            usage.input_tokens > 0 && usage.output_tokens > 0,
            "{d}: {usage:?}"
        );
        assert!(
            matches!(
                events.last(),
                Some(StreamEvent::Stop {
                    reason: StopReason::EndTurn | StopReason::MaxTokens,
                    ..
                })
            ),
            "{d}: {:?}",
            events.last()
        );
        eprintln!("{d}: {text:?} ({usage:?})");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the local model (scripts/setup/local-model.sh): run by scripts/test.sh"]
async fn a_forced_tool_call_round_trips_in_both_dialects() {
    let Some(files) = llama_files("a_forced_tool_call_round_trips_in_both_dialects") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let server = LlamaServer::start(&files).await.unwrap();
    for d in [Dialect::OpenAi, Dialect::Anthropic] {
        let p = local_provider(d, &server);
        let question = Message::user("What is the weather in Paris right now?");
        // A 135M model only calls tools reliably when forced and pre-filled (llm-wire.md 3).
        let forced = ModelRequest {
            messages: vec![question.clone(), Message::assistant("<tool_call>\n")],
            tools: vec![weather_tool()],
            tool_choice: Some(ToolChoice::Any),
            max_tokens: Some(96),
            temperature: Some(0.0),
            ..ModelRequest::default()
        };
        let first = p.complete(forced).await;
        let first = first.unwrap_or_else(|e| panic!("{d}: {e}\n{}", server.log_tail()));
        assert_eq!(first.stop_reason, StopReason::ToolUse, "{d}: {first:?}");
        let calls: Vec<_> = first.tool_uses().cloned().collect();
        assert!(!calls.is_empty(), "{d}");
        for c in &calls {
            assert_eq!(c.name, "get_weather", "{d}");
            assert!(c.invalid_input.is_none(), "{d}: {c:?}");
            assert!(c.input["city"].is_string(), "{d}: {:?}", c.input);
            assert!(!c.id.is_empty());
        }
        eprintln!(
            "{d}: tool calls {:?}",
            calls.iter().map(|c| &c.input).collect::<Vec<_>>()
        );
        // Answer every call and let the model finish in text.
        let assistant = Message {
            role: first.message.role,
            content: first
                .message
                .content
                .iter()
                .filter(|b| matches!(b, ContentBlock::ToolUse(_)))
                .cloned()
                .collect(),
        };
        let results = calls
            .iter()
            .map(|c| ToolResult::ok(c.id.clone(), "Sunny, 21 degrees Celsius."));
        let follow_up = ModelRequest {
            messages: vec![question, assistant, Message::tool_results(results)],
            tools: vec![weather_tool()],
            tool_choice: Some(ToolChoice::None),
            max_tokens: Some(32),
            temperature: Some(0.0),
            ..ModelRequest::default()
        };
        let second = p.complete(follow_up).await;
        let second = second.unwrap_or_else(|e| panic!("{d}: {e}\n{}", server.log_tail()));
        assert!(!second.text().trim().is_empty(), "{d}: {second:?}");
        eprintln!("{d}: final answer {:?}", second.text());
    }
    server.stop().await.unwrap();
}
