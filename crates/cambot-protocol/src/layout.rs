//! The on-disk layout of a data directory (ARCHITECTURE.md section 3). Every group-scoped path is
//! computed here from validated ids, so containment holds by construction: a [`TenantId`] or
//! [`GroupFolder`] cannot contain a separator or `..`, and [`DataLayout::contains`] double-checks
//! lexically for callers that build paths from other sources.
//!
//! ```text
//! <data_dir>/
//!   cambot.db
//!   tenants/<tenant>/groups/<folder>/        -> /workspace/group (rw)
//!   tenants/<tenant>/global/                 -> /workspace/global (ro)
//!   tenants/<tenant>/sessions/<folder>/      -> /workspace/session (rw)
//!   tenants/<tenant>/uploads/<folder>/<id>/  -> /workspace/uploads/<id> (ro)
//!   runs/<run-id>/                           -> /run/cambot (host.sock)
//!   vault/                                   never mounted
//! ```

use std::path::Component;
use std::path::Path;
use std::path::PathBuf;

use crate::ids::GroupFolder;
use crate::ids::RunId;
use crate::ids::TenantId;

/// Mount points inside every sandbox.
pub mod sandbox_paths {
    pub const WORKSPACE: &str = "/workspace";
    pub const GROUP: &str = "/workspace/group";
    pub const GLOBAL: &str = "/workspace/global";
    pub const SESSION: &str = "/workspace/session";
    pub const UPLOADS: &str = "/workspace/uploads";
    pub const EXTRA: &str = "/workspace/extra";
    pub const RUN_DIR: &str = "/run/cambot";
    pub const RUNNER_BIN: &str = "/opt/cambot/cambot-runner";
    /// Set for an agent run that confines itself with Landlock: the paths it may write,
    /// separated by `:` (everything else visible is read-only to it and its children).
    pub const ENV_LANDLOCK_RW: &str = "CAMBOT_LANDLOCK_RW";
    /// `in,out,err`: the descriptors that carry the runner's protocol stdin, stdout and its log,
    /// when the backend hands them over apart from bwrap's own stdio (bwrap's pid 1 keeps
    /// 0, 1 and 2 and is reachable from the tools; it closes every other descriptor). The
    /// runner moves them onto 0, 1 and 2 before anything else.
    pub const ENV_STDIO_FDS: &str = "CAMBOT_STDIO_FDS";
}

/// Paths under one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("cambot.db")
    }

    pub fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.root.join("tenants").join(tenant.as_str())
    }

    pub fn group_dir(&self, tenant: &TenantId, folder: &GroupFolder) -> PathBuf {
        self.tenant_dir(tenant).join("groups").join(folder.as_str())
    }

    pub fn global_dir(&self, tenant: &TenantId) -> PathBuf {
        self.tenant_dir(tenant).join("global")
    }

    pub fn sessions_dir(&self, tenant: &TenantId, folder: &GroupFolder) -> PathBuf {
        self.tenant_dir(tenant)
            .join("sessions")
            .join(folder.as_str())
    }

    pub fn uploads_dir(&self, tenant: &TenantId, folder: &GroupFolder) -> PathBuf {
        self.tenant_dir(tenant)
            .join("uploads")
            .join(folder.as_str())
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, run: &RunId) -> PathBuf {
        self.runs_dir().join(run.as_str())
    }

    pub fn vault_dir(&self) -> PathBuf {
        self.root.join("vault")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Lexical containment: `path` is `base` or below it, with no `..` or relative parts.
    /// Callers holding a real filesystem path should canonicalize first.
    pub fn contains(base: &Path, path: &Path) -> bool {
        if !path.is_absolute() || !base.is_absolute() {
            return false;
        }
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return false;
        }
        path.starts_with(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_architecture() {
        let l = DataLayout::new("/data");
        let t = TenantId::default_tenant();
        let f = GroupFolder::new("family-chat").unwrap();
        assert_eq!(
            l.group_dir(&t, &f),
            PathBuf::from("/data/tenants/default/groups/family-chat")
        );
        assert_eq!(
            l.global_dir(&t),
            PathBuf::from("/data/tenants/default/global")
        );
        assert_eq!(
            l.sessions_dir(&t, &f),
            PathBuf::from("/data/tenants/default/sessions/family-chat")
        );
        assert_eq!(l.database(), PathBuf::from("/data/cambot.db"));
        let run = RunId::from_bytes([1; 16]);
        assert_eq!(
            l.run_dir(&run),
            PathBuf::from("/data/runs/01010101010101010101010101010101")
        );
    }

    #[test]
    fn containment() {
        let base = Path::new("/data/tenants/default/groups");
        assert!(DataLayout::contains(
            base,
            Path::new("/data/tenants/default/groups/a")
        ));
        assert!(!DataLayout::contains(
            base,
            Path::new("/data/tenants/default/groups/../x")
        ));
        assert!(!DataLayout::contains(
            base,
            Path::new("/data/tenants/default/groupsx")
        ));
        assert!(!DataLayout::contains(base, Path::new("relative")));
    }
}
