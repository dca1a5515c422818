//! The pure run plan: everything a backend needs to start one sandboxed run, computed from the
//! group, the tenant, the config and the allowlist. No I/O happens here except what
//! [`PlanInput::new`] gathers up front (the group folder's owner, the host's `/usr` layout), so
//! tests can build every plan by hand.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_protocol::layout::sandbox_paths;
use cambot_protocol::message::AdditionalMount;
use cambot_protocol::message::ContainerConfig;

use crate::config::SandboxConfig;
use crate::error::MountRejection;
use crate::error::PlanError;
use crate::mounts::MountAllowlist;
use crate::tenant_mounts::TenantMounts;
use crate::tenant_mounts::validate_tenant_mount;

/// Where the Landlock shim is bound inside the sandbox.
pub const INIT_BIN: &str = "/opt/cambot/cambot-sandbox-init";
/// The only socket a sandbox may reach.
pub const HOST_SOCK: &str = "/run/cambot/host.sock";
/// PATH inside every sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Bounds of `[sandbox] open_files` (`RLIMIT_NOFILE` inside).
pub const MIN_OPEN_FILES: u64 = 32;
pub const MAX_OPEN_FILES: u64 = 1 << 20;
/// The seed's margin of the hard timeout over the idle timeout.
pub const IDLE_MARGIN: Duration = Duration::from_secs(30);
/// Where a runner plan's stdin, stdout and log arrive inside the sandbox (announced in
/// `CAMBOT_STDIO_FDS`), while bwrap itself gets `/dev/null`: bwrap's pid 1 keeps 0, 1 and 2
/// and is reachable from the tools, and it closes every other descriptor. Above the
/// launcher's control socket (3), below the data descriptors (10 and up).
pub const RUNNER_STDIO_FDS: [i32; 3] = [6, 7, 8];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    ReadOnly,
    ReadWrite,
}

/// One bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMount {
    pub src: PathBuf,
    /// Absolute path inside the sandbox.
    pub dst: String,
    pub mode: MountMode,
    /// Skipped (not an error) when the source does not exist.
    pub optional: bool,
    /// A directory the backend creates on the host before the run.
    pub create: bool,
}

/// How the sandbox's `/` is assembled from the host, apart from the mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    /// Read-only bind of a host system directory at the same path (`/usr`, or `/lib` on hosts
    /// without merged /usr).
    RoBind(String),
    /// `path -> target` (the merged-/usr links such as `/bin -> usr/bin`).
    Symlink { path: String, target: String },
}

/// The host's root layout for the system entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFs {
    pub entries: Vec<SystemEntry>,
}

impl HostFs {
    /// Debian/Ubuntu merged /usr on x86_64 (what [`HostFs::detect`] finds on such hosts).
    pub fn merged_usr() -> Self {
        Self {
            entries: vec![
                SystemEntry::RoBind("/usr".to_owned()),
                SystemEntry::Symlink {
                    path: "/bin".to_owned(),
                    target: "usr/bin".to_owned(),
                },
                SystemEntry::Symlink {
                    path: "/sbin".to_owned(),
                    target: "usr/sbin".to_owned(),
                },
                SystemEntry::Symlink {
                    path: "/lib".to_owned(),
                    target: "usr/lib".to_owned(),
                },
                SystemEntry::Symlink {
                    path: "/lib64".to_owned(),
                    target: "usr/lib64".to_owned(),
                },
            ],
        }
    }

    /// `/usr` plus each top-level `bin sbin lib lib32 lib64 libx32`: a symlink is recreated, a
    /// real directory is bound read-only.
    pub fn detect() -> Self {
        let mut entries = vec![SystemEntry::RoBind("/usr".to_owned())];
        for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let path = format!("/{name}");
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t) = std::fs::read_link(&path) {
                        entries.push(SystemEntry::Symlink {
                            path,
                            target: t.to_string_lossy().into_owned(),
                        });
                    }
                }
                Ok(m) if m.is_dir() => entries.push(SystemEntry::RoBind(path)),
                _ => {}
            }
        }
        Self { entries }
    }
}

