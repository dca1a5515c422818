//! Attachments from every channel: stored under the group's uploads directory
//! (`tenants/<t>/uploads/<folder>/<id>/file.<ext>`, mounted read-only at `/workspace/uploads`
//! into that group's runs only), never parsed here. The host generates the file name, keeps the
//! sender's name and declared type as metadata only, sniffs the type from the magic bytes (the
//! same `infer` sniff as documents), refuses to follow or replace a symlink, and enforces a
//! per-file and a per-group quota.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::Attachment;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::StoredAttachment;
use cambot_protocol::TenantId;
use cambot_protocol::documents::DocKind;
use cambot_protocol::layout::sandbox_paths;
use serde::Deserialize;

use crate::documents::sniff::SNIFF_BYTES;

const MIB: u64 = 1024 * 1024;
/// The metadata file beside each upload (the sender's name, the types, the size).
pub const META_FILE: &str = "upload.toml";
/// Entries of a group's uploads directory counted for the quota at most (a bound on the walk).
const MAX_QUOTA_WALK: usize = 100_000;

/// `[uploads]` of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Largest attachment accepted, in MiB. Default 25.
    pub max_file_mb: u64,
    /// All attachments of one group together, in MiB. Default 500.
    pub max_group_mb: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_file_mb: 25,
            max_group_mb: 500,
        }
    }
}

/// Why an attachment was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error(
        "the file is {} MiB, over the limit of {} MiB per file",
        mib(*size),
        mib(*max)
    )]
    TooLarge { size: u64, max: u64 },
    #[error(
        "this conversation's uploads would take {} MiB, over its quota of {} MiB (uploads already stored: {} MiB)",
        mib(used + size),
        mib(*max),
        mib(*used)
    )]
    Quota { used: u64, size: u64, max: u64 },
    #[error("unknown attachment {0:?}")]
    Unknown(String),
    #[error("refused: {0} is a symlink or not a directory")]
    Unsafe(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl UploadError {
    /// Refusals the sender caused (size, quota) rather than the host.
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            UploadError::TooLarge { .. } | UploadError::Quota { .. }
        )
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        UploadError::Io {
            context: context.into(),
            source,
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB as f64)
}

/// The uploads of every group, one writer at a time (the quota check and the write are one
/// step).
#[derive(Debug)]
pub struct Uploads {
    layout: DataLayout,
    cfg: UploadsConfig,
    lock: tokio::sync::Mutex<()>,
}

impl Uploads {
    pub fn new(layout: DataLayout, cfg: UploadsConfig) -> Self {
        Self {
            layout,
            cfg,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Stores one attachment for `(tenant, folder)`.
    pub async fn store(
        &self,
        tenant: &TenantId,
        folder: &GroupFolder,
        attachment: Attachment,
    ) -> Result<StoredAttachment, UploadError> {
        let size = attachment.bytes.len() as u64;
        if size == 0 {
            return Err(UploadError::Empty);
        }
        let max = self.cfg.max_file_mb.saturating_mul(MIB);
        if size > max {
            return Err(UploadError::TooLarge { size, max });
        }
        let dir = self.layout.uploads_dir(tenant, folder);
        let quota = self.cfg.max_group_mb.saturating_mul(MIB);
        let _writer = self.lock.lock().await;
        tokio::task::spawn_blocking(move || write(&dir, attachment, quota))
            .await
            .map_err(|e| UploadError::io("the upload task", std::io::Error::other(e)))?
    }

    /// A stored attachment's metadata, by id, within `(tenant, folder)` only.
    pub async fn lookup(
        &self,
        tenant: &TenantId,
        folder: &GroupFolder,
        id: &str,
    ) -> Result<StoredAttachment, UploadError> {
        if !valid_id(id) {
            return Err(UploadError::Unknown(id.chars().take(40).collect()));
        }
        let meta = self
            .layout
            .uploads_dir(tenant, folder)
            .join(id)
            .join(META_FILE);
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let text = read_nofollow(&meta).map_err(|_| UploadError::Unknown(id.clone()))?;
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| toml::from_str::<StoredAttachment>(t).ok())
                .filter(|s| s.id == id)
                .ok_or(UploadError::Unknown(id))
        })
        .await
        .map_err(|e| UploadError::io("the lookup task", std::io::Error::other(e)))?
    }
}

/// Generated ids: 32 lower-case hex digits.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// The uploads directory, created if missing; neither it nor any created part may be a
/// symlink.
fn ensure_dir(dir: &Path) -> Result<(), UploadError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| UploadError::io(format!("cannot create {}", dir.display()), e))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| UploadError::io(format!("cannot stat {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(UploadError::Unsafe(dir.display().to_string()));
    }
    Ok(())
}

/// Bytes stored under `dir` (files only; symlinks are not followed, and count as nothing).
fn used_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_QUOTA_WALK {
                return total;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    total += e.metadata().map_or(0, |m| m.len());
                }
                _ => {}
            }
        }
    }
    total
}

