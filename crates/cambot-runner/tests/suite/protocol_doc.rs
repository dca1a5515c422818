//! Every ```json example in docs/PROTOCOL.md parses into the real type named by the
//! `<!-- json: Type -->` marker above it, keeps every field it shows (nothing silently ignored),
//! and together the examples cover every message of both channels.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cambot_protocol::HostToRunner;
use cambot_protocol::RunnerToHost;
use cambot_protocol::ipc;
use cambot_protocol::ipc::routes;
use cambot_runner::session::Record;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (type name, JSON text, line number) of every example.
fn examples(doc: &str) -> Vec<(String, String, usize)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with("```json") {
            let marker = i
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- json: "))
                .and_then(|m| m.strip_suffix(" -->"))
                .unwrap_or_else(|| panic!("line {}: a json example without a type marker", i + 1));
            let start = i + 1;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            assert!(i < lines.len(), "line {start}: unterminated json block");
            out.push((marker.to_owned(), body, start));
        }
        i += 1;
    }
    out
}

/// Every key of `shown` exists (recursively) in `kept`.
fn keys_kept(shown: &Value, kept: &Value, at: &str) -> Result<(), String> {
    match (shown, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let Some(w) = b.get(k) else {
                    return Err(format!("{at}.{k} is ignored by the real type"));
                };
                keys_kept(v, w, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            for (n, (v, w)) in a.iter().zip(b).enumerate() {
                keys_kept(v, w, &format!("{at}[{n}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check<T: DeserializeOwned + Serialize>(json: &str) -> Result<Value, String> {
    let value: T = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let shown: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let kept = serde_json::to_value(&value).map_err(|e| e.to_string())?;
    keys_kept(&shown, &kept, "$")?;
    Ok(shown)
}

#[test]
fn every_protocol_example_parses_into_the_real_types() {
    let doc = doc();
    let examples = examples(&doc);
    assert!(
        examples.len() >= 25,
        "only {} examples found",
        examples.len()
    );
    let mut tags: BTreeSet<String> = BTreeSet::new();
    for (ty, json, line) in &examples {
        let parsed = match ty.as_str() {
            "HostToRunner" => check::<HostToRunner>(json),
            "RunnerToHost" => check::<RunnerToHost>(json),
            "IpcError" => check::<ipc::IpcError>(json),
            "SendMessageRequest" => check::<ipc::SendMessageRequest>(json),
            "ScheduleTaskRequest" => check::<ipc::ScheduleTaskRequest>(json),
            "ScheduleTaskResponse" => check::<ipc::ScheduleTaskResponse>(json),
            "ListTasksResponse" => check::<ipc::ListTasksResponse>(json),
            "TaskIdRequest" => check::<ipc::TaskIdRequest>(json),
            "RegisterGroupRequest" => check::<ipc::RegisterGroupRequest>(json),
            "ListGroupsResponse" => check::<ipc::ListGroupsResponse>(json),
            "RunWorkflowRequest" => check::<ipc::RunWorkflowRequest>(json),
            "RunWorkflowResponse" => check::<ipc::RunWorkflowResponse>(json),
            "ListWorkflowsResponse" => check::<ipc::ListWorkflowsResponse>(json),
            "FetchRequest" => check::<ipc::FetchRequest>(json),
            "FetchResponse" => check::<ipc::FetchResponse>(json),
            "TranscriptRecord" => check::<Record>(json),
            // Successful IPC answers: `{"ok": true}` plus route-specific extras.
            "OkResponse" => serde_json::from_str::<ipc::Ok>(json)
                .map_err(|e| e.to_string())
                .and_then(|ok| {
                    if ok.ok {
                        serde_json::from_str(json).map_err(|e| e.to_string())
                    } else {
                        Err("ok must be true".into())
                    }
                }),
            other => panic!("line {line}: unknown example type {other:?}"),
        };
        let value = parsed.unwrap_or_else(|e| panic!("line {line} ({ty}): {e}\n{json}"));
        if let Some(tag) = value.get("type").and_then(Value::as_str) {
            tags.insert(format!("{ty}:{tag}"));
        }
    }
    for tag in [
        "HostToRunner:start",
        "HostToRunner:message",
        "HostToRunner:close",
        "RunnerToHost:ready",
        "RunnerToHost:activity",
        "RunnerToHost:text_delta",
        "RunnerToHost:usage",
        "RunnerToHost:result",
        "RunnerToHost:error",
        "TranscriptRecord:summary",
        "TranscriptRecord:message",
    ] {
        assert!(tags.contains(tag), "no example of {tag}");
    }
}

#[test]
fn the_document_names_every_route_and_constant() {
    let doc = doc();
    for needle in [
        routes::SEND_MESSAGE,
        routes::SCHEDULE_TASK,
        routes::LIST_TASKS,
        routes::PAUSE_TASK,
        routes::RESUME_TASK,
        routes::CANCEL_TASK,
        routes::REGISTER_GROUP,
        routes::LIST_GROUPS,
        routes::RUN_WORKFLOW,
        routes::LIST_WORKFLOWS,
        routes::FETCH,
        routes::MODEL_PREFIX,
        cambot_protocol::HOST_SOCKET_PATH,
        cambot_protocol::RUN_TOKEN_HEADER,
        cambot_runner::env::ENV_HOST_SOCKET,
        cambot_runner::env::ENV_WORKSPACE,
        &cambot_protocol::run::MAX_LINE_BYTES.to_string(),
    ] {
        assert!(
            doc.contains(needle),
            "docs/PROTOCOL.md does not mention {needle}"
        );
    }
    let prefix = cambot_protocol::run::SCHEDULED_TASK_PREFIX;
    let flattened = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flattened.contains(prefix),
        "the scheduled-task prefix is quoted exactly"
    );
}

#[test]
fn the_example_parser_rejects_unmarked_blocks() {
    let bad = "text\n```json\n{}\n```\n";
    assert!(std::panic::catch_unwind(|| examples(bad)).is_err());
    let good = "<!-- json: HostToRunner -->\n```json\n{\"type\":\"close\"}\n```\n";
    assert_eq!(examples(good).len(), 1);
    assert!(
        keys_kept(
            &serde_json::json!({"a": 1, "b": 2}),
            &serde_json::json!({"a": 1}),
            "$"
        )
        .is_err()
    );
}
