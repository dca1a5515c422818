//! The default backend: bubblewrap, with the uid dropped before exec, cgroup limits joined
//! from `pre_exec`, generated `/etc` and seccomp programs handed over as memfds.

use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::process::Child;

use crate::backend::BackendReport;
use crate::backend::ChildControl;
use crate::backend::ExitInfo;
use crate::backend::SandboxBackend;
use crate::backend::SandboxChild;
use crate::bwrap_args::bwrap_command;
use crate::cgroup::CgroupMode;
use crate::cgroup::CgroupPool;
use crate::cgroup::JobCgroup;
use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::plan::RunPlan;
use crate::stage::Stage;

/// bubblewrap runner.
#[derive(Debug)]
pub struct BwrapBackend {
    cfg: SandboxConfig,
    bwrap: PathBuf,
    cgroups: std::sync::Arc<CgroupPool>,
    etc_dirs: crate::etc_dir::EtcDirs,
}

impl BwrapBackend {
    /// Finds bwrap (config, `$CAMBOT_BWRAP`, `PATH`) and the cgroup layout.
    pub fn new(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        let bwrap = cfg.bwrap_path().ok_or_else(|| {
            SandboxError::Unavailable(
                "bwrap not found (apt-get install bubblewrap, or set [sandbox] bwrap_path)"
                    .to_owned(),
            )
        })?;
        let mode = if cfg.cgroups {
            crate::cgroup::detect()
        } else {
            CgroupMode::None("disabled by [sandbox] cgroups = false".to_owned())
        };
        Ok(Self {
            cfg,
            bwrap,
            cgroups: std::sync::Arc::new(CgroupPool::new(mode)),
            etc_dirs: crate::etc_dir::EtcDirs::default(),
        })
    }

