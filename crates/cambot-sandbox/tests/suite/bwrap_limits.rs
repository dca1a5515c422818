//! The limits suite against the real bwrap backend: memory balloon, fork bomb, busy loop,
//! output flood, hung run with escaped grandchildren.

use std::time::Duration;

use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::SupervisorEvent;
use cambot_sandbox::TimeoutPolicy;
use cambot_sandbox::supervise;

use super::common::*;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn memory_balloon_is_killed() {
    let cfg = SandboxConfig {
        memory_mb: 64,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::memory_balloon_is_killed", &cfg).await else {
        return;
    };
    if require("bwrap::memory_balloon_is_killed", cgroups_available()).is_none() {
        return;
    }
    let env = Env::new();
    let out = run(
        &*b,
        &env.plan(
            "balloon",
            &cfg,
            "echo started=1; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived=${#x}",
        ),
    )
    .await;
    assert_eq!(out.get("started"), Some("1"), "{out:#?}");
    assert_eq!(out.get("survived"), None, "{out:#?}");
    assert!(!out.exit.limits_degraded);
    assert!(out.exit.oom_killed, "{:?}", out.exit);
    assert_ne!(out.exit.code, Some(0), "{out:#?}");
    report("SUITE bwrap limits: ran");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn fork_bomb_stops_at_the_pids_limit() {
    let cfg = SandboxConfig {
        pids: 24,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::fork_bomb_stops_at_the_pids_limit", &cfg).await else {
        return;
    };
    if require("bwrap::fork_bomb", cgroups_available()).is_none() {
        return;
    }
    let env = Env::new();
    let script = "/usr/bin/python3 - <<'PY'
import os, time, errno
n = 0
try:
    while n < 500:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print('err=' + errno.errorcode[e.errno])
print('forked=%d' % n)
PY";
    let out = run(&*b, &env.plan("bomb", &cfg, script)).await;
    assert_eq!(out.expect("err"), "EAGAIN", "{out:#?}");
    let forked: u64 = out.expect("forked").parse().unwrap();
    assert!(forked < 24, "forked {forked} with pids.max 24");
    assert!(forked > 0);
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn busy_loop_is_throttled() {
    let cfg = SandboxConfig {
        cpus: 0.1,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::busy_loop_is_throttled", &cfg).await else {
        return;
    };
    if require("bwrap::busy_loop", cgroups_available()).is_none() {
        return;
    }
    let env = Env::new();
    let plan = env.plan("busy", &cfg, "echo '{\"started\":1}'; while :; do :; done");
    let child = b.spawn(&plan).await.unwrap();
    let mut sup = supervise(child, plan.timeouts);
    assert!(matches!(
        sup.events.recv().await,
        Some(SupervisorEvent::Line(_))
    ));
    let stat = job_dir("cpu", plan.run_id.as_str())
        .unwrap()
        .join("cpu.stat");
    let throttled = async {
        loop {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let n = tokio::time::timeout(Duration::from_secs(60), throttled)
        .await
        .expect("the busy loop is throttled");
    assert!(n > 0);
    sup.kill_switch().kill();
    let exit = sup.wait().await;
    assert!(exit.killed && !exit.is_success());
    assert!(!stat.parent().unwrap().exists(), "job cgroup removed");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn output_flood_is_truncated_and_killed() {
    let cfg = SandboxConfig {
        output_cap_bytes: 1024 * 1024,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::output_flood", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(&*b, &env.plan("flood", &cfg, "yes '{\"x\":1}'")).await;
    assert!(out.exit.output_truncated, "{:?}", out.exit);
    assert!(out.exit.killed);
    assert!(out.events.contains(&SupervisorEvent::OutputTruncated));
    let bytes: usize = out.lines.iter().map(|l| l.len() + 1).sum();
    assert!(bytes <= 1024 * 1024);
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn overlong_line_becomes_an_error_event() {
    let cfg = SandboxConfig {
        max_line_bytes: 2048,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::overlong_line", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(
        &*b,
        &env.plan(
            "long",
            &cfg,
            "head -c 5000 /dev/zero | tr '\\0' a; echo; echo '{\"ok\":1}'",
        ),
    )
    .await;
    assert_eq!(
        out.events,
        vec![
            SupervisorEvent::LineTooLong { bytes: 5000 },
            SupervisorEvent::Line("{\"ok\":1}".to_owned())
        ]
    );
    assert_eq!(out.exit.code, Some(0));
}

const HUNG: &str = "setsid sleep 8765431 & nohup sleep 8765432 >/dev/null 2>&1 & (sleep 8765433 &); \
                    echo '{\"started\":1}'; sleep 8765434";

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn hung_run_and_its_grandchildren_are_gone_after_the_timeout() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::hung_run", &cfg).await else {
        return;
    };
    let env = Env::new();
    let plan = env.plan("hung", &cfg, HUNG);
    let out = run_with(
        &*b,
        &plan,
        TimeoutPolicy {
            hard: Duration::from_secs(2),
            lifetime: Duration::from_secs(3600),
        },
    )
    .await;
    assert!(out.exit.timed_out, "{:?}", out.exit);
    assert!(out.exit.had_output);
    assert!(
        out.exit.is_success(),
        "a timeout after output is a clean finish"
    );
    assert_eq!(host_processes_with("sleep 876543"), Vec::<i32>::new());
    if let Some(d) = job_dir("pids", plan.run_id.as_str()) {
        assert!(!d.exists(), "job cgroup removed");
    }
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn killed_run_leaves_no_process_behind() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::killed_run", &cfg).await else {
        return;
    };
    let env = Env::new();
    let plan = env.plan("killed", &cfg, &HUNG.replace("87654", "97654"));
    let child = b.spawn(&plan).await.unwrap();
    let mut sup = supervise(child, plan.timeouts);
    assert!(matches!(
        sup.events.recv().await,
        Some(SupervisorEvent::Line(_))
    ));
    // The four sleeps (and the shell and bwrap, whose argv holds the script).
    assert!(host_processes_with("sleep 976543").len() >= 4);
    sup.kill_switch().kill();
    let exit = sup.wait().await;
    assert!(
        exit.killed && !exit.timed_out && !exit.is_success(),
        "{exit:?}"
    );
    assert_eq!(host_processes_with("sleep 976543"), Vec::<i32>::new());
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn dropping_the_supervisor_kills_the_run() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::dropping_the_supervisor", &cfg).await else {
        return;
    };
    let env = Env::new();
    let plan = env.plan("dropped", &cfg, &HUNG.replace("87654", "77654"));
    let child = b.spawn(&plan).await.unwrap();
    let mut sup = supervise(child, plan.timeouts);
    assert!(matches!(
        sup.events.recv().await,
        Some(SupervisorEvent::Line(_))
    ));
    drop(sup);
    let gone = async {
        while !host_processes_with("sleep 776543").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .expect("all processes gone");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn without_cgroups_rlimits_hold_and_the_run_says_degraded() {
    let cfg = SandboxConfig {
        memory_mb: 64,
        pids: 16,
        cgroups: false,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::rlimit_fallback", &cfg).await else {
        return;
    };
    let env = Env::new();
    // RLIMIT_NPROC counts every process of the uid: a uid of its own keeps other tests out.
    let g = env.layout.group_dir(
        &env.tenant,
        &cambot_protocol::GroupFolder::new("degraded").unwrap(),
    );
    std::fs::create_dir_all(&g).unwrap();
    std::os::unix::fs::chown(&g, Some(23456), Some(23456)).unwrap();
    let forks = run(
        &*b,
        &env.plan(
            "degraded",
            &cfg,
            "echo as=$(ulimit -v); echo nproc=$(ulimit -u)
(for i in $(seq 40); do sleep 30 & done) 2>/dev/null; p=(/proc/[0-9]*); echo running=${#p[@]}",
        ),
    )
    .await;
    assert!(forks.exit.limits_degraded, "{:?}", forks.exit);
    assert_eq!(forks.expect("as"), (64 * 1024).to_string(), "{forks:#?}");
    assert_eq!(forks.expect("nproc"), "16");
    let running: usize = forks.expect("running").parse().unwrap();
    assert!(running <= 16, "{running} processes with RLIMIT_NPROC 16");
    let balloon = run(
        &*b,
        &env.plan(
            "degraded",
            &cfg,
            "echo started=1; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived=${#x}",
        ),
    )
    .await;
    assert!(balloon.exit.limits_degraded);
    assert_eq!(balloon.get("started"), Some("1"), "{balloon:#?}");
    assert_eq!(balloon.get("survived"), None, "{balloon:#?}");
}

/// A daemon killed with SIGKILL leaves its runs' (empty) cgroups behind: the next start removes
/// them, but never a recent one (another daemon's run about to join it) or one with a process.
#[tokio::test]
#[ignore = "needs root and a memory cgroup: run by scripts/test.sh"]
async fn cgroups_left_by_a_killed_daemon_are_removed_at_start() {
    let test = "bwrap::cgroups_left_by_a_killed_daemon_are_removed_at_start";
    if require(test, cgroups_available()).is_none() {
        return;
    }
    let pid = std::process::id();
    // Named like run cgroups: `cambot-<32 hex digits of a run id>`.
    let leftover = job_dir("memory", &format!("{pid:08x}{:024x}", 1)).unwrap();
    let fresh = job_dir("memory", &format!("{pid:08x}{:024x}", 2)).unwrap();
    let busy = job_dir("memory", &format!("{pid:08x}{:024x}", 3)).unwrap();
    let not_ours = job_dir("memory", &format!("other-{pid}")).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for dir in [&leftover, &fresh, &busy, &not_ours] {
        std::fs::create_dir(dir).unwrap();
    }
    // The process goes in before the directory looks old: a backend made by a test running
    // alongside sweeps too, and would take an old empty one.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(busy.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    for dir in [&leftover, &busy, &not_ours] {
        std::fs::File::open(dir)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }

    let backend = cambot_sandbox::BwrapBackend::new(test_config());

    let (leftover_gone, fresh_kept, busy_kept, not_ours_kept) = (
        !leftover.exists(),
        fresh.exists(),
        busy.exists(),
        not_ours.exists(),
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    for dir in [&leftover, &fresh, &busy, &not_ours] {
        // The sleeper's cgroup empties as it is reaped; retry briefly.
        for _ in 0..100 {
            if !dir.exists() || std::fs::remove_dir(dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    backend.unwrap();
    assert!(leftover_gone, "an old empty run cgroup was not removed");
    assert!(fresh_kept, "a recent run cgroup was removed");
    assert!(busy_kept, "a run cgroup with a process in it was removed");
    assert!(not_ours_kept, "a cgroup not named like a run's was removed");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_run_that_keeps_printing_is_stopped_at_its_absolute_lifetime() {
    let cfg = test_config();
    let Some(b) = bwrap("bwrap::absolute_lifetime", &cfg).await else {
        return;
    };
    let env = Env::new();
    // A line every 0.2 s: the hard timeout (1 s, reset by each line) never fires; the lifetime
    // does.
    let plan = env.plan(
        "chatty",
        &cfg,
        "sleep 7765435 & while true; do echo '{\"tick\":1}'; sleep 0.2; done",
    );
    let out = run_with(
        &*b,
        &plan,
        TimeoutPolicy {
            hard: Duration::from_secs(1),
            lifetime: Duration::from_secs(3),
        },
    )
    .await;
    assert!(
        out.lines.len() >= 5,
        "the run printed all along: {} lines",
        out.lines.len()
    );
    assert!(
        out.exit.timed_out && out.exit.lifetime_exceeded && !out.exit.is_success(),
        "{:?}",
        out.exit
    );
    assert_eq!(host_processes_with("sleep 7765435"), Vec::<i32>::new());
}

/// `RLIMIT_NOFILE` and `RLIMIT_CORE` as seen from inside, and what they stop.
const RLIMITS: &str = r#"echo nofile=$(ulimit -n); echo nofile_hard=$(ulimit -Hn)
echo core=$(ulimit -c); echo core_hard=$(ulimit -Hc)
echo raise=$( (ulimit -n 1024) 2>/dev/null && echo yes || echo no)
grep -E '^Max (open files|core file size)' /proc/self/limits | tr -s ' ' | sed 's/ *$//; s/^/limits=/'
/usr/bin/python3 - <<'PY'
import errno
files = []
try:
    for _ in range(300):
        files.append(open('/dev/null'))
    print('opened=300')
except OSError as e:
    print('opened=%d' % len(files))
    print('err=' + errno.errorcode[e.errno])
PY"#;

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn few_descriptors_and_no_core_dumps_on_both_start_paths() {
    let test = "bwrap::few_descriptors_and_no_core_dumps_on_both_start_paths";
    let warm_cfg = test_config();
    let direct_cfg = SandboxConfig {
        warm_launchers: 0,
        ..test_config()
    };
    let Some(_) = bwrap(test, &warm_cfg).await else {
        return;
    };
    let env = Env::new();
    for (name, cfg) in [("warm", &warm_cfg), ("direct", &direct_cfg)] {
        let b = cambot_sandbox::BwrapBackend::new(cfg.clone()).unwrap();
        b.probe().await.unwrap();
        let out = run(&b, &env.plan("fds", cfg, RLIMITS)).await;
        assert_eq!(
            b.warm_launches(),
            u64::from(name == "warm"),
            "{name}: wrong start path"
        );
        assert_eq!(out.expect("nofile"), "256", "{name}: {out:#?}");
        assert_eq!(out.expect("nofile_hard"), "256", "{name}");
        assert_eq!(out.expect("core"), "0", "{name}");
        assert_eq!(out.expect("core_hard"), "0", "{name}");
        assert_eq!(
            out.expect("raise"),
            "no",
            "{name}: the hard limit is 256 too"
        );
        let limits: Vec<&str> = out
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("limits="))
            .collect();
        assert_eq!(
            limits,
            [
                "Max core file size 0 0 bytes",
                "Max open files 256 256 files"
            ],
            "{name}"
        );
        assert_eq!(out.expect("err"), "EMFILE", "{name}: {out:#?}");
        let opened: u32 = out.expect("opened").parse().unwrap();
        assert!(opened < 256, "{name}: opened {opened}");
    }
    // The key is honoured.
    let cfg = SandboxConfig {
        open_files: 64,
        warm_launchers: 0,
        ..test_config()
    };
    let b = cambot_sandbox::BwrapBackend::new(cfg.clone()).unwrap();
    let out = run(&b, &env.plan("fds64", &cfg, RLIMITS)).await;
    assert_eq!(out.expect("nofile"), "64", "{out:#?}");
    assert_eq!(out.expect("err"), "EMFILE");
}

#[tokio::test]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn dev_shm_is_size_capped() {
    // Landlock keeps /dev/shm read-only where it applies; the cap is what holds without it.
    let cfg = SandboxConfig {
        landlock: false,
        shm_size_mb: 4,
        ..test_config()
    };
    let Some(b) = bwrap("bwrap::dev_shm_is_size_capped", &cfg).await else {
        return;
    };
    let env = Env::new();
    let out = run(
        &*b,
        &env.plan(
            "shmcap",
            &cfg,
            "err=$(dd if=/dev/zero of=/dev/shm/big bs=1M count=32 2>&1 >/dev/null); echo dd=$?
case $err in *'No space left on device'*) echo enospc=yes;; *) echo enospc=no;; esac
echo size=$(stat -c %s /dev/shm/big)
echo fs=$(stat -f -c %T /dev/shm)",
        ),
    )
    .await;
    assert_ne!(out.expect("dd"), "0", "{out:#?}");
    assert_eq!(out.expect("enospc"), "yes", "{out:#?}");
    assert_eq!(out.expect("fs"), "tmpfs");
    let size: u64 = out.expect("size").parse().unwrap();
    assert!(size > 0 && size <= 4 * 1024 * 1024, "{size}");
}
