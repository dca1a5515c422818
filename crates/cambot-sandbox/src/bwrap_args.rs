//! The bwrap argv derived from a [`RunPlan`] (ARCHITECTURE.md section 4): a tmpfs root built
//! from an allowlist, never `--ro-bind / /`.

use crate::error::SandboxError;
use crate::plan::MountMode;
use crate::plan::RunPlan;
use crate::plan::SystemEntry;

/// First descriptor number used for data handed to bwrap (`--ro-bind-data`, seccomp).
pub const FIRST_DATA_FD: i32 = 10;

/// bwrap's arguments plus the data it reads from inherited descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BwrapCommand {
    pub args: Vec<String>,
    /// (descriptor number in the child, contents).
    pub fds: Vec<(i32, Vec<u8>)>,
}

fn push(args: &mut Vec<String>, items: &[&str]) {
    args.extend(items.iter().map(|s| (*s).to_owned()));
}

/// The full bwrap invocation; `seccomp` are compiled programs (see [`crate::seccomp::programs`]).
pub fn bwrap_command(plan: &RunPlan, seccomp: &[Vec<u8>]) -> BwrapCommand {
    let mut args = Vec::new();
    let mut fds: Vec<(i32, Vec<u8>)> = Vec::new();
    let mut next_fd = FIRST_DATA_FD;
    push(
        &mut args,
        &[
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--hostname",
            "cambot",
        ],
    );
    for entry in &plan.system {
        match entry {
            SystemEntry::RoBind(p) => push(&mut args, &["--ro-bind", p, p]),
            SystemEntry::Symlink { path, target } => {
                push(&mut args, &["--symlink", target, path]);
            }
        }
    }
    push(&mut args, &["--proc", "/proc", "--dev", "/dev"]);
    let tmp = plan.limits.tmp_bytes.to_string();
    push(
        &mut args,
        &["--size", &tmp, "--perms", "1777", "--tmpfs", "/tmp"],
    );
    // `--dev` makes /dev/shm a directory of /dev's uncapped tmpfs: a run that Landlock does
    // not confine could fill the host's memory through it.
    let shm = plan.limits.shm_bytes.to_string();
    push(
        &mut args,
        &["--size", &shm, "--perms", "1777", "--tmpfs", "/dev/shm"],
    );
    for (path, content) in &plan.etc {
        let fd = next_fd.to_string();
        next_fd += 1;
        fds.push((next_fd - 1, content.as_bytes().to_vec()));
        push(&mut args, &["--ro-bind-data", &fd, path]);
    }
    for m in &plan.mounts {
        let flag = match (m.mode, m.optional) {
            (MountMode::ReadWrite, false) => "--bind",
            (MountMode::ReadWrite, true) => "--bind-try",
            (MountMode::ReadOnly, false) => "--ro-bind",
            (MountMode::ReadOnly, true) => "--ro-bind-try",
        };
        let src = m.src.to_string_lossy();
        push(&mut args, &[flag, &src, &m.dst]);
    }
    // Everything is mounted: the root tmpfs itself becomes read-only, so the only writable
    // places are the rw binds and the tmpfs mounts.
    push(&mut args, &["--remount-ro", "/"]);
    for (k, v) in &plan.env {
        push(&mut args, &["--setenv", k, v]);
    }
    push(&mut args, &["--chdir", &plan.cwd]);
    for prog in seccomp {
        let fd = next_fd.to_string();
        next_fd += 1;
        fds.push((next_fd - 1, prog.clone()));
        push(&mut args, &["--add-seccomp-fd", &fd]);
    }
    args.push("--".to_owned());
    args.extend(plan.full_command());
    BwrapCommand { args, fds }
}

impl BwrapCommand {
    /// The same command with every option moved into a descriptor read by `bwrap --args`:
    /// bwrap's argv names host paths (data dir, run dir) and the sandbox's pid 1 is a fork of
    /// bwrap, so whatever is on the command line is readable inside as `/proc/1/cmdline`.
    /// What stays visible is `--args N -- <command>`; bwrap closes the descriptor after
    /// reading it.
    pub fn hide_options(self) -> Self {
        let BwrapCommand { args, mut fds } = self;
        let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let (options, command) = args.split_at(split);
        let mut data = Vec::new();
        for o in options {
            data.extend_from_slice(o.as_bytes());
            data.push(0);
        }
        let fd = fds
            .iter()
            .map(|(f, _)| *f + 1)
            .max()
            .unwrap_or(FIRST_DATA_FD);
        fds.push((fd, data));
        let mut visible = vec!["--args".to_owned(), fd.to_string()];
        visible.extend(command.iter().cloned());
        BwrapCommand { args: visible, fds }
    }
}

/// Just the argv (seccomp descriptors included when the plan asks for seccomp). A filter that
/// does not compile is an error: a sandbox without it must not start.
pub fn bwrap_argv(plan: &RunPlan) -> Result<Vec<String>, SandboxError> {
    let progs = if plan.seccomp {
        crate::seccomp::programs(true).map_err(|e| SandboxError::Seccomp(std::sync::Arc::new(e)))?
    } else {
        Vec::new()
    };
    Ok(bwrap_command(plan, &progs).args)
}
