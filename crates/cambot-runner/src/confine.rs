//! Landlock confinement: read and execute everywhere the process can see, write only beneath
//! the given paths (plus writes to existing `/dev` nodes), abstract Unix sockets and signals
//! scoped to the sandbox. Inherited by every child, and it cannot be lifted.
//!
//! Used two ways. `cambot-sandbox-init` applies it and then execs an operator's or the local
//! model's command. An agent run skips that extra program (one exec and one bind mount less at
//! every start): the plan sets [`ENV_LANDLOCK_RW`] and `cambot-runner` confines itself with
//! [`confine_from_env`] right after [`protect_self`], before it reads any input. Whether the
//! shim exists does not matter for an agent run.
//!
//! Landlock also scopes ptrace-class access (`/proc/<pid>/fd`, `/proc/<pid>/mem`,
//! `pidfd_getfd`) to the caller's own domain: the runner's tools cannot reach bwrap's pid 1,
//! which holds the runner's stdout too and is dumpable.

use landlock::ABI;
use landlock::Access;
use landlock::AccessFs;
use landlock::Ruleset;
use landlock::RulesetAttr;
use landlock::RulesetCreatedAttr;
use landlock::Scope;
use landlock::path_beneath_rules;

pub use cambot_protocol::layout::sandbox_paths::ENV_LANDLOCK_RW;
pub use cambot_protocol::layout::sandbox_paths::ENV_STDIO_FDS;
pub use landlock::RulesetError;
pub use landlock::RulesetStatus;

/// Restricts the calling process (and its future children) as described above.
pub fn restrict_self<P: AsRef<std::path::Path>>(rw: &[P]) -> Result<RulesetStatus, RulesetError> {
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(
            ["/dev"],
            AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::IoctlDev,
        ))?
        .add_rules(path_beneath_rules(rw, AccessFs::from_all(abi)))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Makes this process non-dumpable, so that nothing else in the sandbox (the bash tool's
/// processes run as the same uid) can open its descriptors through `/proc/<pid>/fd`, take them
/// with `pidfd_getfd`, or read or write `/proc/<pid>/mem`: a tool must not be able to write
/// its own protocol lines to the runner's stdout. Also marks every inherited descriptor above
/// stderr close-on-exec, so the tools get only their own stdio.
///
/// The flag is reset by `execve`, so the tools themselves stay ordinary processes.
pub fn protect_self(lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("cannot make the runner non-dumpable: {e}"))?;
    if let Some(spec) = lookup(ENV_STDIO_FDS) {
        adopt_stdio(&spec)?;
    }
    mark_inherited_cloexec().map_err(|e| format!("cannot mark descriptors close-on-exec: {e}"))
}

/// Moves the handed-over `in,out,err` descriptors onto 0, 1 and 2 (see [`ENV_STDIO_FDS`]).
fn adopt_stdio(spec: &str) -> Result<(), String> {
    let bad =
        || format!("{ENV_STDIO_FDS}={spec:?}: expected three descriptors above 2, `in,out,err`");
    let fds: Vec<i32> = spec
        .split(',')
        .map(|f| f.trim().parse::<i32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if fds.len() != 3 || fds.iter().any(|fd| *fd <= 2) {
        return Err(bad());
    }
    for (fd, target) in fds.iter().zip(0..) {
        nix::unistd::dup2(*fd, target)
            .map_err(|e| format!("{ENV_STDIO_FDS}: dup2({fd}, {target}): {e}"))?;
    }
    for fd in fds {
        // The same descriptor may be named twice (one pipe for out and err).
        match nix::unistd::close(fd) {
            Ok(()) | Err(nix::Error::EBADF) => {}
            Err(e) => return Err(format!("{ENV_STDIO_FDS}: close({fd}): {e}")),
        }
    }
    Ok(())
}

fn mark_inherited_cloexec() -> Result<(), nix::Error> {
    use nix::fcntl::FcntlArg;
    use nix::fcntl::FdFlag;
    use nix::fcntl::fcntl;
    let dir = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The directory's own descriptor is gone by now (EBADF): nothing to mark.
        match fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            Ok(_) | Err(nix::Error::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What [`confine_from_env`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Confinement {
    /// [`ENV_LANDLOCK_RW`] is not set: nothing asked for.
    NotRequested,
    /// Applied (fully, or partly on an older kernel ABI).
    Applied(RulesetStatus),
    /// Asked for but impossible here (no Landlock in this kernel, or the ruleset could not be
    /// built). The runner refuses to start: the plan asks only when the host saw a kernel with
    /// Landlock, so this is an anomaly, and without Landlock the tools could reach pid 1.
    Unavailable(String),
}

/// Applies the confinement the plan asked for through [`ENV_LANDLOCK_RW`].
pub fn confine_from_env(lookup: impl Fn(&str) -> Option<String>) -> Confinement {
    let Some(list) = lookup(ENV_LANDLOCK_RW) else {
        return Confinement::NotRequested;
    };
    let rw: Vec<&str> = list.split(':').filter(|p| !p.is_empty()).collect();
    match restrict_self(&rw) {
        Ok(RulesetStatus::NotEnforced) => {
            Confinement::Unavailable("the kernel does not enforce Landlock".to_owned())
        }
        Ok(status) => Confinement::Applied(status),
        Err(e) => Confinement::Unavailable(e.to_string()),
    }
}
