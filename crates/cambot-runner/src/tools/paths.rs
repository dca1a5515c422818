//! Confinement of every file tool to the workspace root. The model names paths the way it sees
//! them inside the sandbox (`/workspace/group/notes.md`, or relative to `/workspace/group`);
//! the runner maps them onto the real root (the same place inside a sandbox, a temp dir in
//! tests), rejects anything outside, resolves symlinks and checks again.

use std::path::Component;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::layout::sandbox_paths;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("{0} is outside the workspace ({ws})", ws = sandbox_paths::WORKSPACE)]
    Outside(String),
    #[error("{0} climbs out of the workspace with '..'")]
    Escape(String),
    #[error("{0} resolves (through a symlink) to a place outside the workspace")]
    SymlinkEscape(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The workspace root, canonical, and the directory relative paths start from.
#[derive(Debug, Clone)]
pub struct Confinement {
    root: PathBuf,
    cwd: PathBuf,
}

impl Confinement {
    /// `root` must exist; relative paths resolve against `root/group`.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        let cwd = root.join("group");
        Ok(Self { root, cwd })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Resolves a model-supplied path to a real path inside the root. The path need not exist
    /// (writes), but every existing part of it is resolved through symlinks and must stay
    /// inside.
    pub fn resolve(&self, input: &str) -> Result<PathBuf, PathError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        let given = Path::new(trimmed);
        let relative: PathBuf = if given.is_absolute() {
            if let Ok(rest) = given.strip_prefix(sandbox_paths::WORKSPACE) {
                rest.to_path_buf()
            } else if let Ok(rest) = given.strip_prefix(&self.root) {
                rest.to_path_buf()
            } else {
                return Err(PathError::Outside(trimmed.to_owned()));
            }
        } else {
            self.cwd
                .strip_prefix(&self.root)
                .unwrap_or(Path::new(""))
                .join(given)
        };
        // Lexical normalisation relative to the root: '..' may never climb above it.
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in relative.components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escape(trimmed.to_owned()));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Outside(trimmed.to_owned()));
                }
            }
        }
        let lexical: PathBuf = parts.iter().fold(self.root.clone(), |p, c| p.join(c));
        self.check_real(&lexical, trimmed)
    }

    /// Resolves symlinks in the longest existing prefix of `path` and checks containment.
    fn check_real(&self, path: &Path, shown: &str) -> Result<PathBuf, PathError> {
        let mut existing = path.to_path_buf();
        let mut tail: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match std::fs::symlink_metadata(&existing) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                        break;
                    };
                    tail.push(name);
                    if !existing.pop() {
                        break;
                    }
                }
                Err(source) => {
                    return Err(PathError::Io {
                        path: shown.to_owned(),
                        source,
                    });
                }
            }
        }
        let real = std::fs::canonicalize(&existing).map_err(|e| {
            // A dangling symlink: its target cannot be checked, so it is refused.
            if e.kind() == std::io::ErrorKind::NotFound {
                PathError::SymlinkEscape(shown.to_owned())
            } else {
                PathError::Io {
                    path: shown.to_owned(),
                    source: e,
                }
            }
        })?;
        if !real.starts_with(&self.root) {
            return Err(PathError::SymlinkEscape(shown.to_owned()));
        }
        Ok(tail.iter().rev().fold(real, |p, c| p.join(c)))
    }

    /// A real path as the model sees it (`/workspace/...`).
    pub fn display(&self, real: &Path) -> String {
        match real.strip_prefix(&self.root) {
            Ok(rest) if rest.as_os_str().is_empty() => sandbox_paths::WORKSPACE.to_owned(),
            Ok(rest) => format!("{}/{}", sandbox_paths::WORKSPACE, rest.display()),
            Err(_) => real.display().to_string(),
        }
    }

    /// Whether a real path (e.g. found while walking a directory) is inside the root once its
    /// symlinks are resolved.
    pub fn contains_real(&self, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(&self.root))
    }
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
