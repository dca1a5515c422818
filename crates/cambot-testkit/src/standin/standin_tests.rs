#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use serde_json::json;

use super::*;

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
    /// Whether the body ended with an error (connection cut).
    broken: bool,
}

async fn post(h: &StandinHandle, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let addr = h.addr().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::post(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    let mut broken = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    text.extend_from_slice(&d);
                }
            }
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(text).unwrap(),
        broken,
    }
}

/// `(event line, data JSON)` of each SSE event.
fn sse(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut event = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_owned();
                }
            }
            (event, data)
        })
        .collect()
}

fn parse(data: &str) -> Value {
    serde_json::from_str(data).unwrap()
}

#[tokio::test]
async fn anthropic_stream_has_exact_event_framing_and_reassembles() {
    let h = Standin::anthropic()
        .reply(
            Script::message()
                .with_thinking("let me think", "sig-1")
                .with_text("Hello there")
                .with_tool(ToolCall::new("get_weather", json!({"city": "Paris"})).id("toolu_1")),
        )
        .start_tcp()
        .await
        .unwrap();
    let r = post(
        &h,
        "/v1/messages?beta=true",
        &[("x-api-key", "sk-test")],
        json!({"model": "claude-x", "stream": true, "messages": []}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let events = sse(&r.body);
    for (event, data) in &events {
        assert_eq!(event.as_deref(), parse(data)["type"].as_str(), "{data}");
    }
    let types: Vec<String> = events.iter().map(|e| e.0.clone().unwrap()).collect();
    assert_eq!(types[0], "message_start");
    assert_eq!(types[1], "ping");
    assert_eq!(types[types.len() - 2], "message_delta");
    assert_eq!(types[types.len() - 1], "message_stop");
    let mut text = String::new();
    let mut json_args = String::new();
    let mut thinking = String::new();
    let mut signature = String::new();
    for (_, data) in &events {
        let v = parse(data);
        match v["delta"]["type"].as_str() {
            Some("text_delta") => text.push_str(v["delta"]["text"].as_str().unwrap()),
            Some("input_json_delta") => {
                json_args.push_str(v["delta"]["partial_json"].as_str().unwrap())
            }
            Some("thinking_delta") => thinking.push_str(v["delta"]["thinking"].as_str().unwrap()),
            Some("signature_delta") => {
                signature.push_str(v["delta"]["signature"].as_str().unwrap())
            }
            _ => {}
        }
    }
    assert_eq!(text, "Hello there");
    assert_eq!(thinking, "let me think");
    assert_eq!(signature, "sig-1");
    assert_eq!(parse(&json_args), json!({"city": "Paris"}));
    let delta = parse(&events[events.len() - 2].1);
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let req = h.request(0).unwrap();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.query.as_deref(), Some("beta=true"));
    assert_eq!(req.header("x-api-key"), Some("sk-test"));
    assert_eq!(req.body["model"], "claude-x");
    assert_eq!(req.dialect, Some(Dialect::Anthropic));
}

#[tokio::test]
async fn openai_stream_is_data_only_with_indexed_tool_fragments_usage_and_done() {
    let h = Standin::openai()
        .reply(
            Script::tool_calls([
                ToolCall::new("a", json!({"x": 1})),
                ToolCall::new("b", json!({"y": "two"})),
            ])
            .interleaved(),
        )
        .reply(Script::text("hi"))
        .start_tcp()
        .await
        .unwrap();
    assert!(h.base_url().ends_with("/v1"));
    let body = json!({"model": "gpt", "stream": true, "stream_options": {"include_usage": true}});
    let r = post(&h, "/v1/chat/completions", &[], body).await;
    let events = sse(&r.body);
    assert!(events.iter().all(|(e, _)| e.is_none()));
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| parse(&e.1))
        .collect();
    let mut args = [String::new(), String::new()];
    let mut ids = Vec::new();
    let mut order = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            order.push(i);
            if let Some(id) = tc.get("id") {
                ids.push((i, id.as_str().unwrap().to_owned()));
            }
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(ids.len(), 2, "id only on the first fragment of each call");
    assert_eq!(&order[..4], &[0, 1, 0, 1], "interleaved by index");
    assert_eq!(parse(&args[0]), json!({"x": 1}));
    assert_eq!(parse(&args[1]), json!({"y": "two"}));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["prompt_tokens"].is_u64());
    // Without stream_options there is no usage chunk; the path without /v1 works too.
    let r = post(&h, "/chat/completions", &[], json!({"stream": true})).await;
    let events = sse(&r.body);
    assert!(events.iter().all(|(_, d)| !d.contains("\"usage\"")));
}

