//! Mount security for extra mounts (seed-spec section 5, with its fixes): an allowlist file
//! outside the data dir, re-read for every plan (a missing or broken file is never cached),
//! `~` expansion, realpath, blocked patterns matched per path component, relative container
//! paths without `..` or `:`, read-only unless the root allows write and the group may write.
//! A read-write mount is also refused when a blocked name sits directly inside it; nothing may
//! overlap the protected paths (data dir, config file, cambot binary, allowlist file).

use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::message::AdditionalMount;
use serde::Deserialize;

use crate::config::expand_tilde;
use crate::error::MountRejection;

/// Always blocked, whatever the file says (seed defaults).
pub const DEFAULT_BLOCKED: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllowlistFile {
    allowed_roots: Vec<AllowedRootFile>,
    blocked_patterns: Vec<String>,
    non_main_read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllowedRootFile {
    path: String,
    #[serde(default)]
    allow_read_write: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

/// One allowed root, as written (expanded and resolved at validation time: a root that does not
/// exist yet is skipped, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoot {
    pub path: String,
    pub allow_read_write: bool,
}

/// The loaded allowlist, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountAllowlist {
    pub roots: Vec<AllowedRoot>,
    /// Defaults plus the file's patterns.
    pub blocked: Vec<String>,
    pub non_main_read_only: bool,
    /// `None` when loaded; otherwise why every extra mount is refused.
    pub unavailable: Option<String>,
    /// Paths no mount may be, contain or lie inside: the data dir, the config file, the
    /// cambot binary and the allowlist file itself.
    pub protected: Vec<PathBuf>,
}

impl MountAllowlist {
    /// No allowlist: every extra mount is refused.
    pub fn none(reason: impl Into<String>) -> Self {
        Self {
            roots: Vec::new(),
            blocked: DEFAULT_BLOCKED.iter().map(|s| (*s).to_owned()).collect(),
            non_main_read_only: true,
            unavailable: Some(reason.into()),
            protected: Vec::new(),
        }
    }

    /// Parses the seed's JSON shape (`allowedRoots`, `blockedPatterns`, `nonMainReadOnly`).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let file: AllowlistFile = serde_json::from_str(text)?;
        let mut blocked: Vec<String> = DEFAULT_BLOCKED.iter().map(|s| (*s).to_owned()).collect();
        for p in file.blocked_patterns {
            let p = p.trim().to_owned();
            if !p.is_empty() && !blocked.contains(&p) {
                blocked.push(p);
            }
        }
        Ok(Self {
            roots: file
                .allowed_roots
                .into_iter()
                .map(|r| AllowedRoot {
                    path: r.path,
                    allow_read_write: r.allow_read_write,
                })
                .collect(),
            blocked,
            non_main_read_only: file.non_main_read_only,
            unavailable: None,
            protected: Vec::new(),
        })
    }

    /// Reads the file now. Call it for every plan: a file created or fixed later takes effect
    /// on the next run, never cached as a failure. `protected` paths (the data dir, the config
    /// file) can never be mounted; the allowlist file and this process's executable (the
    /// cambot binary, symlinks resolved) are added to them.
    pub fn load(path: &Path, protected: &[&Path]) -> Self {
        let mut list = match std::fs::read_to_string(path) {
            Ok(text) => match Self::from_json(&text) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "mount allowlist is invalid; extra mounts refused");
                    Self::none(format!("{} is invalid: {e}", path.display()))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::none(format!("{} does not exist", path.display()))
            }
            Err(e) => Self::none(format!("{} cannot be read: {e}", path.display())),
        };
        list.protected = protected.iter().map(|p| p.to_path_buf()).collect();
        list.protected.push(path.to_path_buf());
        match std::env::current_exe().and_then(std::fs::canonicalize) {
            Ok(exe) => list.protected.push(exe),
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve the cambot binary to protect it from mounts")
            }
        }
        list
    }

    /// Adds a path that no mount may overlap.
    pub fn with_protected(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }
}

/// An extra mount that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedMount {
    /// Real host path (symlinks resolved).
    pub host_path: PathBuf,
    /// Relative path under `/workspace/extra`.
    pub container_rel: String,
    pub readonly: bool,
}

/// `[A-Za-z0-9._-]` components joined by `/`; no `.`/`..`, no empty component, not absolute.
pub fn valid_container_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 255
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        })
}