fn write(dir: &Path, a: Attachment, quota: u64) -> Result<StoredAttachment, UploadError> {
    ensure_dir(dir)?;
    let size = a.bytes.len() as u64;
    let used = used_bytes(dir);
    if used.saturating_add(size) > quota {
        return Err(UploadError::Quota {
            used,
            size,
            max: quota,
        });
    }
    let head = &a.bytes[..a.bytes.len().min(SNIFF_BYTES)];
    // The last path component only: a sender's directories mean nothing here.
    let base = a.name.rsplit(['/', '\\']).next().unwrap_or_default();
    let original_name = clean(base, 200);
    let declared_type = a.declared_type.as_deref().map(|t| clean(t, 100));
    let sniffed = sniff(head, &original_name, declared_type.as_deref());
    let id = new_id();
    let own = dir.join(&id);
    // create_dir fails on anything already there, a symlink included.
    std::fs::create_dir(&own)
        .map_err(|e| UploadError::io(format!("cannot create {}", own.display()), e))?;
    let file_name = format!("file.{}", sniffed.extension);
    create_new(&own.join(&file_name), &a.bytes, 0o444)?;
    let stored = StoredAttachment {
        sandbox_path: format!("{}/{id}/{file_name}", sandbox_paths::UPLOADS),
        id,
        original_name,
        declared_type,
        sniffed_type: sniffed.mime,
        document: sniffed.document,
        size,
        stored_at: chrono::Utc::now().to_rfc3339(),
    };
    let meta = toml::to_string(&stored)
        .map_err(|e| UploadError::io("encoding the metadata", std::io::Error::other(e)))?;
    create_new(&own.join(META_FILE), meta.as_bytes(), 0o444)?;
    Ok(stored)
}

/// Writes a new file: `O_CREAT|O_EXCL|O_NOFOLLOW`, so an existing file or symlink at the path
/// is never opened, let alone replaced.
fn create_new(path: &PathBuf, bytes: &[u8], mode: u32) -> Result<(), UploadError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)
        .map_err(|e| UploadError::io(format!("cannot create {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| UploadError::io(format!("cannot write {}", path.display()), e))
}

fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mut buf = Vec::new();
    (&mut f).take(64 * 1024).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A sender-supplied string made safe to keep and show: control characters (and bidi
/// overrides) dropped, length bounded.
pub fn clean(s: &str, max_chars: usize) -> String {
    let out: String = s
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(max_chars)
        .collect();
    let out = out.trim().to_owned();
    if out.is_empty() {
        "unnamed".to_owned()
    } else {
        out
    }
}

/// What the bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub mime: String,
    pub document: Option<DocKind>,
    /// The generated file name's extension.
    pub extension: String,
}

/// The host's sniff: `infer` on the first bytes, text when it is UTF-8; the declared name and
/// type only choose among what the bytes allow (a `.md` text file), never override them.
pub fn sniff(head: &[u8], name: &str, declared_type: Option<&str>) -> Sniffed {
    let declared_kind = declared_type.and_then(DocKind::from_mime).or_else(|| {
        Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(DocKind::from_extension)
    });
    let document = crate::documents::sniff::sniff(head, declared_kind)
        .or_else(|_| crate::documents::sniff::sniff(head, None))
        .ok();
    let (mime, extension) = match (infer::get(head), document) {
        (_, Some(DocKind::Docx)) => (DOCX_MIME.to_owned(), "docx".to_owned()),
        (_, Some(DocKind::Xlsx)) => (XLSX_MIME.to_owned(), "xlsx".to_owned()),
        (_, Some(DocKind::Pptx)) => (PPTX_MIME.to_owned(), "pptx".to_owned()),
        (_, Some(k)) if k.is_text() || k == DocKind::Html => {
            let (mime, ext) = match k {
                DocKind::Markdown => ("text/markdown", "md"),
                DocKind::Csv => ("text/csv", "csv"),
                DocKind::Html => ("text/html", "html"),
                _ => ("text/plain", "txt"),
            };
            (mime.to_owned(), ext.to_owned())
        }
        (Some(t), _) => (t.mime_type().to_owned(), t.extension().to_owned()),
        (None, Some(DocKind::Ole)) => ("application/x-ole-storage".to_owned(), "ole".to_owned()),
        (None, _) => ("application/octet-stream".to_owned(), "bin".to_owned()),
    };
    let extension = if extension.bytes().all(|b| b.is_ascii_alphanumeric()) && !extension.is_empty()
    {
        extension
    } else {
        "bin".to_owned()
    };
    Sniffed {
        mime,
        document,
        extension,
    }
}

const DOCX_MIME: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX_MIME: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";

/// The lines the agent sees below a message's text, one per attachment.
pub fn describe(attachments: &[StoredAttachment]) -> String {
    attachments
        .iter()
        .map(|a| {
            let kind = a.document.map_or_else(String::new, |k| {
                format!(" ({k}; read it with read_document)")
            });
            let declared = a
                .declared_type
                .as_deref()
                .filter(|d| !d.eq_ignore_ascii_case(&a.sniffed_type))
                .map_or_else(String::new, |d| format!(", declared {d}"));
            format!(
                "[attachment: {} — {}{kind}, {} bytes, sent as {:?}{declared}]",
                a.sandbox_path, a.sniffed_type, a.size, a.original_name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[path = "uploads_tests.rs"]
mod tests;