/// Resource limits of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
    pub cpus: f64,
    pub tmp_bytes: u64,
    /// Size of the `/dev/shm` tmpfs.
    pub shm_bytes: u64,
    /// `RLIMIT_NOFILE` inside (`RLIMIT_CORE` is always 0).
    pub open_files: u64,
    pub output_cap_bytes: u64,
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Loopback only; the per-run host socket is the single way out.
    None,
}

/// Who the sandbox runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
    /// The daemon is root and must drop to `uid`/`gid` before exec'ing the sandbox.
    pub drop_privileges: bool,
    /// The group folder is root-owned (or missing): the backend chowns the writable dirs to
    /// `uid`/`gid` before the run.
    pub chown_writable: bool,
}

/// Wall-clock rules (seed 3.5): hard = max(configured, idle + 30 s), reset by every stdout line;
/// and an absolute lifetime from the start that no output extends, so a run that keeps
/// printing cannot live forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPolicy {
    pub hard: Duration,
    pub lifetime: Duration,
}

impl TimeoutPolicy {
    pub fn seed(configured: Duration, idle: Duration, lifetime: Duration) -> Self {
        Self {
            hard: configured.max(idle + IDLE_MARGIN),
            lifetime,
        }
    }
}

/// The complete plan of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub group: GroupFolder,
    pub is_main: bool,
    pub system: Vec<SystemEntry>,
    /// In bind order; parents before children.
    pub mounts: Vec<PlanMount>,
    /// Generated files: (absolute path inside, contents).
    pub etc: Vec<(String, String)>,
    /// The complete environment inside (an allowlist: never a secret).
    pub env: Vec<(String, String)>,
    pub identity: SandboxUser,
    pub limits: Limits,
    pub network: NetworkPolicy,
    pub timeouts: TimeoutPolicy,
    /// argv inside the sandbox (without the init shim).
    pub command: Vec<String>,
    pub cwd: String,
    /// Host path of the Landlock shim, bound at [`INIT_BIN`] and run first when set. Never set
    /// for the runner, which confines itself (`CAMBOT_LANDLOCK_RW` in [`RunPlan::env`]).
    pub init: Option<PathBuf>,
    /// Paths Landlock leaves writable (everything else is read-only).
    pub writable: Vec<String>,
    pub seccomp: bool,
    /// Extra mounts refused with why; the caller must log or print each (the plan does not).
    pub rejected_mounts: Vec<(AdditionalMount, MountRejection)>,
}

/// Everything about one run that is not config.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub layout: DataLayout,
    pub tenant: TenantId,
    pub group: GroupFolder,
    pub is_main: bool,
    pub run_id: RunId,
    pub container_config: Option<ContainerConfig>,
    /// The tenant's mount roots (extra mounts must lie inside one of them). [`PlanInput::new`]
    /// knows none: `default` keeps the operator allowlist alone, any other tenant mounts
    /// nothing until the caller fills them in from the store.
    pub tenant_mounts: TenantMounts,
    /// An operator command instead of the runner.
    pub command: Option<Vec<String>>,
    pub timezone: String,
    /// The daemon's effective uid/gid.
    pub daemon_uid: u32,
    pub daemon_gid: u32,
    /// Owner of the group folder, `None` when it does not exist yet.
    pub group_owner: Option<(u32, u32)>,
    /// For `~` in the allowlist.
    pub home: Option<PathBuf>,
    pub host: HostFs,
    /// Host path of the Landlock shim when it exists and Landlock is wanted.
    pub init: Option<PathBuf>,
}

