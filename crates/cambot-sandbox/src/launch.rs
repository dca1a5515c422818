//! Pre-placed launchers: small processes started ahead of time, each already inside a spare run
//! cgroup, that wait for a run's bwrap command and exec it.
//!
//! Why: moving a process into a cgroup takes the kernel's cgroup threadgroup lock, which on a
//! default host waits for an RCU grace period: 7-15 ms when no other move happened in the last
//! few milliseconds, which is how a daemon starts agents. A launcher pays that before the run is
//! asked for, so a start renames the spare cgroup, writes the limits and sends one message; the
//! daemon does not fork either.
//!
//! The launcher then takes exactly the steps of the direct path's `pre_exec`
//! (`child_setup`: mount staging, data descriptors, rlimits, uid drop, parent-death signal)
//! and execs bwrap, so both paths build the same sandbox. Protocol on the control socket
//! (descriptor [`CONTROL_FD`] in the launcher): the daemon writes one JSON `LaunchOrder` and
//! shuts down its write side; the launcher answers nothing and execs (its end is close-on-exec,
//! so the daemon reads end-of-file), or writes why it could not and exits 127. End-of-file
//! before any order means the pool retired it: it exits 0.

use std::convert::Infallible;
use std::io::Read;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;

use serde::Deserialize;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::process::ChildStderr;
use tokio::process::ChildStdin;
use tokio::process::ChildStdout;

use crate::cgroup::CgroupPool;
use crate::error::BoxError;
use crate::error::SandboxError;
use crate::stage::Stage;
use crate::stage::StagedMount;

/// Where the launcher finds its control socket.
pub const CONTROL_FD: i32 = 3;
/// Exit code of a launcher that could not carry out its order.
const ORDER_FAILED: u8 = 127;
/// Largest order a launcher accepts (seccomp programs are a few KiB).
const MAX_ORDER_BYTES: u64 = 4 * 1024 * 1024;
/// How much of a program's file name the kernel keeps as the process name (`TASK_COMM_LEN`
/// less its terminating NUL).
const COMM_LEN: usize = 15;

/// What the launcher does: the run's bwrap command and the steps before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LaunchOrder {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// (descriptor number, contents): each becomes a memfd at that number.
    pub data_fds: Vec<(i32, Vec<u8>)>,
    /// Mount staging of a root daemon (see [`crate::stage`]).
    pub stage: Option<Vec<StagedMount>>,
    /// (`RLIMIT_*`, value), applied as both soft and hard limit.
    pub rlimits: Vec<(u32, u64)>,
    /// (uid, gid) to become before exec.
    pub drop_to: Option<(u32, u32)>,
    /// Where the run's stdin, stdout and stderr go instead of 0, 1 and 2 (which get
    /// `/dev/null`): see [`stdio_moves`].
    pub stdio: Option<[i32; 3]>,
}

