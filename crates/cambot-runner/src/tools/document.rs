//! `read_document`: the text of a PDF, DOCX, XLSX, PPTX, HTML, Markdown, CSV or text file under
//! `/workspace`, a window at a time. The parsing runs in a child process, `cambot-runner
//! extract` (the same extractor the host's one-shot path runs), which sets its own tighter
//! rlimits before it reads a byte; never in this process. The child inherits this sandbox (no
//! network, Landlock, the run's cgroup) and a cleared environment.

use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;

use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::ExtractArgs;
use cambot_protocol::documents::ExtractStatus;
use cambot_protocol::documents::ExtractorProcess;
use cambot_protocol::documents::StatusLine;
use nix::sys::signal::Signal;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

use super::Outcome;
use super::ToolContext;
use super::pages;
use crate::documents::sniff::OLE_MAGIC;
use crate::documents::sniff::PDF_MAGIC;
use crate::documents::sniff::ZIP_MAGIC;

const MIB: u64 = 1024 * 1024;
/// The extractor's limits (the host's `[documents]` defaults).
const MAX_FILE_BYTES: u64 = 32 * MIB;
const MEMORY_BYTES: u64 = 512 * MIB;
const CPU_SECS: u64 = 30;
const WALL: Duration = Duration::from_secs(45);
const MAX_OUTPUT_BYTES: u64 = 2 * MIB;
const MAX_PAGES: u32 = 500;
/// stderr kept: the status line is its last line.
const STDERR_KEEP: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DocArgs {
    path: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    max_chars: Option<usize>,
}

/// One extraction, kept for the next call on the same file (paging through it).
#[derive(Debug)]
struct Cached {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    doc: Arc<pages::Document>,
}

/// The last extracted document of this run.
#[derive(Debug, Clone, Default)]
pub struct DocumentCache(Arc<Mutex<Option<Cached>>>);

impl DocumentCache {
    fn get(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Arc<pages::Document>> {
        let slot = self.0.lock().ok()?;
        slot.as_ref()
            .filter(|c| c.path == path && c.len == meta.len() && c.modified == meta.modified().ok())
            .map(|c| Arc::clone(&c.doc))
    }

    fn put(&self, path: &Path, meta: &std::fs::Metadata, doc: Arc<pages::Document>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Cached {
                path: path.to_owned(),
                len: meta.len(),
                modified: meta.modified().ok(),
                doc,
            });
        }
    }
}

pub(super) async fn read_document(ctx: &ToolContext, a: DocArgs) -> Outcome {
    let path = ctx.fs.resolve(&a.path).map_err(|e| e.to_string())?;
    let shown = ctx.fs.display(&path);
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(format!("{shown} is empty (0 bytes)"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown} is {} bytes, over the {MAX_FILE_BYTES}-byte limit of read_document",
            meta.len()
        ));
    }
    let doc = match ctx.documents.get(&path, &meta) {
        Some(doc) => doc,
        None => {
            let head = read_head(&path)
                .await
                .map_err(|e| format!("{shown}: {e}"))?;
            let kind = kind_of(&head, &path).map_err(|e| format!("{shown}: {e}"))?;
            let (text, status) = extract(&ctx.extractor, &path, kind)
                .await
                .map_err(|e| format!("{shown}: {e}"))?;
            let doc = Arc::new(pages::Document::new(text, status));
            ctx.documents.put(&path, &meta, Arc::clone(&doc));
            doc
        }
    };
    let window = pages::Request {
        page: a.page,
        offset: a.offset.unwrap_or(0),
        max_chars: a
            .max_chars
            .unwrap_or(pages::DEFAULT_WINDOW_CHARS)
            .clamp(1, pages::MAX_WINDOW_CHARS),
    };
    doc.window(&shown, &window)
}

async fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = tokio::fs::File::open(path).await?;
    let mut head = Vec::with_capacity(8192);
    file.take(8192).read_to_end(&mut head).await?;
    Ok(head)
}

