//! `[sandbox]` section of `cambot.toml`.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which backend runs agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// bwrap when it works, else Docker, else refuse to run agents.
    #[default]
    Auto,
    Bwrap,
    Docker,
}

/// Sandbox settings. Every field has a default, so an empty section is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub backend: BackendChoice,
    /// Memory limit per run (cgroup `memory.max`, Docker `--memory`; `RLIMIT_AS` when degraded).
    pub memory_mb: u64,
    /// Process limit per run (cgroup `pids.max`).
    pub pids: u64,
    /// CPU budget per run, in cores (cgroup `cpu.max`).
    pub cpus: f64,
    /// Size of the sandbox's `/tmp` tmpfs.
    pub tmp_size_mb: u64,
    /// Size of the sandbox's `/dev/shm` tmpfs (Docker `--shm-size`); Landlock keeps it
    /// read-only where it applies, the cap holds everywhere.
    pub shm_size_mb: u64,
    /// `RLIMIT_NOFILE` (soft and hard) inside the sandbox (Docker `--ulimit nofile`). At least
    /// 32, and no more than the daemon's own hard limit (lowering needs no privilege).
    pub open_files: u64,
    /// Bytes kept from stdout and from stderr (each) before truncation.
    pub output_cap_bytes: u64,
    /// Longest accepted stdout line; longer lines become an error event.
    pub max_line_bytes: usize,
    /// Hard wall-clock timeout; the effective one is `max(timeout, idle_timeout + 30 s)`.
    pub timeout_secs: u64,
    /// The host's idle close delay (seed `IDLE_TIMEOUT`), which the hard timeout must outlast.
    pub idle_timeout_secs: u64,
    /// Absolute run lifetime from its start; unlike the hard timeout, output does not extend it.
    pub max_run_secs: u64,
    /// `cambot-runner`; default: next to the current executable.
    pub runner_path: Option<PathBuf>,
    /// `cambot-sandbox-init` (Landlock shim); default: next to the current executable.
    pub init_path: Option<PathBuf>,
    /// `cambot-sandbox-launch` (warm launchers); default: next to the current executable.
    pub launcher_path: Option<PathBuf>,
    /// bwrap runs started by a launcher waiting in advance inside spare cgroups, so a start
    /// neither forks the daemon nor waits for a cgroup move; `0` forks each run directly.
    pub warm_launchers: usize,
    /// bwrap; default: `$CAMBOT_BWRAP`, else `bwrap` on `PATH`.
    pub bwrap_path: Option<PathBuf>,
    /// Extra-mount allowlist; default `~/.config/cambot/mount-allowlist.json` (outside the data
    /// dir, never mounted).
    pub allowlist_path: Option<PathBuf>,
    /// Docker API socket; default `$CAMBOT_DOCKER_SOCK`, else `$DOCKER_HOST`, else
    /// `/var/run/docker.sock`.
    pub docker_socket: Option<PathBuf>,
    /// Local image for the Docker backend (`cambot image build` creates it).
    pub docker_image: String,
    /// Uid/gid a root daemon gives to root-owned group folders and runs the sandbox as.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// Apply Landlock inside the sandbox when the kernel supports it. An agent run's runner
    /// confines itself (the init shim plays no part); an operator command or the local model
    /// server is confined by the init shim, so those also need it to exist.
    pub landlock: bool,
    /// Apply the seccomp filter.
    pub seccomp: bool,
    /// Use cgroups for the limits when this process may; `false` forces the rlimit fallback
    /// (and `limits_degraded`).
    pub cgroups: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            memory_mb: 1024,
            pids: 256,
            cpus: 1.0,
            tmp_size_mb: 64,
            shm_size_mb: 64,
            open_files: 256,
            output_cap_bytes: 10 * 1024 * 1024,
            max_line_bytes: 1024 * 1024,
            timeout_secs: 1800,
            idle_timeout_secs: 1800,
            max_run_secs: 1800,
            runner_path: None,
            init_path: None,
            launcher_path: None,
            warm_launchers: 2,
            bwrap_path: None,
            allowlist_path: None,
            docker_socket: None,
            docker_image: "cambot-agent:local".to_owned(),
            sandbox_uid: 10000,
            sandbox_gid: 10000,
            landlock: true,
            seccomp: true,
            cgroups: true,
        }
    }
}

fn sibling_of_current_exe(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `~` or `~/x` against `home`; other paths unchanged.
pub fn expand_tilde(path: &str, home: Option<&Path>) -> Option<PathBuf> {
    if path == "~" {
        return home.map(Path::to_path_buf);
    }
    if let Some(rest) = path.strip_prefix("~/") {
        return home.map(|h| h.join(rest));
    }
    if path.starts_with('~') {
        // `~user` forms are not supported: refusing is safer than guessing.
        return None;
    }
    Some(PathBuf::from(path))
}

/// `$HOME`, for `~` in allowlist and mount paths.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

impl SandboxConfig {
    pub fn runner_path(&self) -> PathBuf {
        self.runner_path
            .clone()
            .unwrap_or_else(|| sibling_of_current_exe("cambot-runner"))
    }

    pub fn init_path(&self) -> PathBuf {
        self.init_path
            .clone()
            .unwrap_or_else(|| sibling_of_current_exe("cambot-sandbox-init"))
    }

    pub fn launcher_path(&self) -> PathBuf {
        self.launcher_path
            .clone()
            .unwrap_or_else(|| sibling_of_current_exe("cambot-sandbox-launch"))
    }

    pub fn bwrap_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.bwrap_path {
            return Some(p.clone());
        }
        if let Some(p) = std::env::var_os("CAMBOT_BWRAP").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        find_in_path("bwrap")
    }

    pub fn allowlist_path(&self) -> PathBuf {
        match &self.allowlist_path {
            Some(p) => p
                .to_str()
                .and_then(|s| expand_tilde(s, home_dir().as_deref()))
                .unwrap_or_else(|| p.clone()),
            None => home_dir()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".config/cambot/mount-allowlist.json"),
        }
    }

    pub fn docker_socket(&self) -> PathBuf {
        if let Some(p) = &self.docker_socket {
            return p.clone();
        }
        if let Some(p) = std::env::var_os("CAMBOT_DOCKER_SOCK").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        if let Some(h) = std::env::var("DOCKER_HOST").ok()
            && let Some(p) = h.strip_prefix("unix://")
        {
            return PathBuf::from(p);
        }
        PathBuf::from("/var/run/docker.sock")
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
