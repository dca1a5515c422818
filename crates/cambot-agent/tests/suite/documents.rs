//! Documents through the real sandbox (bwrap, the built `cambot-runner extract`, poppler's
//! `pdftotext`): every format, the hostile corpus of issue 27 (generated here), the host's
//! refusals, the exit-status mapping, and the `cambot documents extract` CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use cambot_agent::config::Config;
use cambot_agent::documents::DocumentError;
use cambot_agent::documents::DocumentJob;
use cambot_agent::documents::Extracted;
use cambot_agent::documents::extract_document;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_protocol::documents::DocKind;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::PlanInput;
use cambot_sandbox::SandboxBackend;
use cambot_testkit::documents as corpus;

use super::sandboxed::sandbox_tools;
use super::support::config;

pub(crate) struct Rig {
    dir: tempfile::TempDir,
    config_file: PathBuf,
    cfg: Config,
    backend: Arc<dyn SandboxBackend>,
}

/// The real sandbox with `[documents]` set to `documents_toml`; `runner` replaces the built
/// runner (a stand-in extractor). None (skip) without the tools, a failure under
/// CAMBOT_REQUIRE_ALL.
async fn rig_with(documents_toml: &str, runner: Option<PathBuf>) -> Option<Rig> {
    let (built_runner, init) = sandbox_tools()?;
    let pdftotext = std::process::Command::new("pdftotext")
        .arg("-v")
        .output()
        .is_ok();
    if !pdftotext {
        if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!(
                "required tool missing: pdftotext (scripts/setup/sandbox.sh installs poppler-utils)"
            );
        }
        eprintln!("SKIPPED documents: pdftotext is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml_text = format!(
        "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n[documents]\n{documents_toml}\n",
        runner.unwrap_or(built_runner).display(),
        init.display()
    );
    let config_file = dir.path().join("cambot.toml");
    std::fs::write(&config_file, &toml_text).unwrap();
    let cfg = config(dir.path(), &toml_text);
    let backend = cambot_sandbox::select_backend(&cfg.sandbox).await.unwrap();
    Some(Rig {
        dir,
        config_file,
        cfg,
        backend,
    })
}

pub(crate) async fn rig(documents_toml: &str) -> Option<Rig> {
    rig_with(documents_toml, None).await
}

impl Rig {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let inbox = self.dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let path = inbox.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub(crate) async fn extract(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<Extracted, DocumentError> {
        let path = self.write(name, bytes);
        let declared = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(DocKind::from_extension);
        self.extract_path(path, declared).await
    }

    async fn extract_path(
        &self,
        file: PathBuf,
        declared: Option<DocKind>,
    ) -> Result<Extracted, DocumentError> {
        let layout = DataLayout::new(&self.cfg.data_dir);
        let plan = PlanInput::new(
            layout.clone(),
            TenantId::default_tenant(),
            GroupFolder::new("main").unwrap(),
            RunId::from_bytes(rand::random()),
        );
        let result = extract_document(
            self.backend.as_ref(),
            &self.cfg.sandbox,
            &MountAllowlist::none("no extra mounts in this test"),
            &self.cfg.documents,
            DocumentJob {
                plan,
                file,
                declared,
            },
        )
        .await;
        // Nothing of the extraction is left behind: no run dir, no staged copy.
        let runs = layout.run_dir(&RunId::from_bytes([0; 16]));
        let runs = runs.parent().unwrap();
        let left = std::fs::read_dir(runs).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "a run directory was left in {}", runs.display());
        result
    }
}

fn ok(r: Result<Extracted, DocumentError>) -> Extracted {
    match r {
        Ok(x) => x,
        Err(e) => panic!("extraction failed: {e}"),
    }
}