    pub fn bwrap_path(&self) -> &Path {
        &self.bwrap
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    async fn probe_inner(&self) -> Result<BackendReport, SandboxError> {
        let out = tokio::process::Command::new(&self.bwrap)
            .arg("--version")
            .env_clear()
            .output()
            .await
            .map_err(|e| SandboxError::Unavailable(format!("{}: {e}", self.bwrap.display())))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // A real (tiny) sandbox, as the uid runs will use: proves user namespaces work here.
        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.args([
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/bin",
            "/bin",
            "--",
            "/usr/bin/true",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        if nix::unistd::geteuid().is_root() {
            let (uid, gid) = (self.cfg.sandbox_uid, self.cfg.sandbox_gid);
            // SAFETY: only async-signal-safe syscalls between fork and exec.
            unsafe {
                cmd.pre_exec(move || drop_privileges(uid, gid));
            }
        }
        let smoke = cmd.output().await?;
        if !smoke.status.success() {
            return Err(SandboxError::Unavailable(format!(
                "bwrap cannot create a sandbox here (user namespaces disabled?): {}",
                String::from_utf8_lossy(&smoke.stderr).trim()
            )));
        }
        let mode = self.cgroups.mode();
        let limits_degraded = !matches!(mode, CgroupMode::V1(_) | CgroupMode::V2(_))
            || !nix::unistd::geteuid().is_root() && matches!(mode, CgroupMode::V1(_));
        let pool = std::sync::Arc::clone(&self.cgroups);
        let _ = tokio::task::spawn_blocking(move || pool.refill()).await;
        let init = self.cfg.init_path();
        Ok(BackendReport {
            name: "bwrap",
            version,
            limits_degraded,
            details: vec![
                ("bwrap".to_owned(), self.bwrap.display().to_string()),
                ("cgroups".to_owned(), crate::probe::cgroup_summary()),
                (
                    "landlock".to_owned(),
                    match crate::probe::landlock_abi() {
                        Some(v) if init.is_file() => format!("ABI {v}, shim {}", init.display()),
                        Some(v) => format!("ABI {v}, but no shim at {}", init.display()),
                        None => "unsupported by the kernel".to_owned(),
                    },
                ),
                (
                    "seccomp".to_owned(),
                    if crate::probe::seccomp_supported() {
                        "filters available".to_owned()
                    } else {
                        "unsupported".to_owned()
                    },
                ),
                (
                    "user namespaces".to_owned(),
                    crate::probe::max_user_namespaces()
                        .map(|n| format!("max {n}"))
                        .unwrap_or_else(|| "unknown".to_owned()),
                ),
            ],
        })
    }

    async fn spawn_inner(&self, plan: &RunPlan) -> Result<SandboxChild, SandboxError> {
        let plan = &self.etc_dirs.bind_into(plan)?;
        let prep = plan.clone();
        tokio::task::spawn_blocking(move || prepare_host_dirs(&prep))
            .await
            .map_err(|e| SandboxError::Spawn(e.to_string()))??;
        let seccomp = if plan.seccomp {
            cached_seccomp()?
        } else {
            Vec::new()
        };
        let root = nix::unistd::geteuid().is_root();
        let (bw_plan, stage) = if root && plan.identity.drop_privileges {
            let (p, s) = Stage::prepare(plan)?;
            (p, Some(s))
        } else {
            (plan.clone(), None)
        };
        let bw = bwrap_command(&bw_plan, &seccomp);
        let mut memfds = Vec::with_capacity(bw.fds.len());
        for (target, data) in &bw.fds {
            memfds.push((memfd_with(data)?, *target));
        }
        let job = self.cgroups.take(plan.run_id.as_str(), &plan.limits);
        let limits_degraded = job.as_ref().is_none_or(|j| !j.complete);
        if limits_degraded {
            tracing::warn!(run = %plan.run_id, "cgroup limits unavailable: rlimits only (limits degraded)");
        }
        let procs_fds = job.as_ref().map(JobCgroup::procs_fds).unwrap_or_default();
        let moves: Vec<(i32, i32)> = memfds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        let max_target = moves.iter().map(|(_, t)| *t).max().unwrap_or(2);
        let rlimits = rlimits_for(plan, limits_degraded);
        let ident = plan.identity;
        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.args(&bw.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: the closure only makes raw syscalls (write, fcntl, dup2, setrlimit, setgroups,
        // setresgid, setresuid, prctl); everything it needs was computed before fork.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &procs_fds {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(stage) = &stage {
                    stage.enter()?;
                }
                place_fds(&moves, max_target)?;
                for (res, val) in &rlimits {
                    let lim = libc::rlimit {
                        rlim_cur: *val,
                        rlim_max: *val,
                    };
                    // Lowering a limit cannot fail for lack of rights; a failure here means
                    // the value is invalid, which we would rather know.
                    if libc::setrlimit(*res, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if root && ident.drop_privileges {
                    drop_privileges(ident.uid, ident.gid)?;
                }
                // After the uid change, which clears it: the sandbox dies with the daemon.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| SandboxError::Spawn(format!("{}: {e}", self.bwrap.display())))?;
        drop(memfds);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Spawn("child pipes missing".to_owned()));
        };
        tracing::debug!(run = %plan.run_id, uid = ident.uid, pid = ?child.id(), "bwrap sandbox started");
        Ok(SandboxChild {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            limits_degraded,
            backend: "bwrap",
            output_cap_bytes: plan.limits.output_cap_bytes,
            max_line_bytes: plan.limits.max_line_bytes,
            control: Box::new(BwrapControl::new(
                child,
                job,
                std::sync::Arc::clone(&self.cgroups),
            )),
        })
    }
}

impl SandboxBackend for BwrapBackend {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    fn spawn(&self, plan: &RunPlan) -> BoxFuture<'_, Result<SandboxChild, SandboxError>> {
        let plan = plan.clone();
        async move { self.spawn_inner(&plan).await }.boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<BackendReport, SandboxError>> {
        self.probe_inner().boxed()
    }
}

struct BwrapControl {
    child: Child,
    job: Option<JobCgroup>,
    pool: std::sync::Arc<CgroupPool>,
    status: Option<std::process::ExitStatus>,
    cleanup: Option<tokio::task::JoinHandle<()>>,
    oom: bool,
}

impl BwrapControl {
    fn new(child: Child, job: Option<JobCgroup>, pool: std::sync::Arc<CgroupPool>) -> Self {
        Self {
            child,
            job,
            pool,
            status: None,
            cleanup: None,
            oom: false,
        }
    }

    /// Cancel-safe: every step records its result, so a wait dropped half-way resumes.
    async fn wait_inner(&mut self) -> Result<std::process::ExitStatus, SandboxError> {
        let status = match self.status {
            Some(s) => s,
            None => {
                let s = self.child.wait().await?;
                self.status = Some(s);
                s
            }
        };
        // bwrap is gone, so its pid namespace is too; the cgroup sweep catches anything
        // that could have escaped it.
        if let Some(mut job) = self.job.take() {
            self.oom = job.oom_kills() > 0;
            // The spare for the next run is made here, after this one, so that its `mkdir`s
            // never contend with a start (cgroup v1 serialises them under one mutex).
            let pool = std::sync::Arc::clone(&self.pool);
            self.cleanup = Some(tokio::task::spawn_blocking(move || {
                job.destroy();
                pool.refill();
            }));
        }
        if let Some(handle) = self.cleanup.as_mut() {
            let _ = handle.await;
            self.cleanup = None;
        }
        Ok(status)
    }
}

impl ChildControl for BwrapControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitInfo, SandboxError>> {
        async move {
            use std::os::unix::process::ExitStatusExt;
            let status = self.wait_inner().await?;
            Ok(ExitInfo {
                code: status.code(),
                signal: status.signal(),
                oom_killed: self.oom,
                ..ExitInfo::default()
            })
        }
        .boxed()
    }

    fn kill(&mut self) -> BoxFuture<'_, Result<(), SandboxError>> {
        async move {
            if let Some(job) = &self.job {
                job.kill_all();
            }
            match self.child.start_kill() {
                Ok(()) => Ok(()),
                // Already reaped.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        .boxed()
    }
}

/// The filters never change within a process: compile them once.
fn cached_seccomp() -> Result<Vec<Vec<u8>>, SandboxError> {
    static PROGRAMS: std::sync::OnceLock<Result<Vec<Vec<u8>>, String>> = std::sync::OnceLock::new();
    PROGRAMS
        .get_or_init(|| crate::seccomp::programs(true))
        .clone()
        .map_err(SandboxError::Spawn)
}

/// `setgroups([])`, `setresgid`, `setresuid`: a root daemon becomes the run's uid.
fn drop_privileges(uid: u32, gid: u32) -> std::io::Result<()> {
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
unsafe fn place_fds(moves: &[(i32, i32)], max_target: i32) -> std::io::Result<()> {
    let mut staged = [0i32; 256];
    if moves.len() > staged.len() {
        return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
    }
    for (i, (src, _)) in moves.iter().enumerate() {
        // SAFETY: fcntl on a descriptor we own in this child.
        let fd = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, max_target + 1) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        staged[i] = fd;
    }
    for (i, (_, target)) in moves.iter().enumerate() {
        // SAFETY: dup2 onto a number this child reserves; the copy has no CLOEXEC.
        if unsafe { libc::dup2(staged[i], *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn memfd_with(data: &[u8]) -> Result<OwnedFd, SandboxError> {
    use std::io::Seek;
    use std::io::Write;
    // SAFETY: a NUL-terminated name and valid flags; the result is checked.
    let raw = unsafe { libc::memfd_create(c"cambot-sandbox".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut f = std::fs::File::from(fd);
    f.write_all(data)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(f))
}

/// rlimits always applied (no core dumps), plus the fallback limits when cgroups are missing.
fn rlimits_for(plan: &RunPlan, degraded: bool) -> Vec<(libc::__rlimit_resource_t, u64)> {
    let mut out = vec![(libc::RLIMIT_CORE, 0)];
    if degraded {
        let cpu_secs = (plan.timeouts.hard.as_secs_f64() * plan.limits.cpus).ceil() as u64;
        out.push((libc::RLIMIT_AS, plan.limits.memory_bytes));
        out.push((libc::RLIMIT_NPROC, plan.limits.pids));
        out.push((libc::RLIMIT_CPU, cpu_secs.max(1)));
    }
    out
}

/// Creates the writable dirs and the run dir, and gives root-owned ones to the run's uid.
pub(crate) fn prepare_host_dirs(plan: &RunPlan) -> Result<(), SandboxError> {
    let root = nix::unistd::geteuid().is_root();
    let (uid, gid) = (plan.identity.uid, plan.identity.gid);
    for m in plan.mounts.iter().filter(|m| m.create) {
        let err = |source| SandboxError::Prepare {
            path: m.src.clone(),
            source,
        };
        std::fs::create_dir_all(&m.src).map_err(err)?;
        if !root {
            continue;
        }
        let meta = std::fs::metadata(&m.src).map_err(err)?;
        if meta.uid() == 0 && (plan.identity.chown_writable || m.dst == "/run/cambot") {
            chown_tree(&m.src, uid, gid).map_err(err)?;
        }
    }
    Ok(())
}

/// Recursive chown of root-owned entries, never following symlinks (a planted link must not
/// hand a host file to the sandbox uid).
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == 0 {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
