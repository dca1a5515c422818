//! Document extraction, run inside the sandbox as `cambot-runner extract` (the host never parses
//! document bytes: ARCHITECTURE.md rule 6). The contract (arguments, the status line on stderr,
//! exit codes) is [`cambot_protocol::documents`]; the design and its measurements are in
//! `shared/reference/documents.md`.
//!
//! One module per format: [`pdf`] (poppler's `pdftotext` as a child), [`docx`] and [`pptx`] (an
//! own guarded XML walk), [`xlsx`] (calamine's streaming cell reader), [`html`] (html2text
//! behind a depth pre-scan), [`text`] (text, Markdown, CSV). Every Office file first passes
//! [`zipguard`]. The worker limits itself ([`apply_rlimits`]) before it reads a byte.

pub mod docx;
pub mod error;
pub mod html;
pub mod limits;
pub mod out;
pub mod pdf;
pub mod pptx;
pub mod sniff;
pub mod text;
pub mod xlsx;
pub mod xml;
pub mod zipguard;

use std::io::Read;
use std::io::Write;

use cambot_protocol::documents::DocKind;
use cambot_protocol::documents::ExtractArgs;
use cambot_protocol::documents::ExtractStatus;
use cambot_protocol::documents::StatusLine;

pub use error::DocError;
pub use out::Out;

/// Bytes of the file read for the re-sniff.
const HEAD_BYTES: usize = 8192;

/// Extracts `args.path` as `args.kind` into `out`. On [`DocError::OutputFull`] the text in `out`
/// is still the result (cut, with `out.truncated` saying why).
pub fn extract(args: &ExtractArgs, out: &mut Out) -> Result<(), DocError> {
    let path = args.path.as_str();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEAD_BYTES as u64).read_to_end(&mut head))
        .map_err(|e| DocError::io("cannot read the document", e))?;
    sniff::check(&head, args.kind)?;
    let whole = || std::fs::read(path).map_err(|e| DocError::io("cannot read the document", e));
    match args.kind {
        DocKind::Pdf => pdf::extract(path, args.max_pages, out, args.max_output_bytes),
        DocKind::Docx | DocKind::Xlsx | DocKind::Pptx | DocKind::Office => {
            let pkg = zipguard::open(path, args.kind)?;
            match pkg.kind {
                DocKind::Docx => docx::extract(pkg, out),
                DocKind::Pptx => pptx::extract(pkg, out),
                _ => {
                    drop(pkg);
                    xlsx::extract(path, out)
                }
            }
        }
        DocKind::Ole => Err(sniff::ole(&whole()?)),
        DocKind::Html => html::extract(&whole()?, out),
        DocKind::Text | DocKind::Markdown => text::extract_text(&whole()?, args.kind, out),
        DocKind::Csv => text::extract_csv(&whole()?, out),
    }
}

/// Sets the worker's own limits (inherited by `pdftotext`): address space, CPU seconds (soft;
/// the hard limit one second later, so the kernel sends SIGXCPU first), and no file writes.
pub fn apply_rlimits(memory_bytes: u64, cpu_secs: u64) -> Result<(), String> {
    use nix::sys::resource::Resource;
    use nix::sys::resource::setrlimit;
    if memory_bytes > 0 {
        setrlimit(Resource::RLIMIT_AS, memory_bytes, memory_bytes)
            .map_err(|e| format!("RLIMIT_AS: {e}"))?;
    }
    if cpu_secs > 0 {
        setrlimit(Resource::RLIMIT_CPU, cpu_secs, cpu_secs + 1)
            .map_err(|e| format!("RLIMIT_CPU: {e}"))?;
    }
    setrlimit(Resource::RLIMIT_FSIZE, 0, 0).map_err(|e| format!("RLIMIT_FSIZE: {e}"))
}

/// `cambot-runner extract ARGS`: the text on stdout, the status line on stderr; returns the
/// exit code. Nothing else is written on stderr, so the status is its last line.
pub fn main(args: &[String]) -> u8 {
    let status = match ExtractArgs::parse(args) {
        Err(e) => (
            StatusLine {
                status: ExtractStatus::Internal,
                format: None,
                parts: None,
                truncated: false,
                detail: Some(format!("bad arguments: {e}")),
                process: None,
            },
            None,
        ),
        Ok(args) => match apply_rlimits(args.memory_bytes, args.cpu_secs) {
            Err(e) => (
                StatusLine {
                    status: ExtractStatus::Internal,
                    format: None,
                    parts: None,
                    truncated: false,
                    detail: Some(format!("cannot set the limits: {e}")),
                    process: None,
                },
                None,
            ),
            Ok(()) => run(&args),
        },
    };
    let (mut line, text) = status;
    line.process = Some(whoami());
    let mut ok = true;
    if let Some(text) = text {
        let mut stdout = std::io::stdout().lock();
        ok = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok();
    }
    let _ = std::io::stderr()
        .lock()
        .write_all(line.to_line().as_bytes());
    if ok {
        line.status.exit_code()
    } else {
        ExtractStatus::Internal.exit_code()
    }
}

/// This process as it sees itself, for the status line.
fn whoami() -> cambot_protocol::documents::ExtractorProcess {
    cambot_protocol::documents::ExtractorProcess {
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        pid_ns: std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn run(args: &ExtractArgs) -> (StatusLine, Option<String>) {
    let cap = usize::try_from(args.max_output_bytes).unwrap_or(usize::MAX);
    let mut out = Out::new(cap);
    let result = extract(args, &mut out);
    let format = out.format.or(Some(args.kind));
    match result {
        Ok(()) | Err(DocError::OutputFull) => {
            if out.is_blank() && out.truncated.is_none() {
                return (failure(&DocError::Empty, format), None);
            }
            let mut text = out.text;
            if let Some(why) = &out.truncated {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("\n[truncated: {why}]\n"));
            }
            let line = StatusLine {
                status: ExtractStatus::Ok,
                format,
                parts: (out.parts > 0).then_some(out.parts),
                truncated: out.truncated.is_some(),
                detail: out.truncated,
                process: None,
            };
            (line, Some(text))
        }
        Err(e) => (failure(&e, format), None),
    }
}

fn failure(e: &DocError, format: Option<DocKind>) -> StatusLine {
    StatusLine {
        status: e.status(),
        format,
        parts: None,
        truncated: false,
        detail: Some(e.to_string()),
        process: None,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