#[tokio::test]
async fn ollama_streams_ndjson_with_whole_tool_calls_and_a_done_line() {
    let h = Standin::ollama()
        .reply(
            Script::message()
                .with_text("ok then")
                .with_tool(ToolCall::new("get_weather", json!({"city": "Paris"}))),
        )
        .start_tcp()
        .await
        .unwrap();
    let r = post(&h, "/api/chat", &[], json!({"model": "llama3.2"})).await;
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = r.body.lines().map(parse).collect();
    let calls: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["message"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert!(last["eval_count"].is_u64());
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
}

#[tokio::test]
async fn errors_use_each_dialects_shape_status_and_headers() {
    let h = Standin::anthropic()
        .reply(Script::rate_limited(3))
        .reply(Script::overloaded())
        .reply(Script::insufficient_quota())
        .reply(Script::insufficient_quota())
        .reply(Script::overloaded())
        .start_tcp()
        .await
        .unwrap();
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    let v = parse(&r.body);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    assert_eq!(r.status, 529);
    assert_eq!(parse(&r.body)["error"]["type"], "overloaded_error");
    let r = post(&h, "/v1/messages", &[], json!({})).await;
    assert_eq!(
        parse(&r.body)["error"]["details"]["error_code"],
        "enforced_spend_limit_reached"
    );
    let r = post(&h, "/v1/chat/completions", &[], json!({})).await;
    assert_eq!(r.status, 429);
    assert_eq!(parse(&r.body)["error"]["code"], "insufficient_quota");
    let r = post(&h, "/api/chat", &[], json!({})).await;
    assert_eq!(r.status, 503);
    assert!(parse(&r.body)["error"].is_string());
}

#[tokio::test]
async fn streams_can_fail_midway_drop_or_end_early() {
    let h = Standin::anthropic()
        .reply(Script::text("a b c").error_after(3, "overloaded_error", "Overloaded"))
        .reply(Script::text("a b c").drop_after(2))
        .reply(Script::text("a b c").end_after(2))
        .start_tcp()
        .await
        .unwrap();
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    let events = sse(&r.body);
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].0.as_deref(), Some("error"));
    assert!(!r.broken);
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    assert!(r.broken, "the connection must be cut");
    assert_eq!(sse(&r.body).len(), 2);
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    assert!(!r.broken);
    assert_eq!(sse(&r.body).len(), 2);
}

#[tokio::test]
async fn an_exhausted_script_fails_loudly_and_fast_echo_answers_everything() {
    let h = Standin::anthropic().start_tcp().await.unwrap();
    let r = post(&h, "/v1/messages", &[], json!({"stream": true})).await;
    assert_eq!(r.status, 500);
    let h = Standin::openai().fast_echo().start_tcp().await.unwrap();
    for _ in 0..3 {
        let body = json!({"stream": true, "messages": [{"role": "user", "content": "ping me"}]});
        let r = post(&h, "/v1/chat/completions", &[], body).await;
        assert!(r.body.contains("echo:"), "{}", r.body);
        assert!(r.body.contains(" me"));
    }
    assert_eq!(h.request_count(), 3);
}

#[tokio::test]
async fn non_streaming_requests_get_whole_messages() {
    let h = Standin::anthropic()
        .fallback(Script::tool_use("t", json!({"a": 1})))
        .start_tcp()
        .await
        .unwrap();
    let r = post(&h, "/v1/messages", &[], json!({"model": "m"})).await;
    let v = parse(&r.body);
    assert_eq!(v["content"][0]["input"], json!({"a": 1}));
    assert_eq!(v["stop_reason"], "tool_use");
    let r = post(&h, "/v1/chat/completions", &[], json!({"model": "m"})).await;
    let v = parse(&r.body);
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    let r = post(&h, "/api/chat", &[], json!({"model": "m", "stream": false})).await;
    assert_eq!(parse(&r.body)["done"], true);
}

#[tokio::test]
async fn serves_on_a_unix_socket_and_records_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standin.sock");
    let h = Standin::anthropic()
        .reply(Script::text("over_unix"))
        .start_unix(&path)
        .await
        .unwrap();
    assert_eq!(h.base_url(), format!("unix:{}", path.display()));
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "x"}]});
    let r = crate::uds::request(&path, "POST", "/v1/messages", &[("x-k", "v")], Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.raw).contains("over_unix"));
    h.wait_for_requests(1).await;
    assert_eq!(h.requests()[0].header("x-k"), Some("v"));
    assert_eq!(h.requests()[0].messages().len(), 1);
    drop(h);
    assert!(!path.exists());
}
