//! The ZIP pre-pass every Office file goes through before a parser opens it: entry count,
//! member names, the real inflated bytes of every member (declared sizes prove nothing), the
//! compression ratio, and no DOCTYPE or ENTITY in any XML part. Members are only counted,
//! never extracted to disk and never opened as archives themselves.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::io::Write;

use cambot_protocol::documents::DocKind;
use zip::ZipArchive;
use zip::result::ZipError;

use super::error::DocError;
use super::error::printable;
use super::limits::*;

/// An archive that passed the pre-pass, with the Office kind its parts say it is.
pub struct Package {
    pub archive: ZipArchive<File>,
    pub kind: DocKind,
    pub names: BTreeSet<String>,
}

pub fn open(path: &str, declared: DocKind) -> Result<Package, DocError> {
    let file = File::open(path).map_err(|e| DocError::io("cannot open the document", e))?;
    let mut archive = ZipArchive::new(file).map_err(|e| match e {
        ZipError::Io(e) => DocError::Malformed(format!("not a readable ZIP archive: {e}")),
        e => DocError::Malformed(format!("not a readable ZIP archive: {e}")),
    })?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(DocError::Limit(format!(
            "the archive has {} members (cap {MAX_ZIP_ENTRIES})",
            archive.len()
        )));
    }
    let mut names = BTreeSet::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| match e {
            ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED)
            | ZipError::InvalidPassword => DocError::Encrypted,
            e => DocError::Malformed(format!("archive member {i}: {e}")),
        })?;
        let name = entry
            .name()
            .map_err(|e| DocError::Malformed(format!("archive member {i}: {e}")))?
            .into_owned();
        check_name(&name)?;
        let shown = printable(&name);
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(DocError::Limit(format!(
                "archive member {shown} declares {} bytes (cap {MAX_ENTRY_BYTES}): a zip bomb?",
                entry.size()
            )));
        }
        let compressed = entry.compressed_size().max(1);
        let is_xml = name.ends_with(".xml") || name.ends_with(".rels");
        let mut sink = Scan::new(is_xml);
        let real = std::io::copy(&mut entry.take(MAX_ENTRY_BYTES + 1), &mut sink)
            .map_err(|e| DocError::Malformed(format!("archive member {shown}: {e}")))?;
        if real > MAX_ENTRY_BYTES {
            return Err(DocError::Limit(format!(
                "archive member {shown} inflates past {MAX_ENTRY_BYTES} bytes: a zip bomb"
            )));
        }
        if real > RATIO_FLOOR_BYTES && real / compressed >= MAX_RATIO {
            return Err(DocError::Limit(format!(
                "archive member {shown} inflates {}x ({real} bytes from {compressed}): a zip bomb",
                real / compressed
            )));
        }
        total += real;
        if total > MAX_TOTAL_BYTES {
            return Err(DocError::Limit(format!(
                "the archive inflates past {MAX_TOTAL_BYTES} bytes: a zip bomb"
            )));
        }
        if sink.found_dtd {
            return Err(DocError::Malformed(format!(
                "{shown}: a DOCTYPE or ENTITY declaration (DTDs and entities are refused)"
            )));
        }
        names.insert(name);
    }
    let kind = office_kind(&names)?;
    if declared != DocKind::Office && declared != kind {
        return Err(DocError::Unsupported(format!(
            "declared as {declared} but the archive is a {kind} document"
        )));
    }
    Ok(Package {
        archive,
        kind,
        names,
    })
}

/// Member names must be plain relative paths: no absolute path, no `..`, no control
/// characters (nothing is written to disk, but such a name is a sign of a hostile archive).
fn check_name(name: &str) -> Result<(), DocError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.starts_with('\\')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split(['/', '\\']).any(|c| c == "..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(DocError::Malformed(format!(
            "archive member {:?} has an unsafe name (absolute, `..` or control characters)",
            printable(name)
        )));
    }
    Ok(())
}

fn office_kind(names: &BTreeSet<String>) -> Result<DocKind, DocError> {
    let kind = if names.contains("word/document.xml") {
        DocKind::Docx
    } else if names.contains("xl/workbook.xml") {
        DocKind::Xlsx
    } else if names.contains("ppt/presentation.xml") {
        DocKind::Pptx
    } else if names.contains("mimetype") {
        return Err(DocError::Unsupported(
            "OpenDocument files (ODT/ODS/ODP) are not supported yet: save as DOCX/XLSX/PPTX"
                .to_owned(),
        ));
    } else {
        return Err(DocError::Unsupported(
            "a ZIP archive that is no Office document (DOCX, XLSX or PPTX)".to_owned(),
        ));
    };
    if !names.contains("[Content_Types].xml") {
        return Err(DocError::Malformed(
            "an Office package without [Content_Types].xml".to_owned(),
        ));
    }
    Ok(kind)
}

/// Counts bytes and looks for `<!DOCTYPE` / `<!ENTITY` (any case) across chunk borders.
struct Scan {
    xml: bool,
    tail: Vec<u8>,
    found_dtd: bool,
}

const NEEDLES: [&[u8]; 2] = [b"<!doctype", b"<!entity"];

impl Scan {
    fn new(xml: bool) -> Self {
        Self {
            xml,
            tail: Vec::new(),
            found_dtd: false,
        }
    }
}

impl Write for Scan {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.xml && !self.found_dtd {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(buf);
            self.found_dtd = window.windows(2).enumerate().any(|(i, w)| {
                w == b"<!"
                    && NEEDLES.iter().any(|n| {
                        window
                            .get(i..i + n.len())
                            .is_some_and(|s| s.eq_ignore_ascii_case(n))
                    })
            });
            let keep = window.len().min(8);
            self.tail = window[window.len() - keep..].to_vec();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
