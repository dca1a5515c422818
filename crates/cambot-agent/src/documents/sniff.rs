//! The host's only look at a document: its size and its magic bytes (the `infer` crate on the
//! first 8 KiB) against an allowlist, and the declared type checked against them. Nothing here
//! parses the document; the sandboxed extractor checks the bytes again.

use cambot_protocol::documents::DocKind;

use super::DocumentError;

/// Bytes read for the sniff.
pub const SNIFF_BYTES: usize = 8192;

const OLE_MAGIC: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";

/// What the bytes are, as far as magic numbers tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Pdf,
    Zip,
    Ole,
    Html,
    /// UTF-8 text without a binary signature.
    Text,
}

impl Family {
    fn describe(self) -> &'static str {
        match self {
            Family::Pdf => "a PDF",
            Family::Zip => "a ZIP archive (Office document)",
            Family::Ole => "an OLE compound file (legacy or password-protected Office)",
            Family::Html => "HTML",
            Family::Text => "plain text",
        }
    }

    fn accepts(self, kind: DocKind) -> bool {
        match self {
            Family::Pdf => kind == DocKind::Pdf,
            Family::Zip => kind.is_zip(),
            // A password-protected DOCX/XLSX/PPTX is an OLE file, whatever its extension.
            Family::Ole => kind == DocKind::Ole || kind.is_zip(),
            Family::Html => kind == DocKind::Html || kind.is_text(),
            Family::Text => kind.is_text() || kind == DocKind::Html,
        }
    }
}

/// The kind to hand to the extractor, from the file's first bytes and its declared type (an
/// explicit one, else the one its name's extension implies).
pub fn sniff(head: &[u8], declared: Option<DocKind>) -> Result<DocKind, DocumentError> {
    if head.is_empty() {
        return Err(DocumentError::EmptyFile);
    }
    let family = family(head)?;
    let Some(declared) = declared else {
        return Ok(match family {
            Family::Pdf => DocKind::Pdf,
            Family::Zip => DocKind::Office,
            Family::Ole => DocKind::Ole,
            Family::Html => DocKind::Html,
            Family::Text => DocKind::Text,
        });
    };
    if !family.accepts(declared) {
        return Err(DocumentError::Mismatch {
            declared,
            found: family.describe(),
        });
    }
    Ok(match family {
        Family::Ole => DocKind::Ole,
        // HTML detected by its signature is read as HTML even when named `.txt`.
        Family::Html if declared.is_text() && declared != DocKind::Text => declared,
        Family::Html => DocKind::Html,
        _ => declared,
    })
}

fn family(head: &[u8]) -> Result<Family, DocumentError> {
    if head.starts_with(OLE_MAGIC) {
        return Ok(Family::Ole);
    }
    if let Some(t) = infer::get(head) {
        let mime = t.mime_type();
        return match mime {
            "application/pdf" => Ok(Family::Pdf),
            "application/zip"
            | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
                Ok(Family::Zip)
            }
            m if m.starts_with("application/vnd.oasis.opendocument") => Ok(Family::Zip),
            "text/html" => Ok(Family::Html),
            // XML is text to the reader: it is passed through, never parsed.
            "text/xml" | "application/xml" if is_text(head) => Ok(Family::Text),
            other => Err(DocumentError::Unsupported(format!(
                "{other} ({}) is not a supported document type",
                describe_mime(t.matcher_type())
            ))),
        };
    }
    if is_text(head) {
        Ok(Family::Text)
    } else {
        Err(DocumentError::Unsupported(
            "binary data of an unknown type is not a supported document".to_owned(),
        ))
    }
}

fn describe_mime(t: infer::MatcherType) -> &'static str {
    match t {
        infer::MatcherType::App => "an executable or application file",
        infer::MatcherType::Archive => "an archive",
        infer::MatcherType::Audio => "audio",
        infer::MatcherType::Book => "an e-book",
        infer::MatcherType::Doc => "a document",
        infer::MatcherType::Font => "a font",
        infer::MatcherType::Image => "an image",
        infer::MatcherType::Text => "text",
        infer::MatcherType::Video => "video",
        infer::MatcherType::Custom => "a file",
    }
}

/// UTF-8 without NUL bytes; the last character may be cut by the sniff window.
fn is_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_and_a_disagreeing_declaration_is_refused() {
        assert_eq!(sniff(b"%PDF-1.4\n", None).ok(), Some(DocKind::Pdf));
        assert_eq!(
            sniff(b"PK\x03\x04rest", Some(DocKind::Docx)).ok(),
            Some(DocKind::Docx)
        );
        assert_eq!(
            sniff(b"# Title\n", Some(DocKind::Markdown)).ok(),
            Some(DocKind::Markdown)
        );
        assert_eq!(
            sniff(b"a,b\n1,2\n", Some(DocKind::Csv)).ok(),
            Some(DocKind::Csv)
        );
        assert_eq!(sniff(b"hello", None).ok(), Some(DocKind::Text));
        assert!(matches!(sniff(b"", None), Err(DocumentError::EmptyFile)));
        assert!(matches!(
            sniff(b"%PDF-1.4\n", Some(DocKind::Docx)),
            Err(DocumentError::Mismatch { .. })
        ));
        assert!(matches!(
            sniff(
                b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0",
                Some(DocKind::Pdf)
            ),
            Err(DocumentError::Unsupported(_))
        ));
        assert!(matches!(
            sniff(b"\x00\x01\x02binary", None),
            Err(DocumentError::Unsupported(_))
        ));
        // "é" cut in half by the window is still text.
        assert!(is_text(b"caf\xc3"));
    }
}