/// The steps between fork (or the launcher's order) and exec, in this order: mount staging
/// (as root), data descriptors into place, rlimits, uid drop, parent-death signal.
///
/// # Safety
/// Only raw syscalls on data prepared beforehand, so that it may run between fork and exec.
pub(crate) unsafe fn child_setup(
    stage: Option<&Stage>,
    moves: &[(i32, i32)],
    rlimits: &[(u32, u64)],
    drop_to: Option<(u32, u32)>,
) -> std::io::Result<()> {
    // SAFETY: each callee only makes raw syscalls (the caller's contract).
    unsafe {
        if let Some(stage) = stage {
            stage.enter()?;
        }
        place_fds(moves)?;
        for (res, val) in rlimits {
            let lim = libc::rlimit {
                rlim_cur: *val,
                rlim_max: *val,
            };
            // Lowering a limit cannot fail for lack of rights; a failure here means the value
            // is invalid, which we would rather know.
            if libc::setrlimit(*res as libc::__rlimit_resource_t, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some((uid, gid)) = drop_to {
            drop_privileges(uid, gid)?;
        }
        // After the uid change, which clears it: the sandbox dies with the daemon.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    Ok(())
}

/// `setgroups([])`, `setresgid`, `setresuid`: a root daemon becomes the run's uid.
pub(crate) fn drop_privileges(uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: plain syscalls with no pointers except the empty group list.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Moves each source descriptor to its target number without clobbering a source that sits on
/// another target: first everything above the targets, then into place.
unsafe fn place_fds(moves: &[(i32, i32)]) -> std::io::Result<()> {
    let max_target = moves.iter().map(|(_, t)| *t).max().unwrap_or(2);
    let mut staged = [0i32; 256];
    if moves.len() > staged.len() {
        return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
    }
    for (i, (src, _)) in moves.iter().enumerate() {
        // SAFETY: fcntl on a descriptor this process owns.
        let fd = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, max_target + 1) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        staged[i] = fd;
    }
    for (i, (_, target)) in moves.iter().enumerate() {
        // SAFETY: dup2 onto a number this process reserves; the copy has no CLOEXEC.
        if unsafe { libc::dup2(staged[i], *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The moves that hand this process's stdin, stdout and stderr (the run's pipes) over on `to`
/// and leave `/dev/null` (`null`) on 0, 1 and 2 for bwrap itself: bwrap's pid 1 keeps 0, 1
/// and 2 for the whole run and the tools can reach it (it is dumpable), while it closes every
/// other descriptor and the command inherits them (see [`crate::plan::RUNNER_STDIO_FDS`]).
/// bwrap's own messages (a failed mount) are lost that way; the runner's log is not.
pub(crate) fn stdio_moves(null: i32, to: [i32; 3]) -> [(i32, i32); 6] {
    [
        (0, to[0]),
        (1, to[1]),
        (2, to[2]),
        (null, 0),
        (null, 1),
        (null, 2),
    ]
}

/// `/dev/null` for reading and writing (close-on-exec), for [`stdio_moves`].
pub(crate) fn dev_null() -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
}

/// A sealed-off in-memory file holding `data`, positioned at its start (close-on-exec).
pub(crate) fn memfd_with(data: &[u8]) -> Result<std::os::fd::OwnedFd, SandboxError> {
    use std::io::Seek;
    // SAFETY: a NUL-terminated name and valid flags; the result is checked.
    let raw = unsafe { libc::memfd_create(c"cambot-sandbox".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let mut f = std::fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) });
    f.write_all(data)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(std::os::fd::OwnedFd::from(f))
}

/// The launcher process's whole life (the `cambot-sandbox-launch` binary calls only this).
/// Never writes to stdout or stderr: they already belong to the run.
pub fn launcher_main() -> std::process::ExitCode {
    // SAFETY: fcntl only queries the descriptor number.
    if unsafe { libc::fcntl(CONTROL_FD, libc::F_GETFD) } < 0 {
        // Started by hand: there is no run whose output this could spoil.
        let _ = std::io::stderr().write_all(
            b"cambot-sandbox-launch: no control socket on descriptor 3; the bwrap backend starts this program itself\n",
        );
        return std::process::ExitCode::from(2);
    }
    // SAFETY: the daemon placed the control socket at this number (`WarmLauncher::start`) and
    // nothing else in this process owns it.
    let mut control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    // Closed by exec, so the daemon reads end-of-file exactly when bwrap is running.
    // SAFETY: fcntl on the descriptor just adopted.
    unsafe { libc::fcntl(CONTROL_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut order = Vec::new();
    if let Err(e) = (&mut control).take(MAX_ORDER_BYTES).read_to_end(&mut order) {
        let _ = write!(control, "reading the launch order: {e}");
        return std::process::ExitCode::from(ORDER_FAILED);
    }
    if order.is_empty() {
        return std::process::ExitCode::SUCCESS;
    }
    let Err(why) = carry_out(&order);
    let _ = control.write_all(why.as_bytes());
    std::process::ExitCode::from(ORDER_FAILED)
}

fn carry_out(order: &[u8]) -> Result<Infallible, String> {
    let order: LaunchOrder =
        serde_json::from_slice(order).map_err(|e| format!("invalid launch order: {e}"))?;
    let stage = order
        .stage
        .map(Stage::from_wire)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut memfds = Vec::with_capacity(order.data_fds.len());
    for (target, data) in &order.data_fds {
        memfds.push((memfd_with(data).map_err(|e| e.to_string())?, *target));
    }
    let mut moves: Vec<(i32, i32)> = memfds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    // Kept open until the exec closes it: its number may by now be one of the targets, so
    // closing it here could close a run's pipe.
    let _null = match order.stdio {
        Some(to) => {
            let null = dev_null().map_err(|e| format!("/dev/null: {e}"))?;
            moves.extend(stdio_moves(null.as_raw_fd(), to));
            Some(null)
        }
        None => None,
    };
    let c = |b: &[u8]| std::ffi::CString::new(b).map_err(|e| format!("launch order: {e}"));
    let program = c(order.program.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in &order.args {
        argv.push(c(a.as_bytes())?);
    }
    // SAFETY: this single-threaded process is about to exec; the steps are raw syscalls.
    unsafe { child_setup(stage.as_ref(), &moves, &order.rlimits, order.drop_to) }
        .map_err(|e| format!("preparing the sandbox: {e}"))?;
    let env: [&std::ffi::CStr; 0] = [];
    let err = match nix::unistd::execve(&program, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(format!("{}: {err}", order.program.display()))
}

/// A launcher waiting inside its spare cgroups, with the run's pipes already in place.
/// Dropped unused, it is killed and its cgroups removed.
#[derive(Debug)]
pub(crate) struct WarmLauncher {
    process: Option<Launched>,
    control: Option<UnixStream>,
    /// The kernel's name for the launcher process (its file name, cut to 15 bytes): until the
    /// exec, and after a death before it, `/proc/<pid>/comm` still says this.
    name: Vec<u8>,
    /// The spare cgroups (one per controller) it has joined; empty without cgroups. Once a
    /// run takes it, the run's [`crate::cgroup::JobCgroup`] owns them.
    pub(crate) dirs: Vec<PathBuf>,
}

/// A started sandbox process (bwrap, or a launcher that becomes bwrap) and its pipes.
#[derive(Debug)]
pub(crate) struct Launched {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

impl Launched {
    /// `program` with an empty environment and piped stdio, killed when dropped: how both the
    /// direct path and the launchers start.
    pub(crate) fn command(program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Takes the pipes of a child spawned from [`Self::command`].
    pub(crate) fn from_child(mut child: Child) -> std::io::Result<Self> {
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child pipes missing"));
        };
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr,
        })
    }
}

/// Why a launch did not happen, and whether the direct path may still try.
/// The causes are boxed: an I/O error here, the launcher's own answer (text from another
/// process) there.
#[derive(Debug)]
pub(crate) enum LaunchFailure {
    /// The launcher was gone or would not take the order: nothing of the run started.
    Unusable(BoxError),
    /// The launcher carried out the order and failed; the same order would fail again.
    Failed(BoxError),
}

/// Reading the launcher's answer failed after it took the order.
#[derive(Debug, thiserror::Error)]
#[error("launcher: {0}")]
struct LauncherIo(#[source] std::io::Error);

impl WarmLauncher {
    /// Starts a launcher (from an async task, so that its parent thread is a runtime worker that
    /// lives as long as the daemon: the parent-death signal follows the thread).
    async fn start(path: &Path) -> std::io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Launched::command(path);
        // SAFETY: dup2/fcntl/prctl only.
        unsafe {
            cmd.pre_exec(move || {
                if theirs_fd == CONTROL_FD {
                    if libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let mut name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        name.truncate(COMM_LEN);
        Ok(Self {
            process: Some(Launched::from_child(child)?),
            control: Some(ours),
            name,
            dirs: Vec::new(),
        })
    }

    /// Whether the process is no longer the launcher program: it has exec'd. End-of-file on the
    /// control socket alone does not say so; a launcher that dies first (killed, or out of
    /// memory under the run's limits) closes it too, or resets it when the order was still
    /// unread. The process is our child and not yet reaped, so its pid and its name (a zombie
    /// keeps the one it died with) are still its own. The kernel closes the descriptors of an
    /// exec before it renames the process, so a reader can see the old name for a launcher
    /// that is becoming bwrap; the caller then kills it before anything ran, which wastes that
    /// launcher but never starts a run twice. When `/proc` cannot tell, it counts as exec'd.
    fn has_execed(&self) -> bool {
        let Some(pid) = self.pid() else {
            return true;
        };
        match std::fs::read(format!("/proc/{pid}/comm")) {
            Ok(comm) => comm.strip_suffix(b"\n").unwrap_or(&comm) != self.name.as_slice(),
            Err(_) => true,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.child.id())
    }

    /// Still waiting for an order.
    fn alive(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Hands over the order and waits until bwrap runs in place of the launcher. The caller
    /// has taken over [`Self::dirs`] (they become the run's cgroups).
    pub(crate) async fn launch(mut self, order: &LaunchOrder) -> Result<Launched, LaunchFailure> {
        let unusable = |e: std::io::Error| LaunchFailure::Unusable(e.into());
        let bytes = serde_json::to_vec(order).map_err(|e| LaunchFailure::Unusable(e.into()))?;
        let control = self
            .control
            .take()
            .ok_or_else(|| LaunchFailure::Unusable("no control socket".into()))?;
        control.set_nonblocking(true).map_err(unusable)?;
        let mut control = tokio::net::UnixStream::from_std(control).map_err(unusable)?;
        control.write_all(&bytes).await.map_err(unusable)?;
        control.shutdown().await.map_err(unusable)?;
        let mut answer = Vec::new();
        let read = control.read_to_end(&mut answer).await;
        if !answer.is_empty() {
            return Err(LaunchFailure::Failed(
                String::from_utf8_lossy(&answer).into_owned().into(),
            ));
        }
        if !self.has_execed() {
            // Dropping `self` kills and reaps it, so it cannot start bwrap after all while the
            // direct path starts the run.
            let how = read.err().map(|e| format!(" ({e})")).unwrap_or_default();
            return Err(LaunchFailure::Unusable(
                format!("the launcher died before it could start bwrap{how}").into(),
            ));
        }
        read.map_err(|e| LaunchFailure::Failed(Box::new(LauncherIo(e))))?;
        self.dirs.clear();
        self.process
            .take()
            .ok_or_else(|| LaunchFailure::Unusable("no process".into()))
    }
}

impl Drop for WarmLauncher {
    /// Kills the launcher, waits (briefly) until it has left its cgroups, then removes them.
    fn drop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            let _ = p.child.start_kill();
            for _ in 0..100 {
                if !matches!(p.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Up to `size` warm launchers, refilled off the start path.
#[derive(Debug)]
pub(crate) struct LauncherPool {
    path: Option<PathBuf>,
    size: usize,
    cgroups: Arc<CgroupPool>,
    warm: Mutex<Vec<WarmLauncher>>,
    refilling: tokio::sync::Mutex<()>,
    /// The background refill started by [`Self::refill_soon`]; aborted with the pool.
    refill_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Runs started through a launcher so far.
    launched: std::sync::atomic::AtomicU64,
    /// Set after the first failure to start one, so the log says it once.
    broken: std::sync::atomic::AtomicBool,
}

impl LauncherPool {
    /// `path`: the launcher binary (`None` or `size == 0`: the pool stays empty).
    pub(crate) fn new(path: Option<PathBuf>, size: usize, cgroups: Arc<CgroupPool>) -> Self {
        Self {
            path,
            size,
            cgroups,
            warm: Mutex::new(Vec::new()),
            refilling: tokio::sync::Mutex::new(()),
            refill_task: Mutex::new(None),
            launched: std::sync::atomic::AtomicU64::new(0),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How many launchers are waiting.
    pub(crate) fn ready(&self) -> usize {
        crate::locks::lock("warm launchers", &self.warm).len()
    }

    /// How many runs launchers have started.
    pub(crate) fn launched(&self) -> u64 {
        self.launched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a run a launcher started.
    pub(crate) fn count_launch(&self) {
        self.launched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A live launcher, if one is waiting (dead ones are dropped on the way).
    pub(crate) fn take(&self) -> Option<WarmLauncher> {
        loop {
            let mut w = crate::locks::lock("warm launchers", &self.warm).pop()?;
            if w.alive() {
                return Some(w);
            }
            tracing::warn!(pid = ?w.pid(), "a warm sandbox launcher died while waiting");
        }
    }

    /// Refills in the background (after a run), unless a refill is under way or nothing is
    /// missing.
    pub(crate) fn refill_soon(pool: &Arc<Self>) {
        if pool.path.is_none() || pool.ready() >= pool.size {
            return;
        }
        let mut task = crate::locks::lock("launcher refill task", &pool.refill_task);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The task holds only a weak reference: a dropped backend is not kept alive by it.
        let weak = Arc::downgrade(pool);
        *task = Some(runtime.spawn(async move {
            if let Some(pool) = weak.upgrade() {
                pool.refill().await;
            }
        }));
    }

    /// Starts launchers until the pool is full. Must run on an async task (see
    /// [`WarmLauncher::start`]); a concurrent call returns at once.
    pub(crate) async fn refill(&self) {
        let Some(path) = self.path.as_deref() else {
            return;
        };
        let Ok(_guard) = self.refilling.try_lock() else {
            return;
        };
        while self.ready() < self.size {
            if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let mut warm = match WarmLauncher::start(path).await {
                Ok(w) => w,
                Err(e) => {
                    self.broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(launcher = %path.display(), error = %e,
                        "cannot start sandbox launchers; runs start directly (slower)");
                    return;
                }
            };
            let Some(pid) = warm.pid() else {
                return;
            };
            let cgroups = Arc::clone(&self.cgroups);
            match tokio::task::spawn_blocking(move || cgroups.make_launcher_spare()).await {
                Ok(Ok(dirs)) => warm.dirs = dirs,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "no cgroups for a warm launcher");
                    return;
                }
                Err(_) => return,
            }
            // The slow part (an RCU grace period per move on a default host), on a blocking
            // thread and before any run needs it. On failure, dropping `warm` kills the
            // launcher and removes its cgroups.
            let dirs = warm.dirs.clone();
            match tokio::task::spawn_blocking(move || CgroupPool::join(&dirs, pid)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "could not move a warm launcher into its cgroups");
                    return;
                }
                Err(_) => return,
            }
            crate::locks::lock("warm launchers", &self.warm).push(warm);
        }
    }
}

impl Drop for LauncherPool {
    fn drop(&mut self) {
        if let Some(t) = crate::locks::lock("launcher refill task", &self.refill_task).take() {
            t.abort();
        }
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
