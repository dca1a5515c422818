#![allow(clippy::unwrap_used, clippy::expect_used)]

use cambot_protocol::RunLimits;
use cambot_providers::ContentBlock;
use cambot_providers::Role;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::testing::*;

fn limits() -> RunLimits {
    RunLimits::default()
}

/// The tool results of the last message of a request, as (id, content, is_error).
fn last_results(req: &ModelRequest) -> Vec<(String, String, bool)> {
    let last = req.messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    last.content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult(r) => {
                Some((r.tool_use_id.clone(), r.content.clone(), r.is_error))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_tool_round_trip_writes_in_the_group_folder_and_ends_with_the_final_text() {
    let w = World::new();
    let p = Scripted::new([
        tools(&[(
            "t1",
            "write_file",
            json!({"path": "notes/a.txt", "content": "hi there"}),
        )]),
        tools(&[("t2", "bash", json!({"command": "cat notes/a.txt; pwd"}))]),
        text("All done."),
    ]);
    let (mut agent, mut rx) = w.agent(p.clone(), start_input(limits()));
    let end = agent.turn("write a note".into()).await.unwrap();
    assert_eq!(
        end,
        TurnEnd {
            text: Some("All done.".into()),
            stop: TurnStop::FinalText
        }
    );
    let group = w.env.group_dir();
    assert_eq!(
        std::fs::read_to_string(group.join("notes/a.txt")).unwrap(),
        "hi there"
    );
    let reqs = p.requests();
    assert_eq!(reqs.len(), 3);
    let r1 = last_results(&reqs[1]);
    assert_eq!(r1[0].0, "t1");
    assert!(r1[0].1.contains("/workspace/group/notes/a.txt"), "{r1:?}");
    let r2 = last_results(&reqs[2]);
    assert!(!r2[0].2, "{r2:?}");
    assert!(r2[0].1.starts_with("hi there"), "{r2:?}");
    let real_group = std::fs::canonicalize(&group).unwrap();
    assert!(
        r2[0].1.contains(real_group.to_str().unwrap()),
        "bash cwd: {r2:?}"
    );
    // Tools are offered on every call; the system prompt names the assistant.
    assert!(reqs[0].tools.iter().any(|t| t.name == "bash"));
    assert!(reqs[0].system.as_deref().unwrap().contains("You are Andy"));
    assert_eq!(reqs[0].model.as_deref(), Some("scripted-1"));
    assert_eq!(reqs[0].max_tokens, Some(1000));
    let events = drain(&mut rx);
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            RunnerToHost::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "All done.");
    let activities: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RunnerToHost::Activity { kind, detail } if kind == "tool_use" => detail.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(activities.len(), 2);
    assert!(activities[0].starts_with("write_file "));
    let usages = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                RunnerToHost::Usage {
                    input_tokens: 10,
                    output_tokens: 5
                }
            )
        })
        .count();
    assert_eq!(usages, 3);
}

#[tokio::test]
async fn parallel_tool_calls_are_answered_in_order() {
    let w = World::new();
    std::fs::write(w.env.group_dir().join("x.txt"), "X").unwrap();
    let p = Scripted::new([
        tools(&[
            ("a", "read_file", json!({"path": "missing.txt"})),
            ("b", "read_file", json!({"path": "x.txt"})),
            ("c", "list_files", json!({})),
        ]),
        text("ok"),
    ]);
    let (mut agent, _rx) = w.agent(p.clone(), start_input(limits()));
    agent.turn("go".into()).await.unwrap();
    let r = last_results(&p.requests()[1]);
    let ids: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(r[0].2, "missing file is an error: {r:?}");
    assert_eq!((r[1].1.as_str(), r[1].2), ("X", false));
    assert_eq!(r[2].1, "x.txt");
}

