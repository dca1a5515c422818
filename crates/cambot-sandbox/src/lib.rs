//! # cambot-sandbox
//!
//! Runs one agent (or an operator command) in a sandbox that sees only its group's folders.
//!
//! - [`build_plan`] turns (tenant, group, is_main, run id, config, allowlist) into a
//!   [`RunPlan`]: mounts with modes, an environment allowlist, the uid, limits, network policy and
//!   timeouts. It is pure; every backend derives its invocation from it ([`bwrap_argv`],
//!   [`docker::container_spec`]).
//! - [`mounts`] is the extra-mount security of the seed (allowlist outside the data dir, realpath,
//!   per-component blocked patterns, relative container paths without `..` or `:`);
//!   [`tenant_mounts`] narrows it to each tenant's own mount roots.
//! - [`SandboxBackend`] starts a plan: [`BwrapBackend`] (default: tmpfs root, `/usr` read-only,
//!   no network, no capabilities, dropped uid, cgroup limits, seccomp, Landlock applied by
//!   `cambot-runner` to itself or, for other commands, by the `cambot-sandbox-init` shim, both
//!   built from the `cambot-runner` crate) and [`DockerBackend`] (bollard; Docker or Podman).
//! - [`supervise`] reads a child's stdout as capped JSON lines, enforces the output caps and the
//!   seed's timeout rules, and kills the whole run on timeout.
//!
//! What it is not: it does not speak the run protocol (the orchestrator does) and it never
//! handles credentials.

mod backend;
mod bwrap;
mod bwrap_args;
mod cgroup;
pub mod config;
pub mod docker;
pub mod docker_image;
mod error;
mod etc_dir;
#[doc(hidden)]
pub mod fuzzing;
pub mod launch;
mod locks;
pub mod mounts;
mod plan;
pub mod probe;
pub mod seccomp;
mod stage;
mod supervise;
pub mod tenant_mounts;

pub use backend::BackendReport;
pub use backend::ExitInfo;
pub use backend::SandboxBackend;
pub use backend::SandboxChild;
pub use backend::select_backend;
pub use bwrap::BwrapBackend;
pub use bwrap_args::BwrapCommand;
pub use bwrap_args::FIRST_DATA_FD;
pub use bwrap_args::bwrap_argv;
pub use bwrap_args::bwrap_command;
pub use config::BackendChoice;
pub use config::SandboxConfig;
pub use docker::DockerBackend;
pub use error::BoxError;
pub use error::MountRejection;
pub use error::PlanError;
pub use error::SandboxError;
pub use mounts::MountAllowlist;
pub use plan::*;
pub use supervise::EVENT_CAPACITY;
pub use supervise::KillSwitch;
pub use supervise::Supervised;
pub use supervise::SupervisorEvent;
pub use supervise::supervise;
pub use tenant_mounts::TenantMounts;
pub use tenant_mounts::TenantRoot;
