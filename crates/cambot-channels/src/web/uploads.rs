//! Uploaded files: written as-is (never parsed on the host) under the session's uploads
//! directory, where the session's agent sees them as `/workspace/uploads/<id>/<name>`.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use axum::body::Bytes;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;

use crate::web::tokens::random_id;

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadInfo {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    /// Where the session's agent sees it.
    pub(crate) sandbox_path: String,
}

/// Why an upload could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upload task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Keeps `[A-Za-z0-9._-]`, replaces the rest, never starts with a dot, at most 100 characters.
pub(crate) fn sanitize_upload_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "upload".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Stores an upload in a new directory of the session's uploads area. File I/O runs on the
/// blocking pool, off the async threads.
pub(crate) async fn save_upload(
    layout: &DataLayout,
    tenant: &TenantId,
    folder: &GroupFolder,
    name: &str,
    bytes: Bytes,
) -> Result<UploadInfo, UploadError> {
    let uploads = layout.uploads_dir(tenant, folder);
    let name = sanitize_upload_name(name);
    tokio::task::spawn_blocking(move || write_upload(&uploads, &random_id(), &name, &bytes))
        .await
        .map_err(UploadError::Task)?
}

/// Writes `bytes` as `<uploads>/<id>/<name>` (`name` already sanitized).
fn write_upload(
    uploads: &Path,
    id: &str,
    name: &str,
    bytes: &[u8],
) -> Result<UploadInfo, UploadError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| UploadError::Io { what, path, source }
    };
    let dir = uploads.join(id);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let path = dir.join(name);
    // create_new refuses an existing file or symlink at the path.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io("creating", &path))?;
    file.write_all(bytes).map_err(io("writing", &path))?;
    Ok(UploadInfo {
        sandbox_path: format!("/workspace/uploads/{id}/{name}"),
        id: id.to_owned(),
        name: name.to_owned(),
        size: bytes.len() as u64,
    })
}

#[cfg(test)]
#[path = "uploads_tests.rs"]
mod tests;
