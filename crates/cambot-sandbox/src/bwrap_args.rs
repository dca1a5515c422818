//! The bwrap argv derived from a [`RunPlan`] (ARCHITECTURE.md section 4): a tmpfs root built
//! from an allowlist, never `--ro-bind / /`.

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

/// Just the argv (seccomp descriptors included when the plan asks for seccomp).
pub fn bwrap_argv(plan: &RunPlan) -> Vec<String> {
    let progs = if plan.seccomp {
        crate::seccomp::programs(true).unwrap_or_default()
    } else {
        Vec::new()
    };
    bwrap_command(plan, &progs).args
}
