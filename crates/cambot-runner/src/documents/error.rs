//! Why an extraction failed, mapped one-to-one onto the contract's status.

use cambot_protocol::documents::ExtractStatus;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// Not a format this extractor reads, or bytes that disagree with the declared type.
    #[error("{0}")]
    Unsupported(String),
    #[error("the document is password-protected")]
    Encrypted,
    /// Broken or hostile structure.
    #[error("{0}")]
    Malformed(String),
    /// A cap was reached (zip bomb, nesting, entry count).
    #[error("{0}")]
    Limit(String),
    /// Parsed, but no text in it.
    #[error("the document contains no text (a scan or images only? no OCR here)")]
    Empty,
    /// The output cap was reached: not an error, the text so far is kept (see `Out`).
    #[error("output cap reached")]
    OutputFull,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The extractor's own failure (a missing tool in the image, a bug).
    #[error("{0}")]
    Internal(String),
}

impl DocError {
    pub fn status(&self) -> ExtractStatus {
        match self {
            DocError::Unsupported(_) => ExtractStatus::Unsupported,
            DocError::Encrypted => ExtractStatus::Encrypted,
            DocError::Malformed(_) => ExtractStatus::Malformed,
            DocError::Limit(_) => ExtractStatus::Limit,
            DocError::Empty => ExtractStatus::Empty,
            DocError::OutputFull => ExtractStatus::Ok,
            DocError::Io { .. } | DocError::Internal(_) => ExtractStatus::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DocError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A name from inside a document (an archive member, a sheet) made safe for a one-line
/// message: control characters escaped, length bounded.
pub(crate) fn printable(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(120)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > 120 {
        s.push('…');
    }
    s
}
