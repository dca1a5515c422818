//! The model proxy against loopback stand-ins that speak the providers' exact wire formats:
//! only a dialect's own routes pass, only the pass-listed headers reach the upstream, a
//! redirect is never followed, and a run's budget is enforced here whatever its runner does.

use std::time::Duration;

use cambot_gateway::RunBudget;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::proxy_world::ProxyWorld;
use super::proxy_world::upstream;

fn unlimited() -> RunBudget {
    RunBudget {
        model_requests: u32::MAX,
        tokens: u64::MAX,
        wall_clock: Duration::from_secs(86_400),
    }
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "m", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn only_each_dialects_own_routes_reach_the_upstream() {
    let anthropic = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let openai = Standin::openai().fast_echo().start_tcp().await.unwrap();
    let ollama = Standin::ollama().fast_echo().start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![
            upstream("claude", "anthropic", &anthropic.base_url()),
            upstream("gpt", "openai", &openai.base_url()),
            upstream("llama", "ollama", &ollama.base_url()),
        ],
        unlimited(),
    )
    .await;
    let body = chat_body(true);
    for (method, path) in [
        ("POST", "/v1/model/claude/v1/messages"),
        ("POST", "/v1/model/claude/v1/messages?beta=true"),
        ("GET", "/v1/model/claude/v1/models"),
        ("POST", "/v1/model/gpt/chat/completions"),
        ("GET", "/v1/model/gpt/models"),
        ("POST", "/v1/model/llama/api/chat"),
        ("GET", "/v1/model/llama/api/tags"),
    ] {
        let r = w.call(method, path, &[], Some(&body)).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
    }
    let seen = anthropic.request_count() + openai.request_count() + ollama.request_count();
    assert_eq!(seen, 7);
    for (method, path) in [
        ("GET", "/v1/model/claude/v1/messages"),
        ("DELETE", "/v1/model/claude/v1/models"),
        ("POST", "/v1/model/claude/v1/files"),
        ("POST", "/v1/model/claude/v1/messages/batches"),
        ("POST", "/v1/model/claude/chat/completions"),
        ("POST", "/v1/model/claude/v1/messages/"),
        ("POST", "/v1/model/claude/v1//messages"),
        ("POST", "/v1/model/claude//v1/messages"),
        ("POST", "/v1/model/claude/v1/./messages"),
        ("POST", "/v1/model/claude/v1/x/../messages"),
        ("POST", "/v1/model/claude/v1%2fmessages"),
        ("POST", "/v1/model/claude/v1/%6Dessages"),
        ("POST", "/v1/model/claude/%2e%2e/v1/messages"),
        ("POST", "/v1/model/claude/../../v1/ipc/send_message"),
        ("POST", "/v1/model/gpt/v1/messages"),
        ("POST", "/v1/model/gpt/files"),
        ("POST", "/v1/model/gpt/embeddings"),
        ("POST", "/v1/model/llama/api/pull"),
        ("DELETE", "/v1/model/llama/api/delete"),
        ("POST", "/v1/model/llama/api/generate"),
    ] {
        let r = w.call(method, path, &[], Some(&body)).await;
        assert_eq!(r.status, 403, "{method} {path} must be refused: {}", r.body);
        assert_eq!(r.body["error"]["kind"], "forbidden");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(method) && message.contains(path.split('?').next().unwrap()),
            "the refusal names the method and path: {message}"
        );
    }
    let seen = anthropic.request_count() + openai.request_count() + ollama.request_count();
    assert_eq!(seen, 7, "no refused request reached an upstream");
}

#[tokio::test]
async fn only_pass_listed_headers_reach_the_upstream() {
    let up = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![upstream("claude", "anthropic", &up.base_url())],
        unlimited(),
    )
    .await;
    let r = w
        .call(
            "POST",
            "/v1/model/claude/v1/messages",
            &[
                ("x-api-key", "sk-stolen-by-the-run"),
                ("authorization", "Bearer run-made-up"),
                ("cookie", "session=abc"),
                ("proxy-authorization", "Basic eDp5"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-custom", "1"),
                ("anthropic-beta", "tools-2024"),
            ],
            Some(&chat_body(true)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.request(0).unwrap();
    assert_eq!(
        seen.header("x-api-key"),
        Some("sk-host"),
        "the host's key only"
    );
    assert_eq!(seen.header("anthropic-beta"), Some("tools-2024"));
    let mut names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "accept",
            "anthropic-beta",
            "anthropic-version",
            "content-length",
            "content-type",
            "host",
            "x-api-key",
        ],
        "nothing else (no run token, authorization, cookie, forwarding or custom header)"
    );
    let raw = format!("{:?}", seen.headers);
    assert!(
        !raw.contains(w.socket.token()),
        "the run token never leaves the host"
    );
}

