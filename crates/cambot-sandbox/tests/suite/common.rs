//! Shared fixtures: a temp data dir, plans for operator commands, and the skip rule.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_sandbox::BwrapBackend;
use cambot_sandbox::ExitInfo;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::PlanInput;
use cambot_sandbox::RunPlan;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::SupervisorEvent;
use cambot_sandbox::TimeoutPolicy;
use cambot_sandbox::build_plan;
use cambot_sandbox::supervise;

/// Written straight to stderr so that it shows even for passing tests (test.sh greps it).
pub(crate) fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `None` (with a SKIPPED line) when the tool is missing; a failure under CAMBOT_REQUIRE_ALL=1.
/// The tests calling it are `#[ignore]`d: only `scripts/test.sh` (or `--include-ignored`) runs them.
pub(crate) fn require<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(why) => {
            if std::env::var("CAMBOT_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{test}: required tool missing: {why}");
            }
            report(&format!("SKIPPED {test}: {why}"));
            None
        }
    }
}

/// The Landlock shim, built from the `cambot-runner` crate next to this test's profile dir
/// (`cargo build --workspace --bins`, which the test script runs first).
pub(crate) fn init_shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/all-<hash> -> target/<profile>/cambot-sandbox-init
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("cambot-sandbox-init"))
        .unwrap()
}

pub(crate) fn test_config() -> SandboxConfig {
    SandboxConfig {
        init_path: Some(init_shim()),
        launcher_path: Some(PathBuf::from(env!("CARGO_BIN_EXE_cambot-sandbox-launch"))),
        runner_path: Some(PathBuf::from("/nonexistent/cambot-runner")),
        memory_mb: 256,
        pids: 64,
        tmp_size_mb: 8,
        ..SandboxConfig::default()
    }
}

/// A probed bwrap backend: with the default config its warm launchers are waiting, so the runs
/// go through them (`warm_launchers = 0` tests the direct path).
pub(crate) async fn bwrap(test: &str, cfg: &SandboxConfig) -> Option<Arc<dyn SandboxBackend>> {
    if cfg.landlock {
        let shim = init_shim();
        require(
            test,
            if shim.is_file() {
                Ok(())
            } else {
                Err(format!(
                    "{} is not built (cargo build --workspace --bins)",
                    shim.display()
                ))
            },
        )?;
    }
    let b = require(
        test,
        BwrapBackend::new(cfg.clone()).map_err(|e| format!("{e} (run scripts/setup/sandbox.sh)")),
    )?;
    require(
        test,
        b.probe()
            .await
            .map_err(|e| format!("{e} (run scripts/setup/sandbox.sh)")),
    )?;
    Some(Arc::new(b))
}

/// A data dir with two tenants' groups and a secret in each place a sandbox must not see.
pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) layout: DataLayout,
    pub(crate) tenant: TenantId,
}

impl Env {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(dir.path().canonicalize().unwrap());
        let tenant = TenantId::new("acme").unwrap();
        let other = GroupFolder::new("other").unwrap();
        let g = layout.group_dir(&tenant, &other);
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("secret.txt"), "OTHER-GROUP-SECRET").unwrap();
        std::fs::write(layout.database(), "DATABASE-SECRET").unwrap();
        std::fs::create_dir_all(layout.vault_dir()).unwrap();
        std::fs::write(layout.vault_dir().join("key"), "VAULT-SECRET").unwrap();
        std::fs::create_dir_all(layout.global_dir(&tenant)).unwrap();
        std::fs::write(
            layout.global_dir(&tenant).join("CLAUDE.md"),
            "global memory",
        )
        .unwrap();
        // The data dir stays private to root: the sandbox uid must not need to traverse it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Self {
            _dir: dir,
            layout,
            tenant,
        }
    }

    pub(crate) fn plan(&self, group: &str, cfg: &SandboxConfig, script: &str) -> RunPlan {
        let mut input = PlanInput::new(
            self.layout.clone(),
            self.tenant.clone(),
            GroupFolder::new(group).unwrap(),
            fresh_run_id(),
        );
        input.command = Some(vec!["/bin/bash".into(), "-c".into(), script.into()]);
        input.init = cfg.landlock.then(init_shim);
        build_plan(input, cfg, &MountAllowlist::none("tests")).unwrap()
    }
}

pub(crate) fn fresh_run_id() -> RunId {
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = NEXT.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&nanos.to_le_bytes());
    b[8..].copy_from_slice(&n.to_le_bytes());
    RunId::from_bytes(b)
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) lines: Vec<String>,
    pub(crate) exit: ExitInfo,
    pub(crate) events: Vec<SupervisorEvent>,
}

impl Outcome {
    /// The value of a `key=value` line.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    pub(crate) fn expect(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("no {key}= line in {self:#?}"))
    }
}

pub(crate) async fn run(backend: &dyn SandboxBackend, plan: &RunPlan) -> Outcome {
    run_with(backend, plan, plan.timeouts).await
}

pub(crate) async fn run_with(
    backend: &dyn SandboxBackend,
    plan: &RunPlan,
    timeouts: TimeoutPolicy,
) -> Outcome {
    let child = backend.spawn(plan).await.expect("spawn");
    let mut sup = supervise(child, timeouts);
    drop(std::mem::replace(
        &mut sup.stdin,
        Box::new(tokio::io::sink()),
    ));
    let mut lines = Vec::new();
    let mut events = Vec::new();
    let collect = async {
        while let Some(ev) = sup.events.recv().await {
            if let SupervisorEvent::Line(l) = &ev {
                lines.push(l.clone());
            }
            events.push(ev);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .expect("the run ended");
    let exit = sup.wait().await;
    Outcome {
        lines,
        exit,
        events,
    }
}

/// Host pids whose command line contains `marker`.
pub(crate) fn host_processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
    }
    out
}

pub(crate) fn cgroups_available() -> Result<(), String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let v1 = text.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))
    });
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.contains("memory"));
    if !nix::unistd::geteuid().is_root() {
        return Err("cgroup limits need root here".to_owned());
    }
    if v1 || v2 {
        Ok(())
    } else {
        Err("no memory cgroup controller".to_owned())
    }
}

/// The job cgroup's directory for `controller` (v1) or the unified one (v2).
pub(crate) fn job_dir(controller: &str, run: &str) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut p = line.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            return Some(
                std::path::Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(path.trim_start_matches('/'))
                    .join(format!("cambot-{run}")),
            );
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(
        std::path::Path::new("/sys/fs/cgroup")
            .join(v2.trim_start_matches('/'))
            .join(format!("cambot-{run}")),
    )
}