/// The kind to ask the extractor for: magic bytes first, the extension for the ZIP family and
/// for text. The extractor checks the bytes again.
pub(crate) fn kind_of(head: &[u8], path: &Path) -> Result<DocKind, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .and_then(DocKind::from_extension);
    if head.starts_with(PDF_MAGIC) {
        return Ok(DocKind::Pdf);
    }
    if head.starts_with(ZIP_MAGIC) {
        return Ok(ext.filter(|k| k.is_zip()).unwrap_or(DocKind::Office));
    }
    if head.starts_with(OLE_MAGIC) {
        return Ok(DocKind::Ole);
    }
    if head.contains(&0) {
        return Err("binary data of a type read_document does not read (it reads PDF, DOCX, XLSX, PPTX, HTML, Markdown, CSV and text)".to_owned());
    }
    let lower: String = String::from_utf8_lossy(&head[..head.len().min(512)])
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(match ext {
        Some(k) if k.is_text() || k == DocKind::Html => k,
        _ if lower.starts_with("<!doctype html") || lower.starts_with("<html") => DocKind::Html,
        _ => DocKind::Text,
    })
}

/// Kills the extractor's process group (it and `pdftotext`) when dropped.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `extractor extract ...` on `path`; the text and the status line when it succeeded.
async fn extract(
    extractor: &Path,
    path: &Path,
    kind: DocKind,
) -> Result<(String, StatusLine), String> {
    let args = ExtractArgs {
        kind,
        max_pages: MAX_PAGES,
        max_output_bytes: MAX_OUTPUT_BYTES,
        memory_bytes: MEMORY_BYTES,
        cpu_secs: CPU_SECS,
        path: path.to_string_lossy().into_owned(),
    };
    let mut child = tokio::process::Command::new(extractor)
        .args(args.to_argv())
        // Nothing of the runner's environment (its stdio hand-over, Landlock request) applies
        // to the extractor; PATH finds pdftotext.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the extractor {}: {e}", extractor.display()))?;
    let guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cap = usize::try_from(MAX_OUTPUT_BYTES).unwrap_or(usize::MAX) + 8192;
    let finished = tokio::time::timeout(WALL, async {
        let (out, err) = tokio::join!(read_capped(stdout, cap), read_tail(stderr, STDERR_KEEP));
        (out, err, child.wait().await)
    })
    .await;
    drop(guard);
    let Ok((out, err, status)) = finished else {
        return Err(format!(
            "over a limit: the extraction took longer than {} s and was stopped",
            WALL.as_secs()
        ));
    };
    let status = status.map_err(|e| format!("waiting for the extractor: {e}"))?;
    let stderr = String::from_utf8_lossy(&err);
    let line = StatusLine::find_in(&stderr);
    match (status.code(), line) {
        (Some(0), Some(s)) if s.status == ExtractStatus::Ok => {
            Ok((String::from_utf8_lossy(&out).into_owned(), s))
        }
        (_, Some(s)) => Err(describe_failure(&s)),
        (Some(134), None) => Err(format!(
            "over a limit: the extraction ran out of memory ({} MiB)",
            MEMORY_BYTES / MIB
        )),
        (Some(152), None) => Err(format!(
            "over a limit: the extraction used more than {CPU_SECS} s of CPU"
        )),
        (code, None) => {
            use std::os::unix::process::ExitStatusExt;
            Err(format!(
                "the extractor failed before it reported (exit code {code:?}, signal {:?})",
                status.signal()
            ))
        }
    }
}

fn describe_failure(s: &StatusLine) -> String {
    let detail: String = s
        .detail
        .as_deref()
        .unwrap_or("no detail")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    match s.status {
        ExtractStatus::Encrypted => "the document is password-protected".to_owned(),
        ExtractStatus::Unsupported => format!("unsupported: {detail}"),
        ExtractStatus::Malformed => format!("malformed: {detail}"),
        ExtractStatus::Limit => format!("over a limit: {detail}"),
        ExtractStatus::Empty => {
            "no text: the document contains no extractable text (a scan or images only? there is no OCR)".to_owned()
        }
        ExtractStatus::Ok | ExtractStatus::Internal => format!("extractor error: {detail}"),
    }
}

/// Reads everything, keeping the first `cap` bytes (the rest drained so the writer never
/// blocks).
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>, keep: usize) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
}

/// The provenance line of a result: which process parsed the document.
pub(crate) fn provenance(p: &ExtractorProcess) -> String {
    format!(
        "[parsed by the extractor child process: pid {}, uid {}, {}]",
        p.pid, p.uid, p.pid_ns
    )
}