#[tokio::test]
async fn an_upstream_redirect_is_never_followed() {
    let elsewhere = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let target = format!("{}/v1/messages", elsewhere.root_url());
    let mut builder = Standin::anthropic();
    let statuses = [301u16, 302, 303, 307, 308];
    for status in statuses {
        builder =
            builder.reply(Script::raw(status, "text/plain", ["moved"]).header("location", &target));
    }
    let up = builder.start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![upstream("claude", "anthropic", &up.base_url())],
        unlimited(),
    )
    .await;
    for status in statuses {
        let r = w
            .call(
                "POST",
                "/v1/model/claude/v1/messages",
                &[],
                Some(&chat_body(true)),
            )
            .await;
        assert_eq!(r.status, 502, "{status} becomes a 502: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("answered {status} (a redirect)")),
            "{}",
            r.body
        );
        assert!(r.headers.get("location").is_none());
    }
    assert_eq!(up.request_count(), statuses.len());
    assert_eq!(
        elsewhere.request_count(),
        0,
        "the redirect target saw nothing"
    );
}

/// A runner stand-in that ignores every refusal: calls the chat route `attempts` times over
/// the run's socket, reading each answer to its end; returns the statuses.
async fn keep_calling(w: &ProxyWorld, path: &str, body: &Value, attempts: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..attempts {
        let r = w.call("POST", path, &[], Some(body)).await;
        if r.status == 429 {
            assert_eq!(r.body["error"]["kind"], "budget_exhausted", "{}", r.body);
            assert_eq!(
                r.headers.get("x-should-retry").map(|v| v.to_str().unwrap()),
                Some("false")
            );
        }
        statuses.push(r.status);
    }
    statuses
}

#[tokio::test]
async fn a_runner_that_keeps_calling_gets_exactly_its_request_budget() {
    let up = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![upstream("claude", "anthropic", &up.base_url())],
        RunBudget {
            model_requests: 3,
            ..unlimited()
        },
    )
    .await;
    let statuses = keep_calling(&w, "/v1/model/claude/v1/messages", &chat_body(true), 12).await;
    assert_eq!(statuses, [vec![200; 3], vec![429; 9]].concat());
    assert_eq!(up.request_count(), 3, "the upstream saw exactly the budget");
    let r = w
        .call(
            "POST",
            "/v1/model/claude/v1/messages",
            &[],
            Some(&chat_body(true)),
        )
        .await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model_requests"),
        "the refusal names the budget: {}",
        r.body
    );
}

#[tokio::test]
async fn the_token_budget_is_counted_from_each_dialects_usage_reports() {
    // Every answer costs 400 in + 50 out; a budget of 1000 lets three calls start.
    let cases: [(&str, &str, Standin, &str, Value); 4] = [
        (
            "claude",
            "anthropic",
            Standin::anthropic(),
            "v1/messages",
            chat_body(true),
        ),
        (
            "gpt",
            "openai",
            Standin::openai(),
            "chat/completions",
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "gpt",
            "openai",
            Standin::openai(),
            "chat/completions",
            chat_body(false),
        ),
        (
            "llama",
            "ollama",
            Standin::ollama(),
            "api/chat",
            chat_body(true),
        ),
    ];
    for (name, dialect, builder, route, body) in cases {
        let up = builder
            .fallback(Script::text("a few words of answer").usage(400, 50))
            .start_tcp()
            .await
            .unwrap();
        let w = ProxyWorld::new(
            vec![upstream(name, dialect, &up.base_url())],
            RunBudget {
                tokens: 1000,
                ..unlimited()
            },
        )
        .await;
        let path = format!("/v1/model/{name}/{route}");
        let statuses = keep_calling(&w, &path, &body, 8).await;
        assert_eq!(
            statuses,
            [vec![200; 3], vec![429; 5]].concat(),
            "{dialect} stream={}",
            body["stream"]
        );
        assert_eq!(up.request_count(), 3, "{dialect}: nothing past the budget");
        let r = w.call("POST", &path, &[], Some(&body)).await;
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tokens: this run used 1350 tokens"),
            "{dialect}: {}",
            r.body
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_wall_clock_budget_runs_from_the_sockets_bind() {
    let up = Standin::anthropic().fast_echo().start_tcp().await.unwrap();
    let w = ProxyWorld::new(
        vec![upstream("claude", "anthropic", &up.base_url())],
        RunBudget {
            wall_clock: Duration::from_secs(60),
            ..unlimited()
        },
    )
    .await;
    let path = "/v1/model/claude/v1/messages";
    assert_eq!(
        keep_calling(&w, path, &chat_body(true), 2).await,
        [200, 200]
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(keep_calling(&w, path, &chat_body(true), 3).await, [429; 3]);
    assert_eq!(up.request_count(), 2);
    let r = w.call("POST", path, &[], Some(&chat_body(true))).await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall_clock"),
        "{}",
        r.body
    );
}
