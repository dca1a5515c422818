#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use cambot_protocol::RunLimits;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

struct Box_ {
    dir: tempfile::TempDir,
    tools: Toolbox,
}

fn toolbox(limits: RunLimits) -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("group")).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.txt"), "s3cret").unwrap();
    let ctx = ToolContext {
        fs: Confinement::new(&ws).unwrap(),
        limits,
        host: HostClient::new(&dir.path().join("none.sock"), "tok").unwrap(),
        extractor: extractor_path(),
        documents: DocumentCache::default(),
    };
    Box_ {
        tools: Toolbox::new(ctx, ToolPolicy::Full, false),
        dir,
    }
}

impl Box_ {
    async fn call(&self, name: &str, input: serde_json::Value) -> ToolResult {
        self.tools
            .call(&ToolUse {
                id: "id".into(),
                name: name.into(),
                input,
                invalid_input: None,
            })
            .await
    }

    fn group(&self) -> std::path::PathBuf {
        self.tools.context().fs.root().join("group")
    }
}

#[test]
fn every_schema_is_an_object_schema_whose_required_fields_exist() {
    let mut names = BTreeSet::new();
    for t in TOOLS {
        assert!(names.insert(t.name), "duplicate tool {}", t.name);
        let schema: serde_json::Value = serde_json::from_str(t.schema)
            .unwrap_or_else(|e| panic!("{}: schema is not JSON: {e}", t.name));
        assert_eq!(schema["type"], "object", "{}", t.name);
        let props = schema["properties"].as_object().unwrap();
        for r in schema["required"].as_array().into_iter().flatten() {
            assert!(props.contains_key(r.as_str().unwrap()), "{}: {r}", t.name);
        }
        assert_eq!(t.definition().input_schema, schema);
        assert!(!t.description.is_empty());
    }
}

#[test]
fn policies_decide_which_tools_are_offered() {
    let names = |policy, main| -> Vec<&str> {
        TOOLS
            .iter()
            .filter(|t| t.offered(policy, main))
            .map(|t| t.name)
            .collect()
    };
    let full = names(ToolPolicy::Full, false);
    assert!(full.contains(&"bash") && full.contains(&"schedule_task"));
    assert!(!full.contains(&"register_group") && !full.contains(&"list_groups"));
    let main = names(ToolPolicy::Full, true);
    assert!(main.contains(&"register_group") && main.contains(&"list_groups"));
    assert_eq!(
        names(ToolPolicy::Readonly, true),
        [
            "read_file",
            "read_document",
            "list_files",
            "glob",
            "grep",
            "send_message"
        ]
    );
    assert!(names(ToolPolicy::None, true).is_empty());
}

#[tokio::test]
async fn write_read_and_edit() {
    let b = toolbox(RunLimits::default());
    let r = b
        .call(
            "write_file",
            json!({"path": "d/e/f.txt", "content": "one two two\nline2\nline3"}),
        )
        .await;
    assert!(!r.is_error, "{r:?}");
    assert_eq!(
        b.call("read_file", json!({"path": "d/e/f.txt"}))
            .await
            .content,
        "one two two\nline2\nline3"
    );
    assert_eq!(
        b.call(
            "read_file",
            json!({"path": "d/e/f.txt", "offset": 2, "limit": 1})
        )
        .await
        .content,
        "line2"
    );
    let r = b
        .call(
            "edit_file",
            json!({"path": "d/e/f.txt", "old_string": "two", "new_string": "2"}),
        )
        .await;
    assert!(r.is_error && r.content.contains("occurs 2 times"), "{r:?}");
    let r = b
        .call(
            "edit_file",
            json!({"path": "d/e/f.txt", "old_string": "three", "new_string": "3"}),
        )
        .await;
    assert!(r.is_error && r.content.contains("not found"), "{r:?}");
    let r = b
        .call(
            "edit_file",
            json!({"path": "d/e/f.txt", "old_string": "one two", "new_string": "1 2"}),
        )
        .await;
    assert!(!r.is_error, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(b.group().join("d/e/f.txt")).unwrap(),
        "1 2 two\nline2\nline3"
    );
}

#[tokio::test]
async fn file_tools_refuse_escapes() {
    let b = toolbox(RunLimits::default());
    let outside = b.dir.path().join("outside");
    std::os::unix::fs::symlink(&outside, b.group().join("out")).unwrap();
    let cases = [
        ("read_file", json!({"path": "../../outside/secret.txt"})),
        ("read_file", json!({"path": outside.join("secret.txt")})),
        ("read_file", json!({"path": "/etc/passwd"})),
        ("read_file", json!({"path": "out/secret.txt"})),
        ("write_file", json!({"path": "out/new.txt", "content": "x"})),
        (
            "write_file",
            json!({"path": "../../outside/new.txt", "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": "out/secret.txt", "old_string": "s3cret", "new_string": "x"}),
        ),
        ("list_files", json!({"path": "out"})),
        ("list_files", json!({"path": "/"})),
        ("grep", json!({"pattern": "s3cret", "path": "out"})),
        ("glob", json!({"pattern": "*", "path": "../.."})),
    ];
    for (tool, input) in cases {
        let r = b.call(tool, input.clone()).await;
        assert!(r.is_error, "{tool} {input}: {r:?}");
        assert!(
            r.content.contains("outside the workspace") || r.content.contains("climbs out"),
            "{tool} {input}: {r:?}"
        );
    }
    assert!(!outside.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "s3cret"
    );
    // Walks do not follow the symlink either.
    let r = b.call("grep", json!({"pattern": "s3cret"})).await;
    assert_eq!(r.content, "no matches");
    let r = b.call("glob", json!({"pattern": "**/*.txt"})).await;
    assert!(!r.content.contains("secret"), "{r:?}");
}

