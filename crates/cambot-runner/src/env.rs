//! Where the runner finds things. Inside a sandbox the defaults hold; tests running the binary
//! outside one point it elsewhere with two environment variables.

use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::HOST_SOCKET_PATH;
use cambot_protocol::layout::sandbox_paths;

/// Overrides the host socket path (default [`HOST_SOCKET_PATH`]).
pub const ENV_HOST_SOCKET: &str = "CAMBOT_HOST_SOCKET";
/// Overrides the workspace root (default `/workspace`).
pub const ENV_WORKSPACE: &str = "CAMBOT_WORKSPACE";

/// The runner's view of its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerEnv {
    pub host_socket: PathBuf,
    /// The workspace root: `group/`, `global/`, `session/` live below it.
    pub workspace: PathBuf,
}

impl RunnerEnv {
    /// Reads the overrides through `lookup` (the process environment in the binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        Self {
            host_socket: get(ENV_HOST_SOCKET)
                .map_or_else(|| PathBuf::from(HOST_SOCKET_PATH), PathBuf::from),
            workspace: get(ENV_WORKSPACE)
                .map_or_else(|| PathBuf::from(sandbox_paths::WORKSPACE), PathBuf::from),
        }
    }

    pub fn new(host_socket: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Self {
        Self {
            host_socket: host_socket.into(),
            workspace: workspace.into(),
        }
    }

    /// `/workspace/group`: the group's folder (rw) and the agent's cwd.
    pub fn group_dir(&self) -> PathBuf {
        self.workspace.join("group")
    }

    /// `/workspace/global`: the tenant's shared memory (ro).
    pub fn global_dir(&self) -> PathBuf {
        self.workspace.join("global")
    }

    /// `/workspace/session`: transcripts, one file per session (rw).
    pub fn session_dir(&self) -> PathBuf {
        self.workspace.join("session")
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_sandbox_paths_and_env_overrides_them() {
        let d = RunnerEnv::from_lookup(|_| None);
        assert_eq!(d.host_socket, PathBuf::from("/run/cambot/host.sock"));
        assert_eq!(d.group_dir(), PathBuf::from("/workspace/group"));
        assert_eq!(d.session_dir(), PathBuf::from("/workspace/session"));
        assert_eq!(d.global_dir(), PathBuf::from("/workspace/global"));
        let o = RunnerEnv::from_lookup(|k| match k {
            ENV_HOST_SOCKET => Some("/tmp/h.sock".into()),
            ENV_WORKSPACE => Some("/tmp/ws".into()),
            _ => None,
        });
        assert_eq!(o, RunnerEnv::new("/tmp/h.sock", "/tmp/ws"));
        let blank = RunnerEnv::from_lookup(|_| Some(" ".into()));
        assert_eq!(blank, d);
    }
}
