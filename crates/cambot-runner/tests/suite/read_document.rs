//! The `read_document` tool against the real extractor binary (`cambot-runner extract` as a
//! child process): paging through a long PDF, the refusals, symlinks out of the workspace.

use std::path::PathBuf;

use cambot_protocol::RunLimits;
use cambot_protocol::ToolPolicy;
use cambot_providers::ToolUse;
use cambot_runner::tools::Confinement;
use cambot_runner::tools::DocumentCache;
use cambot_runner::tools::HostClient;
use cambot_runner::tools::ToolContext;
use cambot_runner::tools::Toolbox;
use cambot_testkit::documents as corpus;
use serde_json::Value;
use serde_json::json;

struct Ws {
    dir: tempfile::TempDir,
    tools: Toolbox,
}

fn workspace() -> Ws {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("group")).unwrap();
    std::fs::create_dir_all(ws.join("uploads/u1")).unwrap();
    let ctx = ToolContext {
        fs: Confinement::new(&ws).unwrap(),
        limits: RunLimits::default(),
        host: HostClient::new(&dir.path().join("none.sock"), "tok").unwrap(),
        extractor: PathBuf::from(env!("CARGO_BIN_EXE_cambot-runner")),
        documents: DocumentCache::default(),
    };
    Ws {
        tools: Toolbox::new(ctx, ToolPolicy::Readonly, false),
        dir,
    }
}

impl Ws {
    fn put(&self, rel: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join("ws").join(rel);
        std::fs::write(&p, bytes).unwrap();
        format!("/workspace/{rel}")
    }

    async fn read(&self, input: Value) -> (bool, String) {
        let r = self
            .tools
            .call(&ToolUse {
                id: "t".into(),
                name: "read_document".into(),
                input,
                invalid_input: None,
            })
            .await;
        (r.is_error, r.content)
    }
}

#[tokio::test]
async fn a_long_pdf_is_read_a_page_and_a_window_at_a_time() {
    let ws = workspace();
    let pages: Vec<String> = (1..=300)
        .map(|i| format!("PAGEWORD{i} {}", "filler text ".repeat(20)))
        .collect();
    let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
    let path = ws.put("uploads/u1/file.pdf", &corpus::pdf_pages(&refs));

    // The whole text: the first window only, and how to get the next.
    let (err, first) = ws.read(json!({"path": path})).await;
    assert!(!err, "{first}");
    assert!(
        first.starts_with(&format!(
            "[read_document {path}: pdf, 300 pages; showing characters 0-20000 of "
        )),
        "{}",
        &first[..200]
    );
    assert!(
        first.contains("PAGEWORD1 ") && !first.contains("PAGEWORD300"),
        "the window is bounded"
    );
    assert!(
        first.contains(&format!(r#"{{"path": "{path}", "offset": 20000}}"#)),
        "no next-window hint"
    );
    assert!(first.len() < 25_000, "{} bytes", first.len());
    // The parsing ran in a child process (its own pid), not in this one.
    let marker = first.lines().last().unwrap();
    assert!(
        marker.starts_with("[parsed by the extractor child process: pid "),
        "{marker}"
    );
    assert!(
        !marker.contains(&format!("pid {},", std::process::id())),
        "{marker}"
    );

    // One page, and the next page's hint.
    let (err, p150) = ws.read(json!({"path": path, "page": 150})).await;
    assert!(!err, "{p150}");
    assert!(
        p150.contains("showing page 150,") && p150.contains("PAGEWORD150 "),
        "{p150}"
    );
    assert!(
        !p150.contains("PAGEWORD149 ") && !p150.contains("PAGEWORD151 "),
        "{p150}"
    );
    assert!(p150.contains(r#""page": 151}"#), "{p150}");
    let (err, small) = ws
        .read(json!({"path": path, "page": 2, "offset": 10, "max_chars": 5}))
        .await;
    assert!(!err && small.contains("characters 10-15 of "), "{small}");
    let (err, none) = ws.read(json!({"path": path, "page": 301})).await;
    assert!(err && none.contains("has 300 pages"), "{none}");
}

#[tokio::test]
async fn paths_outside_the_workspace_and_bad_files_are_refused_with_one_line() {
    let ws = workspace();
    let outside = ws.dir.path().join("secret.pdf");
    std::fs::write(&outside, corpus::pdf_pages(&["OUTSIDE-SECRET"])).unwrap();
    std::os::unix::fs::symlink(&outside, ws.dir.path().join("ws/group/link.pdf")).unwrap();
    let docx = ws.put(
        "group/t.docx",
        &corpus::docx(&corpus::w_table(&[&["Name", "Qty"], &["apple", "3"]])),
    );
    let cases = [
        (json!({"path": "/etc/passwd"}), "outside the workspace"),
        (json!({"path": outside}), "outside the workspace"),
        (json!({"path": "../../secret.pdf"}), "climbs out"),
        (json!({"path": "/workspace/group/link.pdf"}), "symlink"),
        (json!({"path": ws.put("group/empty.pdf", b"")}), "empty"),
        (
            json!({"path": ws.put("group/elf.pdf", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0")}),
            "binary data",
        ),
        (
            json!({"path": ws.put("group/enc.pdf", &corpus::pdf_encrypted())}),
            "password-protected",
        ),
        (
            json!({"path": ws.put("group/cut.pdf", &corpus::pdf_pages(&["x"])[..60])}),
            "malformed",
        ),
        (json!({"path": "/workspace/group"}), "not a regular file"),
    ];
    for (input, want) in cases {
        let (err, text) = ws.read(input.clone()).await;
        assert!(err, "{input}: {text}");
        assert!(text.contains(want), "{input}: want {want:?}, got {text}");
        assert!(!text.contains("OUTSIDE-SECRET"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    let (err, table) = ws.read(json!({"path": docx})).await;
    assert!(
        !err && table.contains("| Name | Qty |\n| --- | --- |\n| apple | 3 |"),
        "{table}"
    );
}
