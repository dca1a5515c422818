//! The real `cambot-runner` binary, talking to a real gateway run socket whose model upstream is
//! the scripted Anthropic stand-in (exact SSE wire format, fragmented tool arguments).

use cambot_protocol::HostToRunner;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::RunnerToHost;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::ToolCall;
use pretty_assertions::assert_eq;
use serde_json::Value;
use serde_json::json;

use super::support::*;

/// The text of an Anthropic message (`content` as a string or as blocks).
fn text_of(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

fn tool_results(m: &Value) -> Vec<(String, bool)> {
    m["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| {
            let content = match &b["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (content, b["is_error"].as_bool().unwrap_or(false))
        })
        .collect()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_bash_call_through_the_gateway_writes_in_the_group_folder_and_the_key_stays_outside() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::tool_use(
                "bash",
                json!({"command": "echo made-by-bash > out.txt && ls"}),
            ))
            .reply(Script::text("The file is written.")),
    )
    .await;
    let start = start("please write a file", None);
    let start_line = HostToRunner::Start(Box::new(start.clone())).to_line();
    assert!(!start_line.contains(API_KEY));
    let mut run = host.spawn(FOLDER, CHAT, start).await;
    assert_eq!(run.next().await, RunnerToHost::Ready);
    let (text, session, inputs) = run.result().await;
    assert_eq!(text.as_deref(), Some("The file is written."));
    assert_eq!(inputs, 1);
    let session = session.unwrap();
    let ws = run.workspace.clone();
    assert_eq!(run.close().await, 0);

    assert_eq!(
        std::fs::read_to_string(ws.join("group/out.txt")).unwrap(),
        "made-by-bash\n"
    );
    assert!(!ws.join("out.txt").exists());
    assert!(ws.join(format!("session/{session}.jsonl")).exists());

    let reqs = host.standin.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(
            r.header("x-api-key"),
            Some(API_KEY),
            "the gateway adds the key"
        );
        assert_eq!(
            r.header(RUN_TOKEN_HEADER),
            None,
            "the run token stays on the host"
        );
        assert_eq!(r.body["model"], "claude-test");
        assert_eq!(r.body["stream"], true);
    }
    let names = tool_names(&reqs[0].body);
    for t in [
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "glob",
        "grep",
        "send_message",
    ] {
        assert!(names.iter().any(|n| n == t), "{t} missing from {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n == "register_group" || n == "list_groups")
    );
    let results = tool_results(reqs[1].messages().last().unwrap());
    assert_eq!(results.len(), 1);
    assert!(!results[0].1, "{results:?}");
    assert!(results[0].0.contains("out.txt"), "{results:?}");
}

#[tokio::test]
async fn streamed_text_arrives_as_deltas_before_the_result() {
    let host =
        Host::new(Standin::anthropic().reply(Script::text_chunks(["Hel", "lo, ", "world"]))).await;
    let mut run = host.spawn(FOLDER, CHAT, start("hi", None)).await;
    let (text, _, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("Hello, world"));
    let deltas: Vec<String> = run
        .seen
        .iter()
        .filter_map(|e| match e {
            RunnerToHost::TextDelta { text } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hel", "lo, ", "world"]);
    assert!(
        run.seen
            .iter()
            .any(|e| matches!(e, RunnerToHost::Usage { .. }))
    );
    assert_eq!(run.close().await, 0);
}

#[tokio::test]
async fn a_second_run_resumes_the_session_and_the_model_sees_the_earlier_turns() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::text("Hello Ada!"))
            .reply(Script::text("You are Ada.")),
    )
    .await;
    let mut run = host
        .spawn(FOLDER, CHAT, start("My name is Ada.", None))
        .await;
    let (_, session, _) = run.result().await;
    assert_eq!(run.close().await, 0);

    let mut run = host
        .spawn(FOLDER, CHAT, start("What is my name?", session.clone()))
        .await;
    let (text, resumed, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("You are Ada."));
    assert_eq!(resumed, session);
    assert_eq!(run.close().await, 0);

    let second = host.standin.request(1).unwrap();
    let history: Vec<(String, String)> = second
        .messages()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), text_of(m)))
        .collect();
    assert_eq!(
        history,
        [
            ("user".to_owned(), "My name is Ada.".to_owned()),
            ("assistant".to_owned(), "Hello Ada!".to_owned()),
            ("user".to_owned(), "What is my name?".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_follow_up_message_is_answered_in_the_same_run() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::text("first answer"))
            .reply(Script::text("second answer")),
    )
    .await;
    let mut run = host.spawn(FOLDER, CHAT, start("one", None)).await;
    let (_, s1, _) = run.result().await;
    run.send(&HostToRunner::Message { text: "two".into() })
        .await;
    let (text, s2, inputs) = run.result().await;
    assert_eq!((text.as_deref(), inputs), (Some("second answer"), 1));
    assert_eq!(s1, s2);
    assert_eq!(run.close().await, 0);
    let second = host.standin.request(1).unwrap();
    let texts: Vec<String> = second.messages().iter().map(text_of).collect();
    assert_eq!(texts, ["one", "first answer", "two"]);
}

