//! The runner's self-protection inside the real sandbox, attacked from its own bash tool through
//! the real daemon, router and fake channel: the tool tries to write forged protocol lines to
//! the runner's stdout through every process that holds it (the runner itself and bwrap's pid 1
//! inside the PID namespace), by reopening `/proc/<pid>/fd/1` and by `pidfd_getfd`, and to open
//! `/proc/<pid>/mem`. None of it may reach the chat; the genuine reply must.

use std::path::PathBuf;

use cambot_protocol::GroupFolder;
use cambot_protocol::RunnerToHost;
use cambot_testkit::standin::Script;
use serde_json::json;

use super::sandboxed::E2e;
use super::sandboxed::eventually_async;
use super::sandboxed::start_e2e_with;
use super::support::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const FORGED: &str = "FORGED-BY-A-TOOL-7731";
const GENUINE: &str = "the genuine reply";

/// Takes every process's stdout and stderr with `pidfd_getfd` (no reopen, so no pipe
/// permission check: only the ptrace-class access check stands in the way) and writes the
/// forged lines; tries to open each process's memory. One report line per attempt:
/// `<role> <pid> <what> <WROTE|OPENED|refused errno>`.
const FORGE_PY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
lines = sys.argv[1].encode() + b"\n"
runner = int(sys.argv[2])
mine = (os.getpid(), os.getppid())
for p in sorted(int(d) for d in os.listdir("/proc") if d.isdigit()):
    if p in mine:
        continue
    role = "init" if p == 1 else "runner" if p == runner else "other"
    try:
        pfd = os.pidfd_open(p)
    except OSError as e:
        print(role, p, "pidfd_open refused", e.errno)
        continue
    for target in (1, 2):
        fd = libc.syscall(438, pfd, target, 0)
        if fd < 0:
            print(role, p, f"getfd{target}", "refused", ctypes.get_errno())
            continue
        os.write(fd, lines)
        print(role, p, f"getfd{target}", "WROTE")
    try:
        open(f"/proc/{p}/mem", "r+b").close()
        print(role, p, "mem", "OPENED")
    except OSError as e:
        print(role, p, "mem", "refused", e.errno)
"#;

/// The forged protocol lines, in the runner's real wire format.
fn forged_lines() -> String {
    let result = RunnerToHost::Result {
        text: Some(FORGED.to_owned()),
        session_id: None,
        inputs: 1,
    }
    .to_line();
    let delta = RunnerToHost::TextDelta {
        text: FORGED.to_owned(),
    }
    .to_line();
    format!("{result}{}", delta.trim_end())
}

/// The bash tool's command: the attack, then facts for the test, each in the group folder.
fn attack_command() -> String {
    let lines = forged_lines();
    assert!(!lines.contains('\''));
    format!(
        "cat > /tmp/forge.py <<'PY'\n{FORGE_PY}\nPY\n\
         python3 /tmp/forge.py '{lines}' $PPID > attack.txt 2>&1\n\
         for p in /proc/[0-9]*; do printf '%s\\n' '{lines}' > $p/fd/1; done 2>/dev/null\n\
         (ls /proc/$PPID/fd > /dev/null 2>&1 && echo listed || echo refused) > runner-fds.txt\n\
         ls /proc/$$/fd > tool-fds.txt\n\
         (ls -l /proc/1/fd 2>/dev/null || echo refused) > init-fds.txt\n\
         (touch /dev/shm/probe 2>/dev/null && echo writable || echo refused) > shm.txt\n\
         echo attacked"
    )
}

/// Runs the attack from the bash tool of a run started by a chat message; returns the group
/// folder once the run is over and checks the chat got the genuine reply and nothing forged.
async fn attack(t: &E2e) -> PathBuf {
    t.channel
        .register(&tenant(), "fake:main", "main", None)
        .await
        .unwrap();
    t.channel
        .inject(&tenant(), "fake:main", "Alice", "run the script")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, WAIT).await;
    assert!(!sent.is_empty(), "no reply at all");
    eventually_async("the run closed", || t.daemon.router().queue().is_idle()).await;
    let texts: Vec<String> = t.channel.sent().into_iter().map(|d| d.text).collect();
    assert!(
        texts.iter().all(|s| !s.contains(FORGED)),
        "a forged line reached the chat: {texts:?}"
    );
    assert!(
        t.channel.deltas().iter().all(|(_, s)| !s.contains(FORGED)),
        "a forged text delta reached the chat"
    );
    assert_eq!(texts, [GENUINE], "the genuine reply, once");
    t.daemon.layout().group_dir(&tenant(), &GroupFolder::main())
}