#[tokio::test]
async fn invalid_tool_arguments_become_error_results() {
    let w = World::new();
    let p = Scripted::new([
        invalid_tool("bad", "write_file", "{\"path\": \"a"),
        tools(&[
            ("t1", "write_file", json!({"path": "a", "content": 5})),
            ("t2", "nope", json!({})),
            ("t3", "bash", json!({"command": "true", "extra": 1})),
        ]),
        text("gave up"),
    ]);
    let (mut agent, _rx) = w.agent(p.clone(), start_input(limits()));
    let end = agent.turn("go".into()).await.unwrap();
    assert_eq!(end.text.as_deref(), Some("gave up"));
    let reqs = p.requests();
    let r = last_results(&reqs[1]);
    assert_eq!(r[0].0, "bad");
    assert!(r[0].2 && r[0].1.contains("not valid JSON"), "{r:?}");
    let r = last_results(&reqs[2]);
    assert!(r.iter().all(|x| x.2), "{r:?}");
    assert!(r[0].1.contains("invalid arguments for write_file"), "{r:?}");
    assert!(r[1].1.contains("unknown tool \"nope\""), "{r:?}");
    assert!(r[2].1.contains("unknown field `extra`"), "{r:?}");
    assert!(!w.env.group_dir().join("a").exists());
}

#[tokio::test]
async fn max_iterations_stops_the_turn_without_running_the_last_calls() {
    let w = World::new();
    let p = Scripted::new([
        tools(&[("t1", "write_file", json!({"path": "one", "content": "1"}))]),
        tools(&[("t2", "write_file", json!({"path": "two", "content": "2"}))]),
    ]);
    let mut l = limits();
    l.max_iterations = 2;
    let (mut agent, mut rx) = w.agent(p.clone(), start_input(l));
    let end = agent.turn("loop".into()).await.unwrap();
    assert_eq!(end.stop, TurnStop::MaxIterations);
    let text = end.text.unwrap();
    assert!(text.contains("[stopped: max_iterations"), "{text}");
    assert!(w.env.group_dir().join("one").exists());
    assert!(!w.env.group_dir().join("two").exists());
    // The transcript stays valid: the unrun call has an error result.
    let last = agent.session().messages().last().unwrap().clone();
    assert!(
        matches!(&last.content[0], ContentBlock::ToolResult(r) if r.is_error && r.tool_use_id == "t2")
    );
    assert!(
        drain(&mut rx)
            .iter()
            .any(|e| matches!(e, RunnerToHost::Activity { kind, .. } if kind == "stopped"))
    );
}

