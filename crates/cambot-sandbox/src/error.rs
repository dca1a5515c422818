//! Errors of this crate.

use std::path::PathBuf;
use std::sync::Arc;

/// A cause that is one of several types, or another process's answer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    #[error("host path {path} overlaps {protected}, which no mount may be, contain or enter")]
    Protected { path: PathBuf, protected: PathBuf },
    #[error(
        "host path {path} is mounted read-write but holds {inside}, which matches the blocked pattern {pattern:?} (mount it read-only or move that out)"
    )]
    BlockedInside {
        path: PathBuf,
        inside: PathBuf,
        pattern: String,
    },
    #[error("host path {path} is mounted read-write and cannot be listed to check it: {reason}")]
    Unlistable { path: PathBuf, reason: String },
    #[error(
        "host path {path} is outside every mount root of tenant {tenant} (rule: a group's extra mount must lie inside a mount root of its own tenant; see `cambot tenants allow-mount`)"
    )]
    OutsideTenantRoots { path: PathBuf, tenant: String },
    #[error(
        "host path {path} overlaps {other_root}, a mount root of tenant {other_tenant} (rule: another tenant's mount roots are its own; only a read-only mount of a read-only root may share them)"
    )]
    OtherTenantsRoot {
        path: PathBuf,
        other_tenant: String,
        other_root: PathBuf,
    },
    #[error(
        "mount root {path} of tenant {tenant} overlaps {other_root}, a mount root of tenant {other_tenant} (rule: two tenants' mount roots may overlap only when both are read-only)"
    )]
    TenantOverlap {
        path: PathBuf,
        tenant: String,
        other_tenant: String,
        other_root: PathBuf,
    },
    #[error(
        "mount root {path} cannot be read-write: the operator allowlist root {root} does not allow read-write"
    )]
    RootNotWritable { path: PathBuf, root: PathBuf },
    #[error("mount root {path} of tenant {tenant} is no longer valid: {reason}")]
    StaleTenantRoot {
        path: PathBuf,
        tenant: String,
        reason: Box<MountRejection>,
    },
}

/// Failures of a sandbox backend.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox backend is available: {0}")]
    Unavailable(String),
    /// A backend's program that could not be run.
    #[error("no sandbox backend is available: {program}: {source}")]
    ProgramUnavailable {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no sandbox backend is available: the Docker API does not answer: {0}")]
    DockerUnavailable(#[source] bollard::errors::Error),
    /// Neither backend works (`auto`). Both reasons are in the message; neither alone is the
    /// cause, so no source is named.
    #[error(
        "no sandbox backend is available: refusing to run agents. Install bubblewrap (apt-get install bubblewrap) or start Docker/Podman. bwrap: {bwrap}; docker: {docker}"
    )]
    NoBackend {
        bwrap: Box<SandboxError>,
        docker: Box<SandboxError>,
    },
    #[error("spawning the sandbox failed: {0}")]
    Spawn(String),
    /// Starting `program` failed, directly or as the warm launcher's answer (text from another
    /// process, hence boxed).
    #[error("spawning the sandbox failed: {program}: {source}")]
    SpawnProgram {
        program: PathBuf,
        #[source]
        source: BoxError,
    },
    /// A step of the spawn failed; `step` says which.
    #[error("spawning the sandbox failed: {step}: {source}")]
    SpawnStep {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spawning the sandbox failed: {0}")]
    SpawnIo(#[source] std::io::Error),
    /// A path or argument holding a NUL byte.
    #[error("spawning the sandbox failed: {0}")]
    Nul(#[source] std::ffi::NulError),
    /// A blocking step (host directories, the image rootfs) panicked or was cancelled.
    #[error("spawning the sandbox failed: {0}")]
    Blocking(#[source] tokio::task::JoinError),
    /// The seccomp filters cannot be compiled; shared because they are compiled once per
    /// process.
    #[error("spawning the sandbox failed: seccomp: {0}")]
    Seccomp(#[source] Arc<seccompiler::BackendError>),
    #[error("preparing host directories failed: {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker: {0}")]
    Docker(String),
    #[error("docker: {0}")]
    DockerApi(#[source] bollard::errors::Error),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
