//! Warm launchers (`cambot_sandbox::launch`): a run they start is the same sandbox as one the
//! daemon forks directly, a dead or broken launcher never loses a run, and nothing of them
//! outlives the backend.

use std::path::PathBuf;

use cambot_sandbox::BwrapBackend;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;

use super::common::*;

/// Everything about the sandbox a process can see from inside, minus what differs per run.
const SELF_PORTRAIT: &str = r#"echo "id=$(id -u):$(id -g):$(id -G)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status | tr -s '\t ' ' ' | sed 's/^/status=/'
echo "core=$(ulimit -c)"
echo "nproc=$(ulimit -u)"
echo "cgroup=$(cut -d: -f2- /proc/self/cgroup | sort | tr '\n' ' ')"
awk '{print "mount=" $5, $6}' /proc/self/mountinfo
echo "fds=$(ls /proc/self/fd | sort -n | tr '\n' ' ')"
echo "env=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "pid=$$"
"#;

async fn backend(test: &str, cfg: &SandboxConfig) -> Option<BwrapBackend> {
    bwrap(test, cfg).await?;
    let b = BwrapBackend::new(cfg.clone()).unwrap();
    b.probe().await.unwrap();
    Some(b)
}

/// Pids of this process's children running `exe`.
fn children_running(exe: &std::path::Path) -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        let runs_exe = std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe);
        if ppid == Some(me.as_str()) && runs_exe {
            out.push(pid);
        }
    }
    out
}

/// A private copy of the launcher, so that a test can tell its backend's launchers from those
/// of the tests running next to it.
fn own_launcher() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cambot-sandbox-launch");
    std::fs::copy(env!("CARGO_BIN_EXE_cambot-sandbox-launch"), &copy).unwrap();
    (dir, copy)
}

