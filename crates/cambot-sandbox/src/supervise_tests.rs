#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::io::DuplexStream;
use tokio::sync::Mutex;

use super::*;
use crate::backend::ChildControl;
use crate::error::SandboxError;

const HARD: Duration = Duration::from_secs(1830);

struct Shared {
    stdout: Mutex<Option<DuplexStream>>,
    stderr: Mutex<Option<DuplexStream>>,
    exit: watch::Sender<Option<ExitInfo>>,
    kills: AtomicUsize,
}

impl Shared {
    async fn finish(&self, info: ExitInfo) {
        self.stdout.lock().await.take();
        self.stderr.lock().await.take();
        self.exit.send_replace(Some(info));
    }
}

struct Fake(Arc<Shared>, watch::Receiver<Option<ExitInfo>>);

impl ChildControl for Fake {
    fn wait(&mut self) -> BoxFuture<'_, Result<ExitInfo, SandboxError>> {
        async move {
            loop {
                if let Some(e) = self.1.borrow().clone() {
                    return Ok(e);
                }
                if self.1.changed().await.is_err() {
                    return Err(SandboxError::Spawn("gone".into()));
                }
            }
        }
        .boxed()
    }

    fn kill(&mut self) -> BoxFuture<'_, Result<(), SandboxError>> {
        async move {
            self.0.kills.fetch_add(1, Ordering::SeqCst);
            self.0
                .finish(ExitInfo {
                    code: None,
                    signal: Some(9),
                    ..ExitInfo::default()
                })
                .await;
            Ok(())
        }
        .boxed()
    }
}

struct Handle(Arc<Shared>);

impl Handle {
    async fn out(&self, s: &str) {
        let mut g = self.0.stdout.lock().await;
        g.as_mut().unwrap().write_all(s.as_bytes()).await.unwrap();
    }

    async fn err(&self, s: &str) {
        let mut g = self.0.stderr.lock().await;
        g.as_mut().unwrap().write_all(s.as_bytes()).await.unwrap();
    }

    async fn exit(&self, code: i32) {
        self.0
            .finish(ExitInfo {
                code: Some(code),
                ..ExitInfo::default()
            })
            .await;
    }

    fn kills(&self) -> usize {
        self.0.kills.load(Ordering::SeqCst)
    }
}

fn fake(cap: u64, max_line: usize) -> (SandboxChild, Handle) {
    let (out_w, out_r) = tokio::io::duplex(1 << 20);
    let (err_w, err_r) = tokio::io::duplex(1 << 20);
    let (tx, rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        stdout: Mutex::new(Some(out_w)),
        stderr: Mutex::new(Some(err_w)),
        exit: tx,
        kills: AtomicUsize::new(0),
    });
    let child = SandboxChild {
        stdin: Box::new(tokio::io::sink()),
        stdout: Box::new(out_r),
        stderr: Box::new(err_r),
        limits_degraded: true,
        backend: "fake",
        output_cap_bytes: cap,
        max_line_bytes: max_line,
        control: Box::new(Fake(Arc::clone(&shared), rx)),
    };
    (child, Handle(shared))
}

fn policy() -> TimeoutPolicy {
    TimeoutPolicy::seed(
        Duration::from_secs(1800),
        Duration::from_secs(1800),
        Duration::from_secs(36_000),
    )
}

#[tokio::test(start_paused = true)]
async fn output_never_extends_the_absolute_lifetime() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let start = Instant::now();
    let lifetime = Duration::from_secs(1000);
    let mut sup = supervise(
        child,
        TimeoutPolicy::seed(
            Duration::from_secs(1800),
            Duration::from_secs(1800),
            lifetime,
        ),
    );
    // A line every 100 s keeps the hard timeout (1830 s) far away forever.
    let mut lines = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(100)) => h.out("{}\n").await,
            ev = sup.events.recv() => match ev {
                Some(_) => lines += 1,
                None => break,
            },
        }
    }
    let info = sup.wait().await;
    assert_eq!(start.elapsed(), lifetime, "killed exactly at the lifetime");
    assert!(lines >= 9, "the run was printing all along: {lines} lines");
    assert!(info.timed_out && info.lifetime_exceeded, "{info:?}");
    assert!(
        !info.is_success(),
        "reaching the lifetime is never a clean finish, even after output"
    );
    assert_eq!(h.kills(), 1);
}

