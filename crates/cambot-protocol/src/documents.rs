//! The contract between the host and the document extractor (`cambot-runner extract`), which
//! parses untrusted documents inside a sandbox (ARCHITECTURE.md rule 6).
//!
//! The host stages the file read-only at [`DOCUMENT_PATH`] and runs
//! `cambot-runner extract <args> /input/document` ([`ExtractArgs::to_argv`]). The extractor writes
//! the text (Markdown-ish, with page/sheet/heading markers) on stdout and, last, one
//! [`StatusLine`] on stderr, prefixed with [`STATUS_PREFIX`]; its exit code is
//! [`ExtractStatus::exit_code`]. The codes stay clear of bwrap's own failures (1) and of signals
//! (128 + n). The host trusts stdout only when the status is `ok`.

use serde::Deserialize;
use serde::Serialize;

/// The extractor's subcommand of `cambot-runner`.
pub const EXTRACT_SUBCOMMAND: &str = "extract";
/// Where the document is bound (read-only) inside the sandbox.
pub const DOCUMENT_PATH: &str = "/input/document";
/// Prefix of the status line on stderr.
pub const STATUS_PREFIX: &str = "cambot-extract-status: ";

/// A document type, as sniffed by the host and checked again by the extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Pdf,
    Docx,
    Xlsx,
    Pptx,
    /// A ZIP archive the host cannot tell apart (DOCX, XLSX or PPTX): the extractor decides.
    Office,
    /// An OLE compound file: a legacy `.doc`/`.xls` or a password-protected OOXML document.
    Ole,
    Html,
    Text,
    Markdown,
    Csv,
}

impl DocKind {
    pub const ALL: [DocKind; 10] = [
        DocKind::Pdf,
        DocKind::Docx,
        DocKind::Xlsx,
        DocKind::Pptx,
        DocKind::Office,
        DocKind::Ole,
        DocKind::Html,
        DocKind::Text,
        DocKind::Markdown,
        DocKind::Csv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Pdf => "pdf",
            DocKind::Docx => "docx",
            DocKind::Xlsx => "xlsx",
            DocKind::Pptx => "pptx",
            DocKind::Office => "office",
            DocKind::Ole => "ole",
            DocKind::Html => "html",
            DocKind::Text => "text",
            DocKind::Markdown => "markdown",
            DocKind::Csv => "csv",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a file name's extension declares, if it names one.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "pdf" => DocKind::Pdf,
            "docx" => DocKind::Docx,
            "xlsx" => DocKind::Xlsx,
            "pptx" => DocKind::Pptx,
            "doc" | "xls" | "ppt" => DocKind::Ole,
            "html" | "htm" | "xhtml" => DocKind::Html,
            "txt" | "text" | "log" => DocKind::Text,
            "md" | "markdown" => DocKind::Markdown,
            "csv" => DocKind::Csv,
            _ => return None,
        })
    }

    /// The kind a declared MIME type names (parameters such as `; charset=` ignored).
    pub fn from_mime(mime: &str) -> Option<Self> {
        let mime = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(match mime.as_str() {
            "application/pdf" => DocKind::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                DocKind::Docx
            }
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => DocKind::Xlsx,
            "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
                DocKind::Pptx
            }
            "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => {
                DocKind::Ole
            }
            "text/html" | "application/xhtml+xml" => DocKind::Html,
            "text/plain" => DocKind::Text,
            "text/markdown" | "text/x-markdown" => DocKind::Markdown,
            "text/csv" => DocKind::Csv,
            _ => return None,
        })
    }

    /// Plain-text kinds: the bytes are UTF-8 text whatever the extension says.
    pub fn is_text(self) -> bool {
        matches!(self, DocKind::Text | DocKind::Markdown | DocKind::Csv)
    }

    /// Kinds stored in a ZIP archive.
    pub fn is_zip(self) -> bool {
        matches!(
            self,
            DocKind::Docx | DocKind::Xlsx | DocKind::Pptx | DocKind::Office
        )
    }
}

impl std::fmt::Display for DocKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an extraction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractStatus {
    Ok,
    /// Not a format the extractor reads (or the bytes disagree with the declared type).
    Unsupported,
    /// Password-protected.
    Encrypted,
    /// Broken or hostile structure (truncated, bad XML, DOCTYPE, unsafe archive member names).
    Malformed,
    /// A limit was reached (zip bomb, nesting depth, entry count).
    Limit,
    /// Parsed, but no text (a scan or image-only PDF: no OCR).
    Empty,
    /// A bug or an I/O failure of the extractor itself.
    Internal,
}

impl ExtractStatus {
    pub fn exit_code(self) -> u8 {
        match self {
            ExtractStatus::Ok => 0,
            ExtractStatus::Unsupported => 10,
            ExtractStatus::Encrypted => 11,
            ExtractStatus::Malformed => 12,
            ExtractStatus::Limit => 13,
            ExtractStatus::Empty => 14,
            ExtractStatus::Internal => 70,
        }
    }

    pub fn from_exit_code(code: i32) -> Option<Self> {
        [
            ExtractStatus::Ok,
            ExtractStatus::Unsupported,
            ExtractStatus::Encrypted,
            ExtractStatus::Malformed,
            ExtractStatus::Limit,
            ExtractStatus::Empty,
            ExtractStatus::Internal,
        ]
        .into_iter()
        .find(|s| i32::from(s.exit_code()) == code)
    }
}

