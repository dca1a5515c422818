//! The default backend: bubblewrap, with the uid dropped before exec, cgroup limits joined
//! from `pre_exec`, generated `/etc` and seccomp programs handed over as memfds.

use std::os::fd::AsRawFd;
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
use crate::bwrap_args::BwrapCommand;
use crate::bwrap_args::bwrap_command;
use crate::cgroup::CgroupMode;
use crate::cgroup::CgroupPool;
use crate::cgroup::JobCgroup;
use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::launch::LaunchFailure;
use crate::launch::LaunchOrder;
use crate::launch::Launched;
use crate::launch::LauncherPool;
use crate::launch::WarmLauncher;
use crate::launch::child_setup;
use crate::launch::dev_null;
use crate::launch::drop_privileges;
use crate::launch::memfd_with;
use crate::launch::stdio_moves;
use crate::plan::RunPlan;
use crate::stage::Stage;

/// bubblewrap runner.
#[derive(Debug)]
pub struct BwrapBackend {
    cfg: SandboxConfig,
    bwrap: PathBuf,
    cgroups: std::sync::Arc<CgroupPool>,
    launchers: std::sync::Arc<LauncherPool>,
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
        let cgroups = std::sync::Arc::new(CgroupPool::new(mode));
        let launcher = cfg.launcher_path();
        let launchers = LauncherPool::new(
            launcher.is_file().then_some(launcher),
            cfg.warm_launchers,
            std::sync::Arc::clone(&cgroups),
        );
        Ok(Self {
            cfg,
            bwrap,
            cgroups,
            launchers: std::sync::Arc::new(launchers),
            etc_dirs: crate::etc_dir::EtcDirs::default(),
        })
    }

    pub fn bwrap_path(&self) -> &Path {
        &self.bwrap
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// Warm launchers waiting for a run (see [`crate::launch`]); the pool fills on
    /// [`SandboxBackend::probe`] and after each run.
    pub fn warm_launchers_ready(&self) -> usize {
        self.launchers.ready()
    }

    /// Runs this backend started through a warm launcher (the others were forked directly).
    pub fn warm_launches(&self) -> u64 {
        self.launchers.launched()
    }

    async fn probe_inner(&self) -> Result<BackendReport, SandboxError> {
        let out = tokio::process::Command::new(&self.bwrap)
            .arg("--version")
            .env_clear()
            .output()
            .await
            .map_err(|source| SandboxError::ProgramUnavailable {
                program: self.bwrap.clone(),
                source,
            })?;
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
        self.launchers.refill().await;
        let launcher = self.cfg.launcher_path();
        let init = self.cfg.init_path();
        Ok(BackendReport {
            name: "bwrap",
            version,
            limits_degraded,
            details: vec![
                ("bwrap".to_owned(), self.bwrap.display().to_string()),
                ("cgroups".to_owned(), crate::probe::cgroup_summary()),
                (
                    "warm launchers".to_owned(),
                    if self.cfg.warm_launchers == 0 {
                        "off ([sandbox] warm_launchers = 0)".to_owned()
                    } else if !launcher.is_file() {
                        format!(
                            "none: no launcher at {} (runs start directly, slower)",
                            launcher.display()
                        )
                    } else {
                        format!(
                            "{} of {} waiting ({})",
                            self.launchers.ready(),
                            self.cfg.warm_launchers,
                            launcher.display()
                        )
                    },
                ),
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
            .map_err(SandboxError::Blocking)??;
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
        let bw = bwrap_command(&bw_plan, &seccomp).hide_options();
        let drop_to = (root && plan.identity.drop_privileges)
            .then_some((plan.identity.uid, plan.identity.gid));
        if let Some(warm) = self.launchers.take() {
            match self
                .launch_warm(plan, warm, &bw, stage.as_ref(), drop_to)
                .await
            {
                Ok(child) => return Ok(child),
                Err(LaunchFailure::Failed(why)) => {
                    return Err(SandboxError::SpawnProgram {
                        program: self.bwrap.clone(),
                        source: why,
                    });
                }
                Err(LaunchFailure::Unusable(why)) => {
                    tracing::warn!(run = %plan.run_id, reason = %why,
                        "warm sandbox launcher unusable; starting directly");
                }
            }
        }
        self.spawn_direct(plan, &bw, stage, drop_to)
    }

    /// The run through a launcher already waiting in spare cgroups (see [`crate::launch`]).
    async fn launch_warm(
        &self,
        plan: &RunPlan,
        mut warm: WarmLauncher,
        bw: &BwrapCommand,
        stage: Option<&Stage>,
        drop_to: Option<(u32, u32)>,
    ) -> Result<SandboxChild, LaunchFailure> {
        let dirs = std::mem::take(&mut warm.dirs);
        let job = if dirs.is_empty() {
            None
        } else {
            let job = self
                .cgroups
                .take_occupied(plan.run_id.as_str(), &plan.limits, dirs);
            if job.is_none() {
                return Err(LaunchFailure::Unusable(
                    "its cgroups could not be set up".into(),
                ));
            }
            job
        };
        // As on the direct path: rlimits stand in for whatever the cgroups cannot enforce.
        let limits_degraded = job.as_ref().is_none_or(|j| !j.complete);
        let order = LaunchOrder {
            program: self.bwrap.clone(),
            args: bw.args.clone(),
            data_fds: bw.fds.clone(),
            stage: stage.map(Stage::to_wire),
            rlimits: rlimits_for(plan, limits_degraded),
            drop_to,
            stdio: plan.stdio_fds(),
        };
        let launched = warm.launch(&order).await?;
        self.launchers.count_launch();
        tracing::debug!(run = %plan.run_id, pid = ?launched.child.id(), "bwrap sandbox started by a warm launcher");
        Ok(self.sandbox_child(plan, launched, job, limits_degraded))
    }

    /// The run forked from the daemon: joins its cgroups from `pre_exec`.
    fn spawn_direct(
        &self,
        plan: &RunPlan,
        bw: &BwrapCommand,
        stage: Option<Stage>,
        drop_to: Option<(u32, u32)>,
    ) -> Result<SandboxChild, SandboxError> {
        let mut memfds = Vec::with_capacity(bw.fds.len());
        for (target, data) in &bw.fds {
            memfds.push((memfd_with(data)?, *target));
        }
        let job = self.cgroups.take(plan.run_id.as_str(), &plan.limits);
        let limits_degraded = job.as_ref().is_none_or(|j| !j.complete);
        let procs_fds = job.as_ref().map(JobCgroup::procs_fds).unwrap_or_default();
        let mut moves: Vec<(i32, i32)> = memfds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        let null = match plan.stdio_fds() {
            Some(to) => {
                let null = dev_null().map_err(|source| SandboxError::SpawnStep {
                    step: "opening /dev/null for bwrap's stdio",
                    source,
                })?;
                moves.extend(stdio_moves(null.as_raw_fd(), to));
                Some(null)
            }
            None => None,
        };
        let rlimits = rlimits_for(plan, limits_degraded);
        let mut cmd = Launched::command(&self.bwrap);
        cmd.args(&bw.args);
        // SAFETY: the closure only makes raw syscalls (write, then those of `child_setup`);
        // everything it needs was computed before fork.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &procs_fds {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                child_setup(stage.as_ref(), &moves, &rlimits, drop_to)
            });
        }
        let child = cmd.spawn().map_err(|e| SandboxError::SpawnProgram {
            program: self.bwrap.clone(),
            source: e.into(),
        })?;
        drop((memfds, null));
        let launched = Launched::from_child(child).map_err(SandboxError::SpawnIo)?;
        tracing::debug!(run = %plan.run_id, pid = ?launched.child.id(), "bwrap sandbox started");
        Ok(self.sandbox_child(plan, launched, job, limits_degraded))
    }

    fn sandbox_child(
        &self,
        plan: &RunPlan,
        launched: Launched,
        job: Option<JobCgroup>,
        limits_degraded: bool,
    ) -> SandboxChild {
        let Launched {
            child,
            stdin,
            stdout,
            stderr,
        } = launched;
        if limits_degraded {
            tracing::warn!(run = %plan.run_id, "cgroup limits unavailable: rlimits only (limits degraded)");
        }
        SandboxChild {
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
                std::sync::Arc::clone(&self.launchers),
            )),
        }
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
    launchers: std::sync::Arc<LauncherPool>,
    status: Option<std::process::ExitStatus>,
    cleanup: Option<tokio::task::JoinHandle<()>>,
    oom: bool,
}

impl BwrapControl {
    fn new(
        child: Child,
        job: Option<JobCgroup>,
        pool: std::sync::Arc<CgroupPool>,
        launchers: std::sync::Arc<LauncherPool>,
    ) -> Self {
        Self {
            child,
            job,
            pool,
            launchers,
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
        LauncherPool::refill_soon(&self.launchers);
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
    type Compiled = Result<Vec<Vec<u8>>, std::sync::Arc<seccompiler::BackendError>>;
    static PROGRAMS: std::sync::OnceLock<Compiled> = std::sync::OnceLock::new();
    PROGRAMS
        .get_or_init(|| crate::seccomp::programs(true).map_err(std::sync::Arc::new))
        .clone()
        .map_err(SandboxError::Seccomp)
}

/// rlimits always applied (no core dumps, few descriptors), plus the fallback limits when
/// cgroups are missing. Both start paths (direct and warm launcher) apply this list.
pub(crate) fn rlimits_for(plan: &RunPlan, degraded: bool) -> Vec<(u32, u64)> {
    let mut out = vec![
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_NOFILE, plan.limits.open_files),
    ];
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