/// The error, checked to be one printable line.
fn err(r: Result<Extracted, DocumentError>) -> DocumentError {
    match r {
        Ok(x) => panic!(
            "extraction succeeded: {:?}",
            &x.text[..x.text.len().min(300)]
        ),
        Err(e) => {
            let line = e.to_string();
            assert!(
                !line.chars().any(char::is_control),
                "not one printable line: {line:?}"
            );
            e
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn every_format_is_extracted_inside_the_sandbox() {
    let Some(rig) = rig("").await else { return };
    let pdf = ok(rig
        .extract(
            "two.pdf",
            &corpus::pdf_pages(&["Alpha page one", "Beta page two"]),
        )
        .await);
    assert_eq!(pdf.format, Some(DocKind::Pdf));
    assert_eq!(pdf.parts, Some(2));
    assert!(
        pdf.text
            .starts_with("## Page 1\n\nAlpha page one\n\n## Page 2\n\nBeta page two"),
        "{:?}",
        pdf.text
    );

    let left = ["Lorem leftone", "Lorem lefttwo", "Lorem leftthree"];
    let right = ["Ipsum rightone", "Ipsum righttwo", "Ipsum rightthree"];
    let cols = ok(rig
        .extract("cols.pdf", &corpus::pdf_two_columns(&left, &right))
        .await);
    let pos = |w: &str| {
        cols.text
            .find(w)
            .unwrap_or_else(|| panic!("{w} missing: {}", cols.text))
    };
    // Reading order: the whole left column, then the right one (drawn row by row).
    assert!(pos("leftone") < pos("lefttwo") && pos("lefttwo") < pos("leftthree"));
    assert!(pos("leftthree") < pos("rightone") && pos("rightone") < pos("rightthree"));

    let body = [
        corpus::w_p(Some("Title"), "Contract"),
        corpus::w_p(None, "Parties agree."),
        corpus::w_table(&[&["Item", "Price"], &["Widget", "3"]]),
    ]
    .concat();
    let docx = ok(rig.extract("c.docx", &corpus::docx(&body)).await);
    assert_eq!(docx.format, Some(DocKind::Docx));
    assert_eq!(
        docx.text,
        "# Contract\n\nParties agree.\n\n| Item | Price |\n| --- | --- |\n| Widget | 3 |\n\n"
    );

    let xlsx = ok(rig
        .extract(
            "b.xlsx",
            &corpus::xlsx(&[("Q1", &[&["Month", "Total"], &["Jan", "5"]])]),
        )
        .await);
    assert_eq!(
        xlsx.text,
        "## Sheet: Q1\n\n| Month | Total |\n| --- | --- |\n| Jan | 5 |\n\n"
    );

    let pptx = ok(rig
        .extract("s.pptx", &corpus::pptx(&[&["Hello deck"]]))
        .await);
    assert!(pptx.text.contains("## Slide 1\n\nHello deck"));

    let html = ok(rig
        .extract(
            "p.html",
            b"<html><body><h2>News</h2><p>Fresh text</p><style>.x{}</style></body></html>",
        )
        .await);
    assert!(
        html.text.contains("## News") && html.text.contains("Fresh text"),
        "{}",
        html.text
    );

    let txt = ok(rig.extract("n.txt", "plain ünïcode\n".as_bytes()).await);
    assert_eq!(txt.text, "plain ünïcode\n");
    let md = ok(rig.extract("r.md", b"# Readme\n\n* item\n").await);
    assert_eq!(md.format, Some(DocKind::Markdown));
    assert_eq!(md.text, "# Readme\n\n* item\n");
    let csv = ok(rig.extract("t.csv", b"name,qty\n\"Bolt, M4\",10\n").await);
    assert_eq!(
        csv.text,
        "| name | qty |\n| --- | --- |\n| Bolt, M4 | 10 |\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn hostile_archives_and_xml_are_refused_with_a_precise_line() {
    let Some(rig) = rig("").await else { return };
    // A small file whose document.xml inflates 1000-fold.
    let bomb = corpus::docx_zip_bomb(48 << 20);
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    let e = err(rig.extract("bomb.docx", &bomb).await);
    assert!(
        matches!(&e, DocumentError::Limit(m) if m.contains("zip bomb")),
        "{e}"
    );

    // Nested archives are never opened: a bomb inside a bomb-free DOCX is just a member...
    let inner = corpus::zip_of(&[("inner.xml", vec![b' '; 4 << 20])]);
    let nested = corpus::docx_raw(
        &corpus::docx_document_xml(&corpus::w_p(None, "outer text")),
        &[(
            "word/embeddings/inner.zip",
            corpus::zip_of(&[("inner.zip", inner)]),
        )],
    );
    let x = ok(rig.extract("nested.docx", &nested).await);
    assert_eq!(x.text, "outer text\n\n");
    // ...and an archive that only holds an archive is no document.
    let zip_in_zip = corpus::zip_of(&[("real.docx", corpus::docx(&corpus::w_p(None, "x")))]);
    let e = err(rig.extract("wrapped.docx", &zip_in_zip).await);
    assert!(
        matches!(&e, DocumentError::Unsupported(m) if m.contains("no Office document")),
        "{e}"
    );

    let laughs = corpus::docx_raw(&corpus::billion_laughs_xml("w:document"), &[]);
    let e = err(rig.extract("laughs.docx", &laughs).await);
    assert!(
        matches!(&e, DocumentError::Malformed(m) if m.contains("DOCTYPE")),
        "{e}"
    );

    // XXE at a host file: refused, and its content appears nowhere.
    let canary = "CANARY-host-secret-7f3a";
    let target = rig.write("host-secret.txt", canary.as_bytes());
    let target = target.to_str().unwrap();
    let xxe = corpus::docx_raw(&corpus::xxe_xml("w:document", target), &[]);
    let e = err(rig.extract("xxe.docx", &xxe).await);
    assert!(
        matches!(&e, DocumentError::Malformed(m) if m.contains("DOCTYPE")),
        "{e}"
    );
    assert!(!e.to_string().contains(canary));
    let sheet = corpus::xxe_xml("worksheet", target);
    let xxe_xlsx = corpus::xlsx_raw(&[("S", sheet)]);
    let e = err(rig.extract("xxe.xlsx", &xxe_xlsx).await);
    assert!(matches!(&e, DocumentError::Malformed(_)), "{e}");
    assert!(!e.to_string().contains(canary));

    for name in ["../../etc/evil.xml", "/abs/evil.xml"] {
        let bytes = corpus::docx_raw(
            &corpus::docx_document_xml(&corpus::w_p(None, "x")),
            &[(name, b"x".to_vec())],
        );
        let e = err(rig.extract("names.docx", &bytes).await);
        assert!(
            matches!(&e, DocumentError::Malformed(m) if m.contains("unsafe name")),
            "{name}: {e}"
        );
    }
    let mut truncated = corpus::docx(&corpus::w_p(None, "cut"));
    truncated.truncate(truncated.len() / 2);
    let e = err(rig.extract("cut.docx", &truncated).await);
    assert!(
        matches!(&e, DocumentError::Malformed(m) if m.contains("ZIP")),
        "{e}"
    );
    // The host and its backend are unaffected: a plain file still goes through.
    ok(rig.extract("after.txt", b"still fine").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn hostile_pdfs_are_bounded() {
    let Some(rig) = rig("max_pages = 20").await else {
        return;
    };
    // 100 000 pages: only the page cap is read, and the text says it was cut.
    let many = corpus::pdf_many_pages(100_000, "Same page text");
    let x = ok(rig.extract("many.pdf", &many).await);
    assert_eq!(x.parts, Some(20));
    assert_eq!(x.truncated.as_deref(), Some("page cap of 20 pages reached"));
    assert!(x.text.contains("## Page 20\n\nSame page text"));
    assert!(!x.text.contains("## Page 21"));
    assert!(
        x.text
            .ends_with("\n[truncated: page cap of 20 pages reached]\n"),
        "{:?}",
        &x.text[x.text.len() - 80..]
    );

    // A page tree that contains itself, and a 10 000-deep object: text, no hang, no crash.
    let x = ok(rig
        .extract("loop.pdf", &corpus::pdf_page_tree_loop("Loop survivor"))
        .await);
    assert!(x.text.contains("Loop survivor"), "{}", x.text);
    let x = ok(rig
        .extract(
            "deep.pdf",
            &corpus::pdf_deep_nesting(10_000, "Deep survivor"),
        )
        .await);
    assert!(x.text.contains("Deep survivor"), "{}", x.text);

    let e = err(rig.extract("locked.pdf", &corpus::pdf_encrypted()).await);
    assert!(matches!(e, DocumentError::Encrypted), "{e}");
    assert!(e.to_string().starts_with("password-protected"));

    let mut cut = corpus::pdf_pages(&["Will be cut"]);
    cut.truncate(cut.len() / 2);
    let e = err(rig.extract("cut.pdf", &cut).await);
    assert!(
        matches!(&e, DocumentError::Malformed(_) | DocumentError::NoText),
        "{e}"
    );

    // A PDF with a page but no text (a scan): its own status, not an empty success.
    let blank = corpus::pdf_pages(&[""]);
    let e = err(rig.extract("scan.pdf", &blank).await);
    assert!(matches!(e, DocumentError::NoText), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn the_host_refuses_by_size_and_magic_bytes_before_any_sandbox() {
    let Some(rig) = rig("max_file_mb = 1\nmax_output_bytes = 1000").await else {
        return;
    };
    assert!(matches!(
        err(rig.extract("empty.pdf", b"").await),
        DocumentError::EmptyFile
    ));
    let elf = std::fs::read("/bin/true").unwrap();
    let e = err(rig.extract("invoice.pdf", &elf).await);
    assert!(
        matches!(&e, DocumentError::Unsupported(m) if m.contains("executable")),
        "{e}"
    );
    let e = err(rig.extract("report.docx", &corpus::pdf_pages(&["x"])).await);
    assert!(
        matches!(
            e,
            DocumentError::Mismatch {
                declared: DocKind::Docx,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "refused: declared as docx but the bytes are a PDF"
    );
    let e = err(rig.extract("big.txt", &vec![b'a'; (1 << 20) + 1]).await);
    assert!(matches!(e, DocumentError::TooLarge { .. }), "{e}");
    // The output cap: the text is cut and says so.
    let x = ok(rig
        .extract("long.txt", "word ".repeat(1000).as_bytes())
        .await);
    assert!(
        x.text.len() < 1100
            && x.text
                .ends_with("[truncated: output cap of 1000 bytes reached]\n"),
        "{:?}",
        x.text
    );
    // A name with control characters never reaches the sandbox.
    let x = ok(rig.extract("re\u{1b}[31mport\n.txt", b"named badly").await);
    assert_eq!(x.text, "named badly\n");
}

/// A stand-in extractor (a shell script bound as the runner) to check how the host maps what
/// it cannot get from the real one on demand: a crash, a hang, a lying or missing status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn crashes_hangs_and_missing_status_lines_map_to_precise_errors() {
    let scripts = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scripts.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = |name: &str, body: &str| {
        let p = scripts.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let cases = [
        (script("segv.sh", "kill -SEGV $$"), "the extractor crashed"),
        (script("panic.sh", "exit 101"), "the extractor crashed"),
        (script("oom.sh", "kill -ABRT $$"), "ran out of memory"),
        (script("cpu.sh", "kill -XCPU $$"), "more than 30 s of CPU"),
        (script("hang.sh", "exec sleep 600"), "longer than 1 s"),
        (
            script("quiet.sh", "echo leaked text; exit 1"),
            "sandbox failed: exit code 1",
        ),
    ];
    for (runner, expected) in cases {
        let Some(rig) = rig_with("wall_secs = 1", Some(runner.clone())).await else {
            return;
        };
        let e = err(rig.extract("a.txt", b"text").await);
        assert!(
            e.to_string().contains(expected),
            "{}: {e}",
            runner.display()
        );
        assert!(!e.to_string().contains("leaked text"));
    }
}

struct Cli {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cambot(rig: &Rig, args: &[&std::ffi::OsStr]) -> Cli {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--config")
        .arg(&rig.config_file)
        .arg("--data-dir")
        .arg(&rig.cfg.data_dir)
        .args(args)
        .env_remove("CAMBOT_CONFIG")
        .output()
        .unwrap();
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap, pdftotext and root: run by scripts/test.sh"]
async fn the_cli_prints_text_or_one_line_and_an_exit_code() {
    let Some(rig) = rig("").await else { return };
    let extract = |path: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = ["documents", "extract", "--group", "main"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.push(path.as_os_str());
        cambot(&rig, &args)
    };
    let docx = rig.write(
        "t.docx",
        &corpus::docx(&corpus::w_table(&[&["K", "V"], &["a", "1"]])),
    );
    let out = extract(&docx, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(out.stdout, "| K | V |\n| --- | --- |\n| a | 1 |\n\n");

    let one_line = |out: &Cli, code: i32, needle: &str| {
        assert_eq!(out.code, code, "{}", out.stderr);
        assert!(out.stdout.is_empty());
        assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains(needle),
            "{:?}",
            out.stderr
        );
        assert!(
            !out.stderr.trim_end().chars().any(char::is_control),
            "{:?}",
            out.stderr
        );
    };
    one_line(
        &extract(&rig.write("x.pdf", &corpus::pdf_encrypted()), &[]),
        11,
        "password-protected",
    );
    one_line(
        &extract(&rig.write("b.docx", &corpus::docx_zip_bomb(48 << 20)), &[]),
        13,
        "zip bomb",
    );
    one_line(&extract(&rig.write("z.pdf", b""), &[]), 12, "empty");
    one_line(
        &extract(
            &rig.write("e.pdf", &std::fs::read("/bin/true").unwrap()),
            &[],
        ),
        10,
        "executable",
    );
    let pdf = rig.write("declared.bin", &corpus::pdf_pages(&["p"]));
    one_line(
        &extract(
            &pdf,
            &[
                "--type",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            ],
        ),
        10,
        "declared as docx",
    );
    let out = extract(&pdf, &["--type", "pdf"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A missing file whose name holds control characters: still one printable line.
    let ghost = rig.dir.path().join("gh\u{1b}[2Jost\nname.pdf");
    one_line(&extract(&ghost, &[]), 70, "cannot open");
}