/// The extractor's last stderr line (after [`STATUS_PREFIX`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLine {
    pub status: ExtractStatus,
    /// The format actually read (`docx` for an `office` candidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DocKind>,
    /// Pages (PDF), sheets (XLSX) or slides (PPTX) in the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// The text stops early (page, cell or output cap); stdout ends with a marker saying so.
    #[serde(default)]
    pub truncated: bool,
    /// One line saying what went wrong (never document text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The extractor as it saw itself: where the parsing ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ExtractorProcess>,
}

/// The extractor process as it sees itself (its pid and uid, its pid namespace as
/// `/proc/self/ns/pid` names it): tells a caller in which sandbox the parsing ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractorProcess {
    pub pid: u32,
    pub uid: u32,
    /// e.g. `pid:[4026532570]`; empty when `/proc` is not mounted.
    pub pid_ns: String,
}

impl StatusLine {
    /// The whole line, prefix and newline included.
    pub fn to_line(&self) -> String {
        // Serialising plain data cannot fail; a fallback keeps the contract anyway.
        let json = serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"status":"internal","truncated":false}"#.to_owned());
        format!("{STATUS_PREFIX}{json}\n")
    }

    /// The status in a stderr capture: the last line carrying [`STATUS_PREFIX`].
    pub fn find_in(stderr: &str) -> Option<Self> {
        stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(STATUS_PREFIX))
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

/// The extractor's arguments (after the subcommand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractArgs {
    /// What the host sniffed (and the file name declared).
    pub kind: DocKind,
    /// PDF pages read at most (`pdftotext -l`).
    pub max_pages: u32,
    /// Bytes of text written at most (a marker follows when cut).
    pub max_output_bytes: u64,
    /// `RLIMIT_AS` the extractor sets on itself before it reads a byte (0: none).
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` soft limit in seconds (hard = soft + 1; 0: none).
    pub cpu_secs: u64,
    pub path: String,
}

impl ExtractArgs {
    /// argv after the program name.
    pub fn to_argv(&self) -> Vec<String> {
        vec![
            EXTRACT_SUBCOMMAND.to_owned(),
            "--kind".to_owned(),
            self.kind.as_str().to_owned(),
            "--max-pages".to_owned(),
            self.max_pages.to_string(),
            "--max-output".to_owned(),
            self.max_output_bytes.to_string(),
            "--memory".to_owned(),
            self.memory_bytes.to_string(),
            "--cpu-secs".to_owned(),
            self.cpu_secs.to_string(),
            self.path.clone(),
        ]
    }

    /// Parses argv after the subcommand.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut kind = None;
        let (mut max_pages, mut max_output, mut memory, mut cpu) = (500, 2 << 20, 0, 0);
        let mut path = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let number = |name: &str, v: String| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name}: not a number: {v:?}"))
            };
            match a.as_str() {
                "--kind" => {
                    let v = value("--kind")?;
                    kind = Some(DocKind::parse(&v).ok_or_else(|| format!("unknown kind {v:?}"))?);
                }
                "--max-pages" => {
                    let v = number("--max-pages", value("--max-pages")?)?;
                    max_pages = u32::try_from(v).map_err(|_| "--max-pages too large".to_owned())?;
                }
                "--max-output" => max_output = number("--max-output", value("--max-output")?)?,
                "--memory" => memory = number("--memory", value("--memory")?)?,
                "--cpu-secs" => cpu = number("--cpu-secs", value("--cpu-secs")?)?,
                p if !p.starts_with("--") && path.is_none() => path = Some(p.to_owned()),
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        Ok(Self {
            kind: kind.ok_or("--kind is required")?,
            max_pages: max_pages.max(1),
            max_output_bytes: max_output.max(1),
            memory_bytes: memory,
            cpu_secs: cpu,
            path: path.ok_or("the document path is required")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_status_lines_are_found_last() {
        let args = ExtractArgs {
            kind: DocKind::Office,
            max_pages: 7,
            max_output_bytes: 1234,
            memory_bytes: 512 << 20,
            cpu_secs: 30,
            path: DOCUMENT_PATH.to_owned(),
        };
        let argv = args.to_argv();
        assert_eq!(argv[0], EXTRACT_SUBCOMMAND);
        assert_eq!(ExtractArgs::parse(&argv[1..]), Ok(args));
        assert!(ExtractArgs::parse(&["--kind".to_owned(), "exe".to_owned()]).is_err());

        let line = StatusLine {
            status: ExtractStatus::Limit,
            format: Some(DocKind::Docx),
            parts: None,
            truncated: false,
            detail: Some("zip bomb".to_owned()),
            process: Some(ExtractorProcess {
                pid: 3,
                uid: 1000,
                pid_ns: "pid:[4026532570]".to_owned(),
            }),
        };
        let stderr = format!("noise\n{}trailing noise\n", line.to_line());
        assert_eq!(StatusLine::find_in(&stderr), Some(line));
        assert_eq!(StatusLine::find_in("no status here"), None);
        for s in [
            ExtractStatus::Ok,
            ExtractStatus::Internal,
            ExtractStatus::Empty,
        ] {
            assert_eq!(
                ExtractStatus::from_exit_code(i32::from(s.exit_code())),
                Some(s)
            );
        }
        assert_eq!(ExtractStatus::from_exit_code(1), None);
    }
}