#[tokio::test(start_paused = true)]
async fn output_then_hard_timeout_is_a_clean_finish() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let start = Instant::now();
    let mut sup = supervise(child, policy());
    h.out("{\"type\":\"result\"}\n").await;
    assert_eq!(
        sup.events.recv().await,
        Some(SupervisorEvent::Line("{\"type\":\"result\"}".into()))
    );
    let info = sup.wait().await;
    assert_eq!(start.elapsed(), HARD, "fires exactly at the hard timeout");
    assert!(
        info.timed_out && info.had_output && info.is_success(),
        "{info:?}"
    );
    assert_eq!(info.signal, Some(9));
    assert!(info.limits_degraded, "the child's flag is carried");
    assert_eq!(h.kills(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_output_and_timeout_is_a_failure() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let start = Instant::now();
    let info = supervise(child, policy()).wait().await;
    assert_eq!(start.elapsed(), HARD);
    assert!(
        info.timed_out && !info.had_output && !info.is_success(),
        "{info:?}"
    );
    assert_eq!(h.kills(), 1);
}

#[tokio::test(start_paused = true)]
async fn output_then_exit_zero_is_success() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let mut sup = supervise(child, policy());
    h.out("{\"a\":1}\n\n  \n{\"b\":2}\r\n").await;
    h.exit(0).await;
    let mut lines = Vec::new();
    while let Some(ev) = sup.events.recv().await {
        lines.push(ev);
    }
    assert_eq!(
        lines,
        vec![
            SupervisorEvent::Line("{\"a\":1}".into()),
            SupervisorEvent::Line("{\"b\":2}".into())
        ]
    );
    let info = sup.wait().await;
    assert!(
        !info.timed_out && info.had_output && info.is_success(),
        "{info:?}"
    );
    assert_eq!(h.kills(), 0);
}

#[tokio::test(start_paused = true)]
async fn each_stdout_line_resets_the_deadline_and_stderr_does_not() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let mut sup = supervise(child, policy());
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1000)).await;
        h.out("{}\n").await;
        sup.events.recv().await.unwrap();
    }
    // 3000 s in, past the hard timeout measured from the start, and still alive.
    assert_eq!(h.kills(), 0);
    let last_line = Instant::now();
    // stderr chatter never extends the deadline.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(300)).await;
        h.err("still working\n").await;
    }
    let info = sup.wait().await;
    assert_eq!(last_line.elapsed(), HARD);
    assert!(info.timed_out && info.had_output);
}

#[tokio::test(start_paused = true)]
async fn stdout_over_the_cap_is_truncated_and_killed() {
    let (child, h) = fake(64, 1 << 16);
    let mut sup = supervise(child, policy());
    h.out("{\"n\":1}\n").await;
    h.out(&"{\"flood\":true}\n".repeat(20)).await;
    let mut events = Vec::new();
    while let Some(ev) = sup.events.recv().await {
        events.push(ev);
    }
    assert_eq!(
        events.first(),
        Some(&SupervisorEvent::Line("{\"n\":1}".into()))
    );
    assert_eq!(events.last(), Some(&SupervisorEvent::OutputTruncated));
    let info = sup.wait().await;
    assert!(
        info.output_truncated && info.killed && !info.is_success(),
        "{info:?}"
    );
    assert_eq!(h.kills(), 1);
}

#[tokio::test(start_paused = true)]
async fn stderr_over_the_cap_is_truncated_but_not_killed() {
    let (child, h) = fake(64, 1 << 16);
    let sup = supervise(child, policy());
    h.err(&"x".repeat(100)).await;
    h.err("\nlast words: boom\n").await;
    h.exit(3).await;
    let info = sup.wait().await;
    assert!(info.output_truncated && !info.killed);
    assert_eq!(info.code, Some(3));
    assert_eq!(h.kills(), 0);
}

#[tokio::test(start_paused = true)]
async fn stderr_tail_is_kept_for_error_messages() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let sup = supervise(child, policy());
    h.err(&"noise\n".repeat(200)).await;
    h.err("fatal: the end\n").await;
    h.exit(1).await;
    let info = sup.wait().await;
    assert!(info.stderr_tail.ends_with("fatal: the end\n"));
    assert!(info.stderr_tail.chars().count() <= 200);
}

#[tokio::test(start_paused = true)]
async fn overlong_lines_become_error_events() {
    let (child, h) = fake(1 << 20, 16);
    let mut sup = supervise(child, policy());
    h.out(&format!("{}\n{{\"ok\":1}}\n", "a".repeat(40))).await;
    h.exit(0).await;
    let mut events = Vec::new();
    while let Some(ev) = sup.events.recv().await {
        events.push(ev);
    }
    assert_eq!(
        events,
        vec![
            SupervisorEvent::LineTooLong { bytes: 40 },
            SupervisorEvent::Line("{\"ok\":1}".into())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn kill_switch_kills_once() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let sup = supervise(child, policy());
    let k = sup.kill_switch();
    k.kill();
    k.kill();
    let info = sup.wait().await;
    assert!(info.killed && !info.timed_out && !info.is_success());
    assert_eq!(h.kills(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_goes_away_does_not_stall_the_run() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let mut sup = supervise(child, policy());
    let events = std::mem::replace(&mut sup.events, mpsc::channel(1).1);
    drop(events);
    for _ in 0..(EVENT_CAPACITY * 2) {
        h.out("{}\n").await;
    }
    h.exit(0).await;
    let info = sup.wait().await;
    assert!(info.is_success() && info.had_output);
}

#[tokio::test(start_paused = true)]
async fn dropping_supervised_kills_the_run() {
    let (child, h) = fake(1 << 20, 1 << 16);
    let sup = supervise(child, policy());
    drop(sup);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.kills(), 1);
}