#[tokio::test]
async fn glob_grep_and_list() {
    let b = toolbox(RunLimits::default());
    for (p, c) in [
        ("a.md", "alpha\nBeta"),
        ("sub/b.md", "beta gamma"),
        ("sub/c.txt", "beta"),
    ] {
        b.call("write_file", json!({"path": p, "content": c})).await;
    }
    assert_eq!(b.call("list_files", json!({})).await.content, "a.md\nsub/");
    assert_eq!(
        b.call("glob", json!({"pattern": "**/*.md"})).await.content,
        "/workspace/group/a.md\n/workspace/group/sub/b.md"
    );
    let r = b
        .call(
            "grep",
            json!({"pattern": "^beta", "case_insensitive": true, "glob": "**/*.md"}),
        )
        .await;
    assert_eq!(
        r.content,
        "/workspace/group/a.md:2:Beta\n/workspace/group/sub/b.md:1:beta gamma\n"
    );
    let r = b.call("grep", json!({"pattern": "("})).await;
    assert!(r.is_error && r.content.contains("invalid regex"));
}

#[tokio::test]
async fn bash_runs_in_the_group_folder_and_reports_the_exit_code() {
    let b = toolbox(RunLimits::default());
    let r = b
        .call(
            "bash",
            json!({"command": "echo hi > f.txt; pwd; echo err >&2"}),
        )
        .await;
    assert!(!r.is_error, "{r:?}");
    let group = b.group();
    assert_eq!(
        r.content,
        format!("{}\n[stderr]\nerr\n[exit code 0]", group.display())
    );
    assert!(group.join("f.txt").exists());
    let r = b.call("bash", json!({"command": "exit 3"})).await;
    assert!(r.is_error);
    assert_eq!(r.content, "[exit code 3]");
}

#[tokio::test]
async fn bash_output_is_capped() {
    let b = toolbox(RunLimits {
        tool_output_bytes: 1000,
        ..RunLimits::default()
    });
    let r = b
        .call(
            "bash",
            json!({"command": "head -c 300000 /dev/zero | tr '\\0' a"}),
        )
        .await;
    assert!(!r.is_error, "{}", &r.content[..200]);
    assert!(r.content.len() < 1200, "{}", r.content.len());
    assert!(r.content.contains("truncated"), "{}", r.content);
}

fn alive(pid: i32) -> bool {
    // Gone, or a zombie waiting for init: either way no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_bash_timeout_kills_the_whole_process_group() {
    let b = toolbox(RunLimits {
        bash_timeout_secs: 1,
        ..RunLimits::default()
    });
    let r = b
        .call(
            "bash",
            json!({"command": "sleep 300 & echo $! > bg.pid; echo started; wait"}),
        )
        .await;
    assert!(r.is_error);
    assert!(r.content.starts_with("started\n"), "{r:?}");
    assert!(r.content.contains("[timed out after 1 s"), "{r:?}");
    let pid: i32 = std::fs::read_to_string(b.group().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The kill is synchronous with the result; init may take a moment to reap the zombie.
    let mut tries = 0;
    while alive(pid) && tries < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tries += 1;
    }
    assert!(!alive(pid), "background sleep {pid} survived the timeout");
}

#[tokio::test]
async fn background_jobs_do_not_outlive_a_finished_call() {
    let b = toolbox(RunLimits::default());
    let r = b
        .call(
            "bash",
            json!({"command": "sleep 300 & echo $! > bg.pid; echo ok"}),
        )
        .await;
    assert!(!r.is_error, "{r:?}");
    let pid: i32 = std::fs::read_to_string(b.group().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut tries = 0;
    while alive(pid) && tries < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tries += 1;
    }
    assert!(!alive(pid));
}

#[tokio::test]
async fn host_tools_report_an_unreachable_socket_as_a_tool_error() {
    let b = toolbox(RunLimits::default());
    let r = b.call("send_message", json!({"text": "hi"})).await;
    assert!(
        r.is_error && r.content.contains("host socket unreachable"),
        "{r:?}"
    );
    let r = b
        .call(
            "send_message",
            json!({"text": "hi", "group_folder": "main"}),
        )
        .await;
    assert!(
        r.is_error && r.content.contains("unknown field `group_folder`"),
        "{r:?}"
    );
}

#[test]
fn cap_text_respects_char_boundaries() {
    let s = cap_text("ééééé".into(), 3);
    assert!(s.starts_with("é\n[output truncated: 10 bytes"), "{s}");
    assert_eq!(cap_text("short".into(), 10), "short");
}
