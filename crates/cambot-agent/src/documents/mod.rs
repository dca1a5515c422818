//! Documents: text out of an untrusted file, extracted inside the group's own sandbox plan
//! (ARCHITECTURE.md rule 6: this process never parses document bytes and links no parser).
//!
//! The host checks the size, sniffs the magic bytes against an allowlist ([`sniff`]), stages a
//! copy read-only at `/input/document`, and runs `cambot-runner extract` as a one-shot run of
//! the group's plan, tightened ([`run`]): every mount read-only, no network, `RLIMIT_AS`,
//! `RLIMIT_CPU`, a wall-clock kill and an output cap. The extractor's exit code and status line
//! ([`cambot_protocol::documents`]) become one precise [`DocumentError`].

pub mod run;
pub mod sniff;

use cambot_protocol::documents::DocKind;
use serde::Deserialize;

pub use run::DocumentJob;
pub use run::extract_document;

/// `[documents]` of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// Largest file accepted, in MiB. Default 32.
    pub max_file_mb: u64,
    /// Address space of the extractor (`RLIMIT_AS`) and the run's memory limit, in MiB.
    /// Default 512.
    pub memory_mb: u64,
    /// CPU seconds of the extractor (and of `pdftotext`). Default 30.
    pub cpu_secs: u64,
    /// Wall-clock seconds before the whole run is killed. Default 45.
    pub wall_secs: u64,
    /// Bytes of text returned at most (a `[truncated: ...]` marker follows). Default 2 MiB.
    pub max_output_bytes: u64,
    /// PDF pages read at most. Default 500.
    pub max_pages: u32,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            max_file_mb: 32,
            memory_mb: 512,
            cpu_secs: 30,
            wall_secs: 45,
            max_output_bytes: 2 << 20,
            max_pages: 500,
        }
    }
}

/// Text extracted from a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Markdown-ish text: `## Page N` / `## Sheet: name` / `## Slide N` markers, `#` headings,
    /// Markdown tables. Untrusted model input, whatever its content.
    pub text: String,
    /// The format read (`docx` for an Office file sniffed as a ZIP).
    pub format: Option<DocKind>,
    /// Pages, sheets or slides in the text.
    pub parts: Option<u32>,
    /// Why the text stops early (page, cell or output cap), when it does.
    pub truncated: Option<String>,
}

/// Why a document yields no text. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("refused: the file is empty (0 bytes)")]
    EmptyFile,
    #[error(
        "refused: the file is {size} bytes, over the limit of {max} bytes ([documents] max_file_mb)"
    )]
    TooLarge { size: u64, max: u64 },
    #[error("refused: {0} is not a regular file")]
    NotAFile(String),
    #[error("refused: declared as {declared} but the bytes are {found}")]
    Mismatch {
        declared: DocKind,
        found: &'static str,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("password-protected: the document cannot be read without its password")]
    Encrypted,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("over a limit: {0}")]
    Limit(String),
    #[error(
        "no text: the document contains no extractable text (a scan or images only? there is no OCR)"
    )]
    NoText,
    #[error("over a limit: the extraction took longer than {0} s and was stopped")]
    Timeout(u64),
    #[error("over a limit: the extraction used more than {0} s of CPU")]
    CpuLimit(u64),
    #[error("over a limit: the extraction ran out of memory ({0} MiB)")]
    OutOfMemory(u64),
    #[error("internal error: the extractor crashed on this file (a bug; exit code {0})")]
    ExtractorCrashed(i32),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("sandbox failed: {0}")]
    SandboxFailed(String),
    #[error("cannot plan the sandbox: {0}")]
    Plan(#[from] cambot_sandbox::PlanError),
    #[error("cannot start the sandbox: {0}")]
    Sandbox(#[from] cambot_sandbox::SandboxError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DocumentError {
    /// The CLI's exit code: the extractor's codes (10 unsupported, 11 encrypted, 12 malformed,
    /// 13 over a limit, 14 no text, 70 internal), which the host's own refusals reuse.
    pub fn exit_code(&self) -> u8 {
        match self {
            DocumentError::Unsupported(_)
            | DocumentError::Mismatch { .. }
            | DocumentError::NotAFile(_) => 10,
            DocumentError::Encrypted => 11,
            DocumentError::Malformed(_) | DocumentError::EmptyFile => 12,
            DocumentError::Limit(_)
            | DocumentError::TooLarge { .. }
            | DocumentError::Timeout(_)
            | DocumentError::CpuLimit(_)
            | DocumentError::OutOfMemory(_) => 13,
            DocumentError::NoText => 14,
            DocumentError::ExtractorCrashed(_)
            | DocumentError::Internal(_)
            | DocumentError::SandboxFailed(_)
            | DocumentError::Plan(_)
            | DocumentError::Sandbox(_)
            | DocumentError::Io { .. } => 70,
        }
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DocumentError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A name or message made one printable line: control characters escaped, length bounded.
pub fn one_line(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max_chars)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}
