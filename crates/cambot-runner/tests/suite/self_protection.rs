//! The runner's self-protection at its own boundary. It refuses to start when the plan requires
//! Landlock and the kernel will not enforce it: the kernel refuses a 17th nested Landlock domain
//! (E2BIG), so the runner is started under 16 layers of the real shim, a real refusal by the
//! real kernel. And it takes its protocol from handed-over descriptors when told to (the way to
//! keep bwrap's pid 1 away from them). The attacks from inside the real sandbox are in
//! `cambot-agent`'s `tests/suite/self_protection.rs`.

use std::process::Stdio;

use cambot_protocol::RunnerToHost;
use tokio::io::AsyncWriteExt;

/// The runner's exit code, stdout and stderr under `layers` nested Landlock domains, with
/// `CAMBOT_LANDLOCK_RW` set and a (never answered) start line on stdin.
async fn run_under_layers(layers: usize) -> (i32, String, String) {
    let mut argv: Vec<String> = Vec::new();
    for _ in 0..layers {
        argv.extend([
            env!("CARGO_BIN_EXE_cambot-sandbox-init").to_owned(),
            "--rw".to_owned(),
            "/tmp".to_owned(),
            "--".to_owned(),
        ]);
    }
    argv.push(env!("CARGO_BIN_EXE_cambot-runner").to_owned());
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("CAMBOT_LANDLOCK_RW", "/tmp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Not a valid start: a runner that reads it answers with a warning, one that refused never
    // reads it.
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"{\"type\":\"bogus\"}\n").await;
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_plan_requiring_landlock_that_the_kernel_will_not_enforce_is_refused() {
    // 15 layers: the runner's own is the 16th, accepted; it reads input and exits for want of
    // a start. (On a kernel without Landlock even this refuses: the test says so.)
    let (code, stdout, stderr) = run_under_layers(15).await;
    assert_eq!(code, 2, "the control run did not start: {stdout}{stderr}");
    assert!(stdout.contains("\"type\":\"warning\""), "{stdout}");

    // 16 layers: the runner's own would be the 17th. One error line, exit 3, nothing read.
    let (code, stdout, stderr) = run_under_layers(16).await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    match RunnerToHost::parse_line(lines[0]).unwrap() {
        RunnerToHost::Error { message, retryable } => {
            assert!(
                message.contains("requires Landlock but it cannot be enforced"),
                "{message}"
            );
            assert!(!retryable);
        }
        other => panic!("expected an error line, got {other:?}"),
    }
    assert!(stderr.contains("refusing to start"), "{stderr}");
}

/// The runner started by bash with its real stdio on 3, 4 and 5 and `/dev/null` on 0, 1 and 2
/// (how a backend hands it over apart from bwrap's pid 1); `spec` goes into CAMBOT_STDIO_FDS.
async fn run_with_stdio_on_3_4_5(spec: Option<&str>) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(r#"exec "$0" 3<&0 4>&1 5>&2 </dev/null >/dev/null 2>/dev/null"#)
        .arg(env!("CARGO_BIN_EXE_cambot-runner"))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(spec) = spec {
        cmd.env("CAMBOT_STDIO_FDS", spec);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"{\"type\":\"bogus\"}\n").await;
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_runner_takes_its_protocol_from_handed_over_descriptors() {
    // Handed over: the bogus line is read from 3 and answered on 4, the log goes to 5.
    let (code, stdout, stderr) = run_with_stdio_on_3_4_5(Some("3,4,5")).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("\"type\":\"warning\""), "{stdout}");
    assert!(
        stderr.contains("stdin ended before a start line"),
        "{stderr}"
    );

    // Not told: it talks to /dev/null and the real pipes stay silent.
    let (code, stdout, stderr) = run_with_stdio_on_3_4_5(None).await;
    assert_eq!(code, 2);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));

    // A malformed hand-over refuses to start.
    let (code, _, _) = run_with_stdio_on_3_4_5(Some("3,4")).await;
    assert_eq!(code, 3);
}
