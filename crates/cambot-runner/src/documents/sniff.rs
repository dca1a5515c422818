//! The worker's own look at the bytes: the host's sniff is a claim to check, not a fact.

use cambot_protocol::documents::DocKind;

use super::error::DocError;

pub const PDF_MAGIC: &[u8] = b"%PDF-";
pub const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
pub const OLE_MAGIC: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";
const BINARY_MAGICS: &[(&[u8], &str)] = &[
    (PDF_MAGIC, "a PDF"),
    (ZIP_MAGIC, "a ZIP archive"),
    (OLE_MAGIC, "an OLE compound file"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
];

/// Checks that `head` (the first bytes of the file) can be the `declared` kind.
pub fn check(head: &[u8], declared: DocKind) -> Result<(), DocError> {
    if head.is_empty() {
        return Err(DocError::Malformed(
            "the file is empty (0 bytes)".to_owned(),
        ));
    }
    let mismatch = |what: &str| {
        DocError::Unsupported(format!("declared as {declared} but the bytes are {what}"))
    };
    let looks_like = || {
        BINARY_MAGICS
            .iter()
            .find(|(m, _)| head.starts_with(m))
            .map_or("not that format", |(_, what)| what)
    };
    match declared {
        DocKind::Pdf if !head.starts_with(PDF_MAGIC) => Err(mismatch(looks_like())),
        k if k.is_zip() && !head.starts_with(ZIP_MAGIC) => Err(mismatch(looks_like())),
        DocKind::Ole if !head.starts_with(OLE_MAGIC) => Err(mismatch(looks_like())),
        DocKind::Html | DocKind::Text | DocKind::Markdown | DocKind::Csv => {
            if let Some((_, what)) = BINARY_MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
                return Err(mismatch(what));
            }
            if head.contains(&0) {
                return Err(mismatch("binary data (NUL bytes)"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An OLE compound file is either a password-protected OOXML document (its stream is named
/// `EncryptedPackage`) or a legacy binary Office file; neither is read here.
pub fn ole(bytes: &[u8]) -> DocError {
    let name: Vec<u8> = "EncryptedPackage"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    if bytes.windows(name.len()).any(|w| w == name.as_slice()) {
        DocError::Encrypted
    } else {
        DocError::Unsupported(
            "a legacy binary Office file (.doc/.xls/.ppt): save it as DOCX, XLSX or PPTX"
                .to_owned(),
        )
    }
}