#[tokio::test]
async fn malformed_and_oversized_lines_are_reported_and_the_run_goes_on() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::text("a"))
            .reply(Script::text("b")),
    )
    .await;
    let mut run = host.spawn(FOLDER, CHAT, start("one", None)).await;
    run.result().await;
    run.send_raw("{\"type\":\"mesage\",\"text\":\"x\"}\n").await;
    let RunnerToHost::Warning { message } = run.next().await else {
        panic!("expected a warning event");
    };
    assert!(
        message.contains("input line 2") && message.contains("unknown variant `mesage`"),
        "{message}"
    );
    let huge = format!(
        "{{\"type\":\"message\",\"text\":\"{}\"}}\n",
        "x".repeat(5 << 20)
    );
    run.send_raw(&huge).await;
    let RunnerToHost::Warning { message } = run.next().await else {
        panic!("expected a warning event");
    };
    assert!(message.contains("over the 4194304-byte limit"), "{message}");
    run.send(&HostToRunner::Message { text: "two".into() })
        .await;
    let (text, _, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("b"));
    assert_eq!(run.close().await, 0);
}

#[tokio::test]
async fn host_tools_act_as_the_run_that_owns_the_socket() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::tool_calls([
                ToolCall::new("send_message", json!({"text": "working on it"})).id("toolu_1"),
                ToolCall::new("send_message", json!({"text": "psst", "chat_jid": "cli:main"}))
                    .id("toolu_2"),
                ToolCall::new(
                    "schedule_task",
                    json!({"prompt": "water the plants", "schedule_type": "cron", "schedule_value": "0 9 * * *"}),
                )
                .id("toolu_3"),
                ToolCall::new("list_tasks", json!({})).id("toolu_4"),
            ]))
            .reply(Script::text("done")),
    )
    .await;
    let mut run = host.spawn(FOLDER, CHAT, start("remind me", None)).await;
    let (text, _, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("done"));
    assert_eq!(run.close().await, 0);
    let results = tool_results(host.standin.request(1).unwrap().messages().last().unwrap());
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results[0], ("message sent".to_owned(), false));
    assert!(
        results[1].1 && results[1].0.contains("403 forbidden"),
        "{results:?}"
    );
    assert!(
        !results[2].1 && results[2].0.starts_with("scheduled task "),
        "{results:?}"
    );
    assert!(
        results[3].0.contains("water the plants") && results[3].0.contains("group family"),
        "{results:?}"
    );
}