/// A probed backend with a private launcher copy, and the pids of its two waiting launchers.
async fn backend_with_own_launcher(
    test: &str,
) -> Option<(tempfile::TempDir, BwrapBackend, SandboxConfig, Vec<i32>)> {
    let (dir, launcher) = own_launcher();
    let cfg = SandboxConfig {
        launcher_path: Some(launcher.clone()),
        ..test_config()
    };
    let b = backend(test, &cfg).await?;
    let launchers = children_running(&launcher);
    assert_eq!(launchers.len(), 2, "{launchers:?}");
    Some((dir, b, cfg, launchers))
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_warm_launch_builds_the_same_sandbox_as_a_direct_fork() {
    let warm_cfg = test_config();
    let direct_cfg = SandboxConfig {
        warm_launchers: 0,
        ..test_config()
    };
    let test = "bwrap::a_warm_launch_builds_the_same_sandbox_as_a_direct_fork";
    let Some(warm) = backend(test, &warm_cfg).await else {
        return;
    };
    let Some(direct) = backend(test, &direct_cfg).await else {
        return;
    };
    assert_eq!(warm.warm_launchers_ready(), 2, "probe fills the pool");
    assert_eq!(direct.warm_launchers_ready(), 0);
    let env = Env::new();
    let through_launcher = run(&warm, &env.plan("portrait", &warm_cfg, SELF_PORTRAIT)).await;
    assert_eq!(
        warm.warm_launches(),
        1,
        "the run did not go through a launcher"
    );
    let forked = run(&direct, &env.plan("portrait", &direct_cfg, SELF_PORTRAIT)).await;
    assert_eq!(direct.warm_launches(), 0);
    assert_eq!(through_launcher.exit.code, Some(0), "{through_launcher:#?}");
    assert!(!through_launcher.exit.limits_degraded);
    assert!(through_launcher.lines.len() > 10, "{through_launcher:#?}");
    pretty_assertions::assert_eq!(through_launcher.lines, forked.lines);
    // The portrait shows what both must be: not root, no capabilities, filtered.
    assert_eq!(through_launcher.expect("core"), "0");
    assert!(!through_launcher.expect("id").starts_with("0:"));
    assert!(
        through_launcher
            .lines
            .iter()
            .any(|l| l == "status=CapEff: 0000000000000000"),
        "{through_launcher:#?}"
    );
    assert!(
        through_launcher
            .lines
            .iter()
            .any(|l| l == "status=Seccomp: 2"),
        "{through_launcher:#?}"
    );
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_run_through_a_launcher_is_inside_its_limits() {
    let cfg = SandboxConfig {
        memory_mb: 64,
        ..test_config()
    };
    let test = "bwrap::a_run_through_a_launcher_is_inside_its_limits";
    let Some(b) = backend(test, &cfg).await else {
        return;
    };
    if require(test, cgroups_available()).is_none() {
        return;
    }
    let env = Env::new();
    let out = run(
        &b,
        &env.plan(
            "balloon",
            &cfg,
            "echo started=1; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived=${#x}",
        ),
    )
    .await;
    assert_eq!(b.warm_launches(), 1, "no warm launcher was used");
    assert_eq!(out.get("started"), Some("1"), "{out:#?}");
    assert_eq!(out.get("survived"), None, "{out:#?}");
    assert!(out.exit.oom_killed, "{:?}", out.exit);
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_dead_launcher_is_skipped_and_the_run_starts_directly() {
    let Some((_dir, b, cfg, launchers)) =
        backend_with_own_launcher("bwrap::a_dead_launcher_is_skipped").await
    else {
        return;
    };
    for pid in &launchers {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let env = Env::new();
    let out = run(&b, &env.plan("after", &cfg, "echo alive=yes")).await;
    assert_eq!(out.get("alive"), Some("yes"), "{out:#?}");
    assert_eq!(out.exit.code, Some(0));
    assert_eq!(b.warm_launches(), 0, "a dead launcher was used");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_launcher_that_dies_holding_the_order_does_not_lose_the_run() {
    let Some((_dir, b, cfg, launchers)) =
        backend_with_own_launcher("bwrap::a_launcher_that_dies_holding_the_order").await
    else {
        return;
    };
    // Stopped, a launcher still counts as waiting: the start hands it the order, which it
    // never reads. Killed then, it closes the control socket without a word, as an exec does.
    let signal_all = |signal| {
        for pid in &launchers {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal).unwrap();
        }
    };
    signal_all(nix::sys::signal::Signal::SIGSTOP);
    let env = Env::new();
    let plan = env.plan("orphaned-order", &cfg, "echo alive=yes");
    let kill_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        signal_all(nix::sys::signal::Signal::SIGKILL);
    };
    let (out, ()) = tokio::join!(run(&b, &plan), kill_later);
    assert_eq!(out.get("alive"), Some("yes"), "{out:#?}");
    assert_eq!(out.exit.code, Some(0));
    assert_eq!(
        b.warm_launches(),
        0,
        "a dead launcher was counted as a launch"
    );
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_launch_that_fails_reports_why_and_leaves_nothing() {
    let test = "bwrap::a_launch_that_fails_reports_why";
    let Some(real) = cambot_sandbox::SandboxConfig::default().bwrap_path() else {
        require::<()>(test, Err("bwrap not installed".to_owned()));
        return;
    };
    // A bwrap that disappears after the probe: only the launcher's exec can fail now.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bwrap");
    std::fs::copy(&real, &copy).unwrap();
    let cfg = SandboxConfig {
        bwrap_path: Some(copy.clone()),
        ..test_config()
    };
    let Some(b) = backend(test, &cfg).await else {
        return;
    };
    assert_eq!(b.warm_launchers_ready(), 2);
    std::fs::remove_file(&copy).unwrap();
    let env = Env::new();
    let plan = env.plan("gone", &cfg, "echo never");
    let err = b.spawn(&plan).await.unwrap_err().to_string();
    assert!(
        err.contains(&copy.display().to_string()) && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(b.warm_launches(), 0);
    if let Some(job) = job_dir("memory", plan.run_id.as_str()) {
        assert!(!job.exists(), "{} was left behind", job.display());
    }
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn dropping_the_backend_kills_its_launchers_and_removes_their_cgroups() {
    let Some((_dir, b, _cfg, launchers)) =
        backend_with_own_launcher("bwrap::dropping_the_backend_kills_its_launchers").await
    else {
        return;
    };
    // Their cgroups (v1 memory or v2), read from the host.
    let mut dirs = Vec::new();
    for pid in &launchers {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        for line in text.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            if path.contains("cambot-spare-") {
                for root in [
                    "/sys/fs/cgroup/memory",
                    "/sys/fs/cgroup",
                    "/sys/fs/cgroup/unified",
                ] {
                    let d = PathBuf::from(root).join(path.trim_start_matches('/'));
                    if d.is_dir() {
                        dirs.push(d);
                    }
                }
            }
        }
    }
    if cgroups_available().is_ok() {
        assert!(!dirs.is_empty(), "the launchers are not in spare cgroups");
    }
    drop(b);
    for pid in &launchers {
        let gone = !PathBuf::from(format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "));
        assert!(gone, "launcher {pid} outlived the backend");
    }
    for d in &dirs {
        assert!(!d.exists(), "{} outlived the backend", d.display());
    }
}

/// What the runner does with `CAMBOT_STDIO_FDS=6,7,8` (takes them onto 0, 1 and 2), then what
/// it holds and what bwrap's pid 1 holds.
const TAKES_HANDED_OVER_STDIO: &str = r#"exec 0<&6 1>&7 2>&8 6<&- 7>&- 8>&-
echo "mine=$(for f in 0 1 2; do readlink /proc/self/fd/$f | cut -d: -f1; done | tr '\n' ' ')"
for f in /proc/1/fd/*; do echo "init_fd=${f##*/} $(readlink "$f")"; done
echo "log line for the host" >&2
echo done=1"#;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_runner_plan_keeps_its_pipes_away_from_bwraps_pid_1() {
    let test = "bwrap::a_runner_plan_keeps_its_pipes_away_from_bwraps_pid_1";
    // Landlock off: it would keep this script from reading pid 1's descriptors (and the
    // runner confines itself; the shim in front of an operator command would not adopt them).
    let warm_cfg = SandboxConfig {
        landlock: false,
        ..test_config()
    };
    let direct_cfg = SandboxConfig {
        warm_launchers: 0,
        ..warm_cfg.clone()
    };
    let env = Env::new();
    for (name, cfg) in [("warm", &warm_cfg), ("direct", &direct_cfg)] {
        let Some(b) = backend(test, cfg).await else {
            return;
        };
        let mut plan = env.plan("stdio", cfg, TAKES_HANDED_OVER_STDIO);
        // What a runner plan carries (an operator command does not).
        plan.env.push((
            cambot_protocol::layout::sandbox_paths::ENV_STDIO_FDS.to_owned(),
            "6,7,8".to_owned(),
        ));
        let out = run(&b, &plan).await;
        assert_eq!(b.warm_launches(), u64::from(name == "warm"), "{name}");
        assert_eq!(out.expect("done"), "1", "{name}: {out:#?}");
        assert_eq!(out.expect("mine"), "pipe pipe pipe ", "{name}: {out:#?}");
        assert!(
            out.exit.stderr_tail.contains("log line for the host"),
            "{name}: the log did not reach the host: {out:#?}"
        );
        // Its stdio is /dev/null; anything else it holds is its own (an eventfd), no pipe.
        let init: Vec<&str> = out
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("init_fd="))
            .collect();
        assert_eq!(
            init[..3],
            ["0 /dev/null", "1 /dev/null", "2 /dev/null"],
            "{name}: {out:#?}"
        );
        assert!(
            init.iter().all(|f| !f.contains("pipe:")),
            "{name}: bwrap's pid 1 holds a pipe: {out:#?}"
        );
    }
}