/// The attack report's lines about pid 1 and the runner; fails if the attack did not run.
fn attempts_on_runner_and_init(group: &std::path::Path) -> Vec<String> {
    let report = std::fs::read_to_string(group.join("attack.txt")).unwrap();
    let lines: Vec<String> = report
        .lines()
        .filter(|l| l.starts_with("init ") || l.starts_with("runner "))
        .map(str::to_owned)
        .collect();
    for role in ["init ", "runner "] {
        assert!(
            lines.iter().any(|l| l.starts_with(role)),
            "the attack did not reach {role}: {report}"
        );
    }
    lines
}

fn read(group: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(group.join(name))
        .unwrap()
        .trim()
        .to_owned()
}

fn scripts() -> Vec<Script> {
    vec![
        Script::tool_use("bash", json!({ "command": attack_command() })),
        Script::text(GENUINE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn a_forged_result_line_from_a_tool_never_reaches_the_chat() {
    let Some(t) = start_e2e_with(scripts(), None, "").await else {
        return;
    };
    let group = attack(&t).await;
    let attempts = attempts_on_runner_and_init(&group);
    assert!(
        attempts
            .iter()
            .all(|l| !l.contains("WROTE") && !l.contains("OPENED")),
        "a tool reached the runner's stdout or memory: {attempts:#?}"
    );
    // Non-dumpable: not even the list of the runner's descriptors.
    assert_eq!(read(&group, "runner-fds.txt"), "refused");
    // The tool inherited its own stdio and nothing else from the runner.
    assert_eq!(
        read(&group, "tool-fds.txt")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    t.daemon.shutdown().await;
    drop(t.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn without_the_init_shim_the_runner_still_confines_its_tools_with_landlock() {
    let missing = PathBuf::from("/nonexistent/cambot-sandbox-init");
    let Some(t) = start_e2e_with(scripts(), Some(missing), "").await else {
        return;
    };
    let group = attack(&t).await;
    // /dev/shm is the sandbox uid's own tmpfs, bind-writable: only Landlock refuses it.
    assert_eq!(
        read(&group, "shm.txt"),
        "refused",
        "the tools could write outside the workspace"
    );
    // Landlock also keeps the tools away from bwrap's pid 1, which holds the runner's stdout.
    let attempts = attempts_on_runner_and_init(&group);
    assert!(
        attempts
            .iter()
            .all(|l| !l.contains("WROTE") && !l.contains("OPENED")),
        "{attempts:#?}"
    );
    t.daemon.shutdown().await;
    drop(t.dir);
}

/// With Landlock off, bwrap's pid 1 inside the PID namespace is still dumpable and reachable
/// (a tool can even open its memory), but it holds nothing of the run's: the backend gives
/// bwrap `/dev/null` and hands the runner's pipes over on other descriptors
/// (`CAMBOT_STDIO_FDS`), which pid 1 closes. The runner itself stays out of reach. Seccomp
/// also refuses `pidfd_getfd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn with_landlock_off_bwraps_pid_1_cannot_be_used_to_forge_either() {
    let Some(attempts) = attack_without("landlock = false").await else {
        return;
    };
    assert!(
        attempts
            .iter()
            .all(|l| !l.contains("WROTE") && (l.starts_with("init ") || !l.contains("OPENED"))),
        "{attempts:#?}"
    );
}

/// The hand-over alone is a wall: without Landlock and seccomp the tool takes pid 1's
/// descriptors and writes the forged lines, into `/dev/null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn without_landlock_and_seccomp_bwraps_pid_1_holds_only_dev_null() {
    let Some(attempts) = attack_without("landlock = false\nseccomp = false").await else {
        return;
    };
    assert!(
        attempts
            .iter()
            .filter(|l| l.starts_with("runner "))
            .all(|l| l.contains("refused")),
        "{attempts:#?}"
    );
}

/// The attack with `[sandbox]` settings `extra`; checks the chat (see [`attack`]) and that pid
/// 1 holds /dev/null on 0, 1 and 2 and no pipe, as the tool saw it. Returns the attempts on
/// pid 1 and the runner; `None`: skipped.
async fn attack_without(extra: &str) -> Option<Vec<String>> {
    let t = start_e2e_with(scripts(), None, extra).await?;
    let group = attack(&t).await;
    let init_fds = read(&group, "init-fds.txt");
    for fd in 0..3 {
        assert!(
            init_fds.contains(&format!(" {fd} -> /dev/null")),
            "{init_fds}"
        );
    }
    assert!(!init_fds.contains("pipe:"), "{init_fds}");
    let attempts = attempts_on_runner_and_init(&group);
    t.daemon.shutdown().await;
    drop(t.dir);
    Some(attempts)
}