impl PlanInput {
    /// Gathers the host facts (daemon ids, group folder owner, `/usr` layout, `$HOME`).
    pub fn new(layout: DataLayout, tenant: TenantId, group: GroupFolder, run_id: RunId) -> Self {
        use std::os::unix::fs::MetadataExt;
        let group_owner = std::fs::metadata(layout.group_dir(&tenant, &group))
            .ok()
            .map(|m| (m.uid(), m.gid()));
        Self {
            is_main: group.is_main(),
            tenant_mounts: TenantMounts::for_tenant(&tenant, Vec::new()),
            layout,
            tenant,
            group,
            run_id,
            container_config: None,
            command: None,
            timezone: "UTC".to_owned(),
            daemon_uid: nix::unistd::geteuid().as_raw(),
            daemon_gid: nix::unistd::getegid().as_raw(),
            group_owner,
            home: crate::config::home_dir(),
            host: HostFs::detect(),
            init: None,
        }
    }
}

impl PlanInput {
    /// Uses the Landlock shim when the config wants it, it exists and the kernel has Landlock.
    pub fn with_init_from(mut self, cfg: &SandboxConfig) -> Self {
        let shim = cfg.init_path();
        self.init = (cfg.landlock && shim.is_file() && crate::probe::landlock_abi().is_some())
            .then_some(shim);
        self
    }
}

fn safe_tz(tz: &str) -> String {
    let ok = !tz.is_empty()
        && tz.len() <= 64
        && !tz.contains("..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'));
    if ok { tz.to_owned() } else { "UTC".to_owned() }
}

fn identity(input: &PlanInput, cfg: &SandboxConfig) -> Result<SandboxUser, PlanError> {
    let id = if input.daemon_uid == 0 {
        match input.group_owner {
            Some((uid, gid)) if uid != 0 => SandboxUser {
                uid,
                gid,
                drop_privileges: true,
                chown_writable: false,
            },
            _ => SandboxUser {
                uid: cfg.sandbox_uid,
                gid: cfg.sandbox_gid,
                drop_privileges: true,
                chown_writable: true,
            },
        }
    } else {
        SandboxUser {
            uid: input.daemon_uid,
            gid: input.daemon_gid,
            drop_privileges: false,
            chown_writable: false,
        }
    };
    if id.uid == 0 || id.gid == 0 {
        return Err(PlanError::RootUid);
    }
    Ok(id)
}

fn generated_etc(id: &SandboxUser) -> Vec<(String, String)> {
    vec![
        (
            "/etc/passwd".to_owned(),
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\ncambot:x:{}:{}:cambot:/workspace/group:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                id.uid, id.gid
            ),
        ),
        (
            "/etc/group".to_owned(),
            format!("root:x:0:\ncambot:x:{}:\nnogroup:x:65534:\n", id.gid),
        ),
        (
            "/etc/hosts".to_owned(),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_owned(),
        ),
        (
            "/etc/resolv.conf".to_owned(),
            "# no network in this sandbox: only /run/cambot/host.sock leads out\n".to_owned(),
        ),
        (
            "/etc/nsswitch.conf".to_owned(),
            "passwd: files\ngroup: files\nhosts: files\n".to_owned(),
        ),
        ("/etc/hostname".to_owned(), "cambot\n".to_owned()),
    ]
}

fn rw(src: PathBuf, dst: &str, create: bool) -> PlanMount {
    PlanMount {
        src,
        dst: dst.to_owned(),
        mode: MountMode::ReadWrite,
        optional: false,
        create,
    }
}

fn ro(src: PathBuf, dst: &str, optional: bool) -> PlanMount {
    PlanMount {
        src,
        dst: dst.to_owned(),
        mode: MountMode::ReadOnly,
        optional,
        create: false,
    }
}