/// The first pattern that equals a path component (case-insensitive); a pattern with `/` must
/// match consecutive components. Substrings never match: `token` does not block `tokenizer`.
pub fn blocked_pattern<'a>(path: &Path, patterns: &'a [String]) -> Option<&'a str> {
    let comps: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().to_lowercase()),
            _ => None,
        })
        .collect();
    patterns.iter().map(String::as_str).find(|pat| {
        let parts: Vec<String> = pat
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase)
            .collect();
        !parts.is_empty() && comps.windows(parts.len()).any(|w| w == parts.as_slice())
    })
}

pub(crate) fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub(crate) fn realpath(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// Validates one request in the seed's order. `home` expands `~`.
pub fn validate_mount(
    req: &AdditionalMount,
    allowlist: &MountAllowlist,
    is_main: bool,
    home: Option<&Path>,
) -> Result<ValidatedMount, MountRejection> {
    if let Some(reason) = &allowlist.unavailable {
        return Err(MountRejection::NoAllowlist(reason.clone()));
    }
    let container_rel = match &req.container_path {
        Some(c) => c.clone(),
        None => Path::new(req.host_path.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !valid_container_path(&container_rel) {
        return Err(MountRejection::BadContainerPath(container_rel));
    }
    let expanded = expand_tilde(&req.host_path, home)
        .filter(|p| p.is_absolute())
        .ok_or_else(|| MountRejection::Unresolvable(req.host_path.clone()))?;
    // Patterns are checked on the path as written and on the real path, so a symlink named
    // harmlessly that points into `.ssh` is refused, and so is a `.ssh` link to elsewhere.
    if let Some(pattern) = blocked_pattern(&expanded, &allowlist.blocked) {
        return Err(MountRejection::Blocked {
            path: expanded,
            pattern: pattern.to_owned(),
        });
    }
    let real =
        realpath(&expanded).ok_or_else(|| MountRejection::Unresolvable(req.host_path.clone()))?;
    if let Some(pattern) = blocked_pattern(&real, &allowlist.blocked) {
        return Err(MountRejection::Blocked {
            path: real,
            pattern: pattern.to_owned(),
        });
    }
    // Both directions: a mount inside the data dir reaches other groups' files, and a mount of
    // one of its parents exposes all of it (the plan's own mounts never come through here).
    for prot in &allowlist.protected {
        let prot_real = realpath(prot).unwrap_or_else(|| prot.clone());
        if overlaps(&real, &prot_real) || overlaps(&real, prot) {
            return Err(MountRejection::Protected {
                path: real,
                protected: prot.clone(),
            });
        }
    }
    let root = allowlist
        .roots
        .iter()
        .filter_map(|r| {
            let root_path = expand_tilde(&r.path, home)?;
            Some((realpath(&root_path)?, r.allow_read_write))
        })
        .find(|(root, _)| real.starts_with(root));
    let Some((_, root_rw)) = root else {
        return Err(MountRejection::NotAllowed(real));
    };
    let wants_rw = req.readonly == Some(false);
    let group_may_write = is_main || !allowlist.non_main_read_only;
    let readonly = !(wants_rw && group_may_write && root_rw);
    if !readonly {
        blocked_one_level_down(&real, &allowlist.blocked)?;
    }
    Ok(ValidatedMount {
        host_path: real,
        container_rel,
        readonly,
    })
}

/// A read-write mount must not hold a blocked name directly inside it (a project root with
/// its own `.env` or `.ssh/`): the run could read and rewrite it. Read-only mounts are not
/// scanned: only the mounted path itself is matched, as before.
pub(crate) fn blocked_one_level_down(
    real: &Path,
    blocked: &[String],
) -> Result<(), MountRejection> {
    if !real.is_dir() {
        return Ok(());
    }
    let unlistable = |e: std::io::Error| MountRejection::Unlistable {
        path: real.to_path_buf(),
        reason: e.to_string(),
    };
    for entry in std::fs::read_dir(real).map_err(unlistable)? {
        let name = entry.map_err(unlistable)?.file_name();
        if let Some(pattern) = blocked_pattern(Path::new(&name), blocked) {
            return Err(MountRejection::BlockedInside {
                path: real.to_path_buf(),
                inside: real.join(&name),
                pattern: pattern.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
