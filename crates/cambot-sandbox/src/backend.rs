//! The backend seam: [`SandboxBackend`] starts a [`RunPlan`] and hands back a [`SandboxChild`].

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;

use crate::bwrap::BwrapBackend;
use crate::config::BackendChoice;
use crate::config::SandboxConfig;
use crate::docker::DockerBackend;
use crate::error::SandboxError;
use crate::plan::RunPlan;

/// A sandbox runtime.
pub trait SandboxBackend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts the plan. The child runs until it exits or [`SandboxChild::kill`].
    fn spawn(&self, plan: &RunPlan) -> BoxFuture<'_, Result<SandboxChild, SandboxError>>;
    /// Checks that the backend can run sandboxes here, and what it can enforce.
    fn probe(&self) -> BoxFuture<'_, Result<BackendReport, SandboxError>>;
}

/// What a backend found when probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    pub name: &'static str,
    pub version: String,
    /// Limits fall back to rlimits (no cgroup rights).
    pub limits_degraded: bool,
    /// Human-readable facts (cgroup version, Landlock ABI, seccomp, ...).
    pub details: Vec<(String, String)>,
}

/// How a run ended. [`SandboxChild::wait`] fills `code`, `signal` and `limits_degraded`;
/// [`crate::supervise`] fills the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by the hard timeout or the absolute lifetime.
    pub timed_out: bool,
    /// Killed by the absolute lifetime ([`crate::TimeoutPolicy::lifetime`]): never a clean
    /// finish, whatever it printed.
    pub lifetime_exceeded: bool,
    /// Killed on request ([`crate::KillSwitch`]).
    pub killed: bool,
    /// At least one stdout line arrived (a timeout after output is a clean finish).
    pub had_output: bool,
    pub limits_degraded: bool,
    /// The memory limit killed a process of the run.
    pub oom_killed: bool,
    /// stdout or stderr went over the output cap.
    pub output_truncated: bool,
    /// The last 200 characters of stderr, for error messages.
    pub stderr_tail: String,
}

impl ExitInfo {
    /// The seed's success rule: exit 0, or a timeout after output (idle cleanup).
    pub fn is_success(&self) -> bool {
        (self.code == Some(0) && !self.killed)
            || (self.timed_out && self.had_output && !self.lifetime_exceeded)
    }
}

/// Backend-specific wait/kill.
pub(crate) trait ChildControl: Send {
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitInfo, SandboxError>>;
    /// Kills every process of the run; idempotent.
    fn kill(&mut self) -> BoxFuture<'_, Result<(), SandboxError>>;
}

/// A started run.
pub struct SandboxChild {
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    pub limits_degraded: bool,
    /// Backend name, for logs.
    pub backend: &'static str,
    /// stdout and stderr are each cut after this many bytes (see [`crate::supervise`]).
    pub output_cap_bytes: u64,
    /// Longest stdout line passed on.
    pub max_line_bytes: usize,
    pub(crate) control: Box<dyn ChildControl>,
}

impl std::fmt::Debug for SandboxChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxChild")
            .field("backend", &self.backend)
            .field("limits_degraded", &self.limits_degraded)
            .finish_non_exhaustive()
    }
}

impl SandboxChild {
    /// Waits for the run to end (every process of it gone, cgroups removed).
    pub async fn wait(&mut self) -> Result<ExitInfo, SandboxError> {
        let mut info = self.control.wait().await?;
        info.limits_degraded = self.limits_degraded;
        Ok(info)
    }

    /// Kills the whole run (cgroup / pid namespace / container). Call [`Self::wait`] after.
    pub async fn kill(&mut self) -> Result<(), SandboxError> {
        self.control.kill().await
    }

    /// Takes stdin, leaving a sink: dropping the returned writer closes the child's stdin.
    pub fn take_stdin(&mut self) -> Box<dyn AsyncWrite + Send + Unpin> {
        std::mem::replace(&mut self.stdin, Box::new(tokio::io::sink()))
    }

    pub(crate) fn take_stdout(&mut self) -> Box<dyn AsyncRead + Send + Unpin> {
        std::mem::replace(&mut self.stdout, Box::new(tokio::io::empty()))
    }

    pub(crate) fn take_stderr(&mut self) -> Box<dyn AsyncRead + Send + Unpin> {
        std::mem::replace(&mut self.stderr, Box::new(tokio::io::empty()))
    }
}

/// Picks the backend the config asks for. `auto`: bwrap when it works, else Docker; with
/// neither, fails closed with what to install.
pub async fn select_backend(cfg: &SandboxConfig) -> Result<Arc<dyn SandboxBackend>, SandboxError> {
    let bwrap = || async {
        let b = BwrapBackend::new(cfg.clone())?;
        b.probe().await?;
        Ok::<_, SandboxError>(Arc::new(b) as Arc<dyn SandboxBackend>)
    };
    let docker = || async {
        let d = DockerBackend::connect(cfg.clone())?;
        d.probe().await?;
        d.cleanup_orphans().await;
        Ok::<_, SandboxError>(Arc::new(d) as Arc<dyn SandboxBackend>)
    };
    match cfg.backend {
        BackendChoice::Bwrap => bwrap().await,
        BackendChoice::Docker => docker().await,
        BackendChoice::Auto => match bwrap().await {
            Ok(b) => Ok(b),
            Err(be) => match docker().await {
                Ok(d) => {
                    tracing::info!(bwrap = %be, "bwrap unavailable; using Docker");
                    Ok(d)
                }
                Err(de) => Err(SandboxError::NoBackend {
                    bwrap: Box::new(be),
                    docker: Box::new(de),
                }),
            },
        },
    }
}