#[tokio::test]
async fn the_main_group_gets_the_main_only_tools() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::tool_use("list_groups", json!({})))
            .reply(Script::text("listed")),
    )
    .await;
    let mut run = host
        .spawn("main", "cli:main", start("which groups?", None))
        .await;
    run.result().await;
    assert_eq!(run.close().await, 0);
    let first = host.standin.request(0).unwrap();
    let names = tool_names(&first.body);
    assert!(names.iter().any(|n| n == "register_group"), "{names:?}");
    let results = tool_results(host.standin.request(1).unwrap().messages().last().unwrap());
    assert!(!results[0].1, "{results:?}");
    assert!(
        results[0]
            .0
            .contains("family chat (cli:family) registered as family"),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_runner_past_its_run_budget_is_cut_off_at_the_gateway_and_does_not_retry() {
    // The model asks for a tool forever and the runner's own per-turn limit (25 calls) is far
    // away: only the gateway's budget of 2 requests stops it.
    let mut host = Host::new(
        Standin::anthropic().fallback(Script::tool_use("bash", json!({"command": "true"}))),
    )
    .await;
    host.budget = cambot_gateway::RunBudget {
        model_requests: 2,
        ..cambot_gateway::RunBudget::default()
    };
    let mut run = host.spawn(FOLDER, CHAT, start("loop", None)).await;
    let message = loop {
        match run.next().await {
            RunnerToHost::Error { message, .. } => break message,
            RunnerToHost::Result { text, .. } => panic!("the turn ended: {text:?}"),
            _ => {}
        }
    };
    assert!(message.contains("budget"), "{message}");
    assert_eq!(run.close().await, 1);
    assert_eq!(
        host.standin.request_count(),
        2,
        "nothing more reached the upstream"
    );
    let refused = host
        .gateway
        .stats()
        .refused_by_budget
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 1, "the runner took the refusal as final: no retry");
}

/// One workflow `digest` (input `topic`, steps in `family`); records what was started.
#[derive(Default)]
struct OneWorkflow(std::sync::Mutex<Vec<(String, std::collections::BTreeMap<String, String>)>>);

impl cambot_gateway::WorkflowHost for OneWorkflow {
    fn list(
        &self,
        _tenant: cambot_protocol::TenantId,
    ) -> futures::future::BoxFuture<
        '_,
        Result<Vec<cambot_protocol::ipc::WorkflowSummary>, cambot_gateway::HostToolError>,
    > {
        Box::pin(async {
            Ok(vec![cambot_protocol::ipc::WorkflowSummary {
                name: "digest".into(),
                inputs: [("topic".to_owned(), Some("news".to_owned()))].into(),
                groups: vec![FOLDER.into()],
                schedule: None,
            }])
        })
    }

    fn start(
        &self,
        _tenant: cambot_protocol::TenantId,
        name: String,
        inputs: std::collections::BTreeMap<String, String>,
    ) -> futures::future::BoxFuture<'_, Result<String, cambot_gateway::HostToolError>> {
        self.0.lock().unwrap().push((name, inputs));
        Box::pin(async { Ok("run-42".to_owned()) })
    }
}

#[tokio::test]
async fn workflow_tools_reach_the_host() {
    let host = Host::new(
        Standin::anthropic()
            .reply(Script::tool_calls([
                ToolCall::new("list_workflows", json!({})).id("toolu_1"),
                ToolCall::new(
                    "run_workflow",
                    json!({"name": "digest", "inputs": {"topic": "rust"}}),
                )
                .id("toolu_2"),
            ]))
            .reply(Script::text("started")),
    )
    .await;
    let workflows = std::sync::Arc::new(OneWorkflow::default());
    assert!(host.ipc.set_workflows(workflows.clone()));
    let mut run = host
        .spawn(FOLDER, CHAT, start("run the digest", None))
        .await;
    let (text, _, _) = run.result().await;
    assert_eq!(text.as_deref(), Some("started"));
    assert_eq!(run.close().await, 0);
    let names = tool_names(&host.standin.request(0).unwrap().body);
    assert!(names.iter().any(|n| n == "run_workflow"), "{names:?}");
    let results = tool_results(host.standin.request(1).unwrap().messages().last().unwrap());
    assert_eq!(
        results,
        vec![
            (
                "- digest (inputs: topic=\"news\"; groups: family)".to_owned(),
                false
            ),
            (
                "started workflow digest as run run-42 (it runs in the background)".to_owned(),
                false
            ),
        ]
    );
    assert_eq!(
        *workflows.0.lock().unwrap(),
        vec![(
            "digest".to_owned(),
            [("topic".to_owned(), "rust".to_owned())].into()
        )]
    );
}