#[tokio::test]
async fn the_token_budget_stops_the_turn() {
    let w = World::new();
    let p = Scripted::new([
        tools_with_usage(&[("t1", "list_files", json!({}))], 400),
        tools_with_usage(&[("t2", "list_files", json!({}))], 400),
    ]);
    let mut l = limits();
    l.token_budget = 700;
    let (mut agent, _rx) = w.agent(p.clone(), start_input(l));
    let end = agent.turn("spend".into()).await.unwrap();
    assert_eq!(end.stop, TurnStop::TokenBudget);
    assert!(
        end.text
            .unwrap()
            .contains("this turn used 820 tokens, over its budget of 700")
    );
    assert_eq!(p.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_wall_clock_stops_a_hung_model_call() {
    let w = World::new();
    let p = Scripted::new([tools(&[("t1", "list_files", json!({}))]), Reply::Stall]);
    let mut l = limits();
    l.wall_clock_secs = 60;
    let (mut agent, _rx) = w.agent(p.clone(), start_input(l));
    let end = agent.turn("hang".into()).await.unwrap();
    assert_eq!(end.stop, TurnStop::WallClock);
    assert!(end.text.unwrap().contains("wall_clock"));
    // The next turn works (the session is consistent).
    p.push(text("back"));
    let end = agent.turn("again".into()).await.unwrap();
    assert_eq!(end.text.as_deref(), Some("back"));
}

#[tokio::test]
async fn a_failed_model_call_is_an_error_and_leaves_no_trace() {
    let w = World::new();
    let p = Scripted::new([
        text("first answer"),
        tools(&[("t1", "list_files", json!({}))]),
        Reply::Fail(cambot_providers::ProviderError::Connection("reset".into())),
    ]);
    let (mut agent, _rx) = w.agent(p.clone(), start_input(limits()));
    agent.turn("one".into()).await.unwrap();
    let before = agent.session().messages().to_vec();
    let err = agent.turn("two".into()).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(agent.session().messages(), before.as_slice());
    let reopened =
        crate::session::Session::open(&w.env.session_dir(), Some(agent.session().id())).unwrap();
    assert_eq!(reopened.messages(), before.as_slice());
}

#[tokio::test]
async fn memory_files_go_into_the_system_prompt_and_the_agent_may_edit_its_own() {
    let w = World::new();
    std::fs::write(
        w.env.global_dir().join("CLAUDE.md"),
        "Tenant rule: be brief.",
    )
    .unwrap();
    std::fs::write(
        w.env.group_dir().join("CLAUDE.md"),
        "Group fact: the cat is Tom.",
    )
    .unwrap();
    let p = Scripted::new([
        tools(&[(
            "t1",
            "edit_file",
            json!({"path": "/workspace/group/CLAUDE.md", "old_string": "Tom", "new_string": "Felix"}),
        )]),
        text("noted"),
    ]);
    let (mut agent, _rx) = w.agent(p.clone(), start_input(limits()));
    agent.turn("the cat is Felix now".into()).await.unwrap();
    let reqs = p.requests();
    let s0 = reqs[0].system.clone().unwrap();
    assert!(s0.contains("Tenant rule: be brief."), "{s0}");
    assert!(s0.contains("Group fact: the cat is Tom."), "{s0}");
    let s1 = reqs[1].system.clone().unwrap();
    assert!(s1.contains("the cat is Felix."), "{s1}");
}

#[tokio::test]
async fn compaction_summarises_older_turns_and_archives_them() {
    let w = World::new();
    let p = Scripted::new([text("reply one"), text("reply two")]);
    let mut l = limits();
    l.compact_after_tokens = 100;
    let (mut agent, mut rx) = w.agent(p.clone(), start_input(l));
    let long = "the secret word is PINEAPPLE. ".repeat(20);
    agent.turn(long.clone()).await.unwrap();
    agent.turn("short question".into()).await.unwrap();
    // Third turn: over budget, so the first turns are summarised first.
    p.push(text("SUMMARY: the user said the secret word is PINEAPPLE."));
    p.push(text("reply three"));
    agent.turn("what was the word?".into()).await.unwrap();
    let reqs = p.requests();
    assert_eq!(reqs.len(), 4);
    let summary_req = &reqs[2];
    assert!(summary_req.tools.is_empty());
    assert!(
        summary_req
            .system
            .as_deref()
            .unwrap()
            .contains("You condense conversations")
    );
    assert!(summary_req.messages[0].text().contains("PINEAPPLE"));
    let next = &reqs[3];
    assert!(
        next.system
            .as_deref()
            .unwrap()
            .contains("SUMMARY: the user said"),
        "the summary is in the system prompt"
    );
    assert!(
        !next.messages.iter().any(|m| m.text().contains("PINEAPPLE")),
        "the compacted turn is gone from the messages"
    );
    assert_eq!(next.messages.last().unwrap().text(), "what was the word?");
    let archives: Vec<_> = std::fs::read_dir(w.env.group_dir().join("conversations"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archives.len(), 1);
    let archived = std::fs::read_to_string(archives[0].path()).unwrap();
    assert!(archived.contains(&long), "full text archived");
    assert!(archived.contains("reply one"));
    // The transcript file starts with the summary and survives a reopen.
    let reopened =
        crate::session::Session::open(&w.env.session_dir(), Some(agent.session().id())).unwrap();
    assert!(reopened.summary().unwrap().contains("PINEAPPLE"));
    assert_eq!(reopened.messages(), agent.session().messages());
    assert!(
        drain(&mut rx)
            .iter()
            .any(|e| matches!(e, RunnerToHost::Activity { kind, .. } if kind == "compaction"))
    );
}
