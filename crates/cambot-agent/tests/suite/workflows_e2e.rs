//! Workflows end to end on the real sandbox: a real daemon, bwrap, the real `cambot-runner`, the
//! per-run gateway and a wire-exact Anthropic stand-in. An `agent` step writes a file through
//! its shell tool and answers; a `command` step reads that file and the answer (shell-quoted);
//! a `send` step posts the answer to the group's chat.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cambot_core::WorkflowRunState;
use cambot_protocol::GroupFolder;
use cambot_testkit::standin::Script;
use serde_json::json;

use super::sandboxed::start_e2e_with;
use super::support::*;

const KEY: &str = "sk-ant-test-secret-0123456789";
const MEMORY: &str = "MEMORY-MARKER-7731: the team's notes";
const ANSWER: &str = "forty-two; rm -rf / $(reboot)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn an_agent_step_runs_in_its_groups_sandbox_and_the_next_steps_use_its_answer() {
    let Some(t) = start_e2e_with(Vec::new(), None, "").await else {
        return;
    };
    // The agent also probes for the host's database: it must not exist in the sandbox.
    let db_probe = t.daemon.layout().database();
    t.standin.push(Script::tool_use(
        "bash",
        json!({"command": format!(
            "id -u > whoami.txt; pwd > pwd.txt; env > env.txt; ls -a /workspace > ws.txt; \
             (test -e {} && echo LEAK || echo sealed) > db.txt; \
             echo made > made.txt; cat made.txt",
            db_probe.display()
        )}),
    ));
    t.standin.push(Script::text(ANSWER));
    t.channel
        .register(&tenant(), "fake:team", "team", None)
        .await
        .unwrap();
    let layout = t.daemon.layout().clone();
    let group = layout.group_dir(&tenant(), &GroupFolder::new("team").unwrap());
    std::fs::create_dir_all(&group).unwrap();
    std::fs::write(group.join("CLAUDE.md"), MEMORY).unwrap();
    let wf = t.daemon.workflows();
    let toml = r#"
name = "write-and-report"
[[steps]]
id = "work"
type = "agent"
group = "team"
prompt = "Make a file, then answer."
[[steps]]
id = "check"
type = "command"
group = "team"
command = "cat made.txt; id -u; printf '%s\n' {{ steps.work.output }}"
[[steps]]
id = "post"
type = "send"
group = "team"
text = "Agent said: {{ steps.work.output }}"
"#;
    wf.engine().add(&tenant(), toml).await.unwrap();
    let run_id = wf
        .start(&tenant(), "write-and-report", BTreeMap::new())
        .await
        .unwrap();
    let mut run = None;
    for _ in 0..600 {
        let r = wf.engine().run(&tenant(), &run_id).await.unwrap().unwrap();
        if r.state.is_finished() {
            run = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = run.expect("the run did not finish");
    assert_eq!(run.state, WorkflowRunState::Succeeded, "{run:#?}");

    // The agent ran in the group's own sandbox: its folder, a non-root uid.
    let uid: u32 = std::fs::read_to_string(group.join("whoami.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the agent ran as root");
    assert_eq!(
        std::fs::metadata(group.join("made.txt")).unwrap().uid(),
        uid
    );
    assert_eq!(
        std::fs::read_to_string(group.join("pwd.txt"))
            .unwrap()
            .trim(),
        "/workspace/group"
    );
    let ws = std::fs::read_to_string(group.join("ws.txt")).unwrap();
    assert!(ws.lines().any(|l| l == "group"), "{ws}");
    assert_eq!(
        std::fs::read_to_string(group.join("db.txt"))
            .unwrap()
            .trim(),
        "sealed"
    );
    // No key inside; the gateway added it upstream.
    let env_dump = std::fs::read_to_string(group.join("env.txt")).unwrap();
    assert!(!env_dump.contains(KEY), "the key leaked into the sandbox");
    assert!(!env_dump.contains("ANTHROPIC"), "{env_dump}");
    let requests = t.standin.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.header("x-api-key"), Some(KEY));
    }
    // The group's memory file was in the agent's prompt, and so was the step's prompt.
    let first = requests[0].body.to_string();
    assert!(first.contains("MEMORY-MARKER-7731"), "{first}");
    assert!(first.contains("Make a file, then answer."), "{first}");

    // The command step ran in the same folder under the sandbox uid, and got the answer as
    // one word (no shell syntax of it ran).
    let check = run.steps[1].output.clone().unwrap();
    assert_eq!(check, format!("made\n{uid}\n{ANSWER}\n"), "{check}");
    // The send step posted the answer to the group's chat, once.
    let sent = t.channel.wait_sent(1, Duration::from_secs(30)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, format!("Agent said: {ANSWER}"));
    assert_eq!(sent[0].chat_jid, "fake:team");
    t.daemon.shutdown().await;
}
