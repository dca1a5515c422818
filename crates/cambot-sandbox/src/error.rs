//! Errors of this crate.

use std::path::PathBuf;

/// Why a [`crate::RunPlan`] could not be built. An invalid extra mount is not a plan error: it is
/// dropped and recorded in [`crate::RunPlan::rejected_mounts`] (seed behaviour).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the runner binary {0} does not exist (build cambot-runner or set [sandbox] runner_path)"
    )]
    RunnerMissing(PathBuf),
    #[error(
        "the sandbox would run as uid 0; refusing (set [sandbox] sandbox_uid to a non-root uid)"
    )]
    RootUid,
    #[error("empty command")]
    EmptyCommand,
    #[error("invalid limit: {0}")]
    BadLimit(String),
}

/// Why one extra mount request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountRejection {
    #[error("no mount allowlist ({0}): every extra mount is refused")]
    NoAllowlist(String),
    #[error(
        "invalid container path {0:?}: use a relative path of [A-Za-z0-9._-] names, without `..` or `:`"
    )]
    BadContainerPath(String),
    #[error("host path {0:?} does not exist or cannot be resolved")]
    Unresolvable(String),
    #[error("host path {path} matches the blocked pattern {pattern:?}")]
    Blocked { path: PathBuf, pattern: String },
    #[error("host path {0} is not under any allowed root")]
    NotAllowed(PathBuf),
    #[error("host path {0} overlaps the cambot data directory or the allowlist file")]
    Protected(PathBuf),
}

/// Failures of a sandbox backend.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox backend is available: {0}")]
    Unavailable(String),
    #[error("spawning the sandbox failed: {0}")]
    Spawn(String),
    #[error("preparing host directories failed: {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker: {0}")]
    Docker(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