/// Builds the plan. Pure: the same input, config and allowlist give the same plan.
pub fn build_plan(
    input: PlanInput,
    cfg: &SandboxConfig,
    allowlist: &MountAllowlist,
) -> Result<RunPlan, PlanError> {
    let identity = identity(&input, cfg)?;
    let cc = input.container_config.clone().unwrap_or_default();
    let memory_bytes = cc
        .memory_bytes
        .unwrap_or(cfg.memory_mb.saturating_mul(1024 * 1024));
    if memory_bytes < 16 * 1024 * 1024 {
        return Err(PlanError::BadLimit(format!(
            "memory {memory_bytes} bytes is below 16 MiB"
        )));
    }
    if cfg.pids < 8
        || !(cfg.cpus > 0.0 && cfg.cpus.is_finite())
        || cfg.tmp_size_mb == 0
        || cfg.shm_size_mb == 0
    {
        return Err(PlanError::BadLimit(format!(
            "pids {} (>= 8), cpus {} (> 0), tmp_size_mb {} (> 0), shm_size_mb {} (> 0)",
            cfg.pids, cfg.cpus, cfg.tmp_size_mb, cfg.shm_size_mb
        )));
    }
    // bwrap needs a dozen descriptors of its own (data, seccomp, arguments) below the limit.
    if !(MIN_OPEN_FILES..=MAX_OPEN_FILES).contains(&cfg.open_files) {
        return Err(PlanError::BadLimit(format!(
            "open_files {} must be between {MIN_OPEN_FILES} and {MAX_OPEN_FILES}",
            cfg.open_files
        )));
    }
    let configured = cc
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(cfg.timeout_secs));
    if cfg.max_run_secs == 0 {
        return Err(PlanError::BadLimit(
            "max_run_secs 0 (the absolute run lifetime must be > 0)".to_owned(),
        ));
    }
    let timeouts = TimeoutPolicy::seed(
        configured,
        cfg.idle_timeout(),
        Duration::from_secs(cfg.max_run_secs),
    );

    let l = &input.layout;
    let (t, g) = (&input.tenant, &input.group);
    let mut mounts = vec![
        rw(l.group_dir(t, g), sandbox_paths::GROUP, true),
        ro(l.global_dir(t), sandbox_paths::GLOBAL, true),
        rw(l.sessions_dir(t, g), sandbox_paths::SESSION, true),
        ro(l.uploads_dir(t, g), sandbox_paths::UPLOADS, true),
    ];
    let mut rejected_mounts = Vec::new();
    for req in &cc.additional_mounts {
        match validate_tenant_mount(
            req,
            allowlist,
            &input.tenant_mounts,
            input.is_main,
            input.home.as_deref(),
        ) {
            Ok(m) => mounts.push(PlanMount {
                src: m.host_path,
                dst: format!("{}/{}", sandbox_paths::EXTRA, m.container_rel),
                mode: if m.readonly {
                    MountMode::ReadOnly
                } else {
                    MountMode::ReadWrite
                },
                optional: false,
                create: false,
            }),
            // The caller logs these with the run's id (or prints them, for an operator).
            Err(e) => rejected_mounts.push((req.clone(), e)),
        }
    }
    // Read-only: a read-only bind does not stop connect() on host.sock, and nothing else in the
    // run dir is the sandbox's business.
    let mut run_dir = ro(l.run_dir(&input.run_id), sandbox_paths::RUN_DIR, false);
    run_dir.create = true;
    mounts.push(run_dir);

    let runs_runner = input.command.is_none();
    let command = match input.command.clone() {
        Some(cmd) if cmd.is_empty() => return Err(PlanError::EmptyCommand),
        Some(cmd) => cmd,
        None => {
            mounts.push(ro(cfg.runner_path(), sandbox_paths::RUNNER_BIN, false));
            vec![sandbox_paths::RUNNER_BIN.to_owned()]
        }
    };
    let writable = vec![sandbox_paths::WORKSPACE.to_owned(), "/tmp".to_owned()];
    // Landlock: the runner applies it to itself as its first act (one exec and one bind mount
    // less per agent start); any other command goes through the shim.
    let landlock = input.init.clone().filter(|_| cfg.landlock);
    let self_confined = cfg.landlock && runs_runner && crate::probe::landlock_abi().is_some();
    let init = landlock.filter(|_| !runs_runner);
    if let Some(init) = &init {
        mounts.push(ro(init.clone(), INIT_BIN, false));
    }

    let mut env = vec![
        ("HOME".to_owned(), sandbox_paths::GROUP.to_owned()),
        ("PATH".to_owned(), SANDBOX_PATH.to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("TZ".to_owned(), safe_tz(&input.timezone)),
        ("USER".to_owned(), "cambot".to_owned()),
        ("LOGNAME".to_owned(), "cambot".to_owned()),
        ("TMPDIR".to_owned(), "/tmp".to_owned()),
        ("CAMBOT_HOST_SOCK".to_owned(), HOST_SOCK.to_owned()),
        ("CAMBOT_RUN_ID".to_owned(), input.run_id.as_str().to_owned()),
        ("CAMBOT_TENANT".to_owned(), t.as_str().to_owned()),
        ("CAMBOT_GROUP".to_owned(), g.as_str().to_owned()),
        (
            "CAMBOT_IS_MAIN".to_owned(),
            if input.is_main { "1" } else { "0" }.to_owned(),
        ),
    ];
    if self_confined {
        env.push((
            sandbox_paths::ENV_LANDLOCK_RW.to_owned(),
            writable.join(":"),
        ));
    }
    // Only the runner reads it; operator commands and the local model keep plain stdio.
    if runs_runner {
        let fds = RUNNER_STDIO_FDS.map(|fd| fd.to_string()).join(",");
        env.push((sandbox_paths::ENV_STDIO_FDS.to_owned(), fds));
    }

    Ok(RunPlan {
        run_id: input.run_id.clone(),
        tenant: t.clone(),
        group: g.clone(),
        is_main: input.is_main,
        system: input.host.entries.clone(),
        mounts,
        etc: generated_etc(&identity),
        env,
        identity,
        limits: Limits {
            memory_bytes,
            pids: cfg.pids,
            cpus: cfg.cpus,
            tmp_bytes: cfg.tmp_size_mb.saturating_mul(1024 * 1024),
            shm_bytes: cfg.shm_size_mb.saturating_mul(1024 * 1024),
            open_files: cfg.open_files,
            output_cap_bytes: cfg.output_cap_bytes,
            max_line_bytes: cfg.max_line_bytes.max(1024),
        },
        network: NetworkPolicy::None,
        timeouts,
        command,
        cwd: sandbox_paths::GROUP.to_owned(),
        init,
        writable,
        seccomp: cfg.seccomp,
        rejected_mounts,
    })
}

impl RunPlan {
    /// The group folder on the host.
    pub fn group_dir(&self) -> Option<&Path> {
        self.mounts
            .iter()
            .find(|m| m.dst == sandbox_paths::GROUP)
            .map(|m| m.src.as_path())
    }

    /// The descriptors the command takes its stdio from instead of 0, 1 and 2, when the plan
    /// announces them (`CAMBOT_STDIO_FDS`, runner plans only): a backend that can hands the
    /// pipes over there (see [`RUNNER_STDIO_FDS`]).
    pub fn stdio_fds(&self) -> Option<[i32; 3]> {
        self.env
            .iter()
            .any(|(k, _)| k == sandbox_paths::ENV_STDIO_FDS)
            .then_some(RUNNER_STDIO_FDS)
    }

    /// argv actually exec'd inside: the shim (when set) in front of the command.
    pub fn full_command(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if self.init.is_some() {
            argv.push(INIT_BIN.to_owned());
            for w in &self.writable {
                argv.push("--rw".to_owned());
                argv.push(w.clone());
            }
            argv.push("--".to_owned());
        }
        argv.extend(self.command.iter().cloned());
        argv
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
