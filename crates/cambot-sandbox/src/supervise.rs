//! Supervision of one run: stdout as capped JSON lines into a bounded channel, stderr to
//! tracing, the output caps, and the seed's timeout rules (hard timeout reset by every stdout
//! line; a timeout after output is a clean finish) plus an absolute lifetime no output extends. The whole run is killed on timeout, on
//! [`KillSwitch::kill`], when stdout floods past its cap, and when [`Supervised`] is dropped.

use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::ExitInfo;
use crate::backend::SandboxChild;
use crate::plan::TimeoutPolicy;

/// Capacity of the event channel: a slow consumer pauses the reader, which pauses the child.
pub const EVENT_CAPACITY: usize = 256;
/// How long the readers may keep draining after the child is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
const STDERR_TAIL: usize = 200;

/// What the supervisor reports while the run is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// One non-empty stdout line (a JSON document, unparsed).
    Line(String),
    /// A stdout line longer than the cap was dropped.
    LineTooLong { bytes: usize },
    /// stdout passed the output cap; the run is being killed.
    OutputTruncated,
}

/// Kills the supervised run; cloneable and cheap.
#[derive(Debug, Clone)]
pub struct KillSwitch(CancellationToken);

impl KillSwitch {
    pub fn kill(&self) {
        self.0.cancel();
    }
}

/// A run under supervision.
pub struct Supervised {
    pub events: mpsc::Receiver<SupervisorEvent>,
    /// The child's stdin (the run input, follow-ups); drop it to close.
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    kill: CancellationToken,
    task: Option<JoinHandle<ExitInfo>>,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised").finish_non_exhaustive()
    }
}

impl Supervised {
    pub fn kill_switch(&self) -> KillSwitch {
        KillSwitch(self.kill.clone())
    }

    /// Waits until the run has ended and every process of it is gone.
    pub async fn wait(mut self) -> ExitInfo {
        let Some(task) = self.task.take() else {
            return ExitInfo::default();
        };
        match task.await {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "sandbox supervisor task failed");
                ExitInfo {
                    killed: true,
                    ..ExitInfo::default()
                }
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // A run nobody waits for must not outlive its owner; the task reaps it.
        if self.task.is_some() {
            self.kill.cancel();
        }
    }
}

/// A consumer that dropped its receiver only stops the forwarding, never the draining.
async fn send(tx: &mpsc::Sender<SupervisorEvent>, ev: SupervisorEvent, gone: &mut bool) {
    if !*gone && tx.send(ev).await.is_err() {
        *gone = true;
    }
}

#[derive(Debug, Default)]
pub(crate) struct StdoutStats {
    had_output: bool,
    truncated: bool,
}

pub(crate) async fn read_stdout(
    mut out: Box<dyn AsyncRead + Send + Unpin>,
    tx: mpsc::Sender<SupervisorEvent>,
    activity: watch::Sender<u64>,
    overflow: CancellationToken,
    max_line: usize,
    cap: u64,
) -> StdoutStats {
    let mut stats = StdoutStats::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut overlong: Option<usize> = None;
    let mut total: u64 = 0;
    let mut gone = false;
    loop {
        let n = match out.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stats.truncated {
            continue; // draining so the child never blocks on a full pipe
        }
        // Lines inside the cap still go out; the byte that crosses it ends the run.
        let take = n.min(usize::try_from(cap.saturating_sub(total)).unwrap_or(usize::MAX));
        total += take as u64;
        for &b in &buf[..take] {
            if b != b'\n' {
                match overlong.as_mut() {
                    Some(len) => *len += 1,
                    None if line.len() >= max_line => overlong = Some(line.len() + 1),
                    None => line.push(b),
                }
                continue;
            }
            let ev = if let Some(bytes) = overlong.take() {
                line.clear();
                Some(SupervisorEvent::LineTooLong { bytes })
            } else {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                line.clear();
                (!text.trim().is_empty()).then_some(SupervisorEvent::Line(text))
            };
            if let Some(ev) = ev {
                stats.had_output = true;
                activity.send_modify(|c| *c += 1);
                send(&tx, ev, &mut gone).await;
            }
        }
        if take < n {
            stats.truncated = true;
            send(&tx, SupervisorEvent::OutputTruncated, &mut gone).await;
            overflow.cancel();
        }
    }
    if !stats.truncated && !line.is_empty() && overlong.is_none() {
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if !text.is_empty() {
            stats.had_output = true;
            send(&tx, SupervisorEvent::Line(text), &mut gone).await;
        }
    }
    stats
}

async fn read_stderr(
    mut err: Box<dyn AsyncRead + Send + Unpin>,
    backend: &'static str,
    cap: u64,
) -> (bool, String) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total: u64 = 0;
    let mut truncated = false;
    let mut tail = String::new();
    let mut pending = String::new();
    loop {
        let n = match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        let keep = if total > cap {
            if !truncated {
                tracing::warn!(
                    backend,
                    cap,
                    "sandbox stderr passed its cap; the rest is dropped"
                );
            }
            truncated = true;
            continue;
        } else {
            n
        };
        let chunk = String::from_utf8_lossy(&buf[..keep]);
        tail.push_str(&chunk);
        if tail.len() > 4 * STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            let cut = (cut..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            tail.drain(..cut);
        }
        pending.push_str(&chunk);
        while let Some(pos) = pending.find('\n') {
            let l: String = pending.drain(..=pos).collect();
            tracing::debug!(target: "cambot_sandbox::stderr", backend, "{}", l.trim_end());
        }
    }
    if !pending.trim().is_empty() {
        tracing::debug!(target: "cambot_sandbox::stderr", backend, "{}", pending.trim_end());
    }
    let start = tail.len().saturating_sub(STDERR_TAIL);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(0);
    (truncated, tail[start..].to_owned())
}

/// Supervises `child` under `policy` (see the module docs).
pub fn supervise(mut child: SandboxChild, policy: TimeoutPolicy) -> Supervised {
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let (act_tx, mut act_rx) = watch::channel(0u64);
    let kill = CancellationToken::new();
    let overflow = CancellationToken::new();
    let stdin = child.take_stdin();
    let stdout = tokio::spawn(read_stdout(
        child.take_stdout(),
        tx,
        act_tx,
        overflow.clone(),
        child.max_line_bytes,
        child.output_cap_bytes,
    ));
    let stderr = tokio::spawn(read_stderr(
        child.take_stderr(),
        child.backend,
        child.output_cap_bytes,
    ));
    let token = kill.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut deadline = started + policy.hard;
        let end_of_life = started + policy.lifetime;
        let mut timed_out = false;
        let mut lifetime_exceeded = false;
        let mut killed = false;
        let mut activity_open = true;
        let status = loop {
            tokio::select! {
                biased;
                () = token.cancelled(), if !killed && !timed_out => {
                    killed = true;
                    if let Err(e) = child.kill().await {
                        tracing::warn!(error = %e, "killing a sandbox failed");
                    }
                }
                () = overflow.cancelled(), if !killed && !timed_out => {
                    killed = true;
                    tracing::warn!("sandbox stdout passed its cap: killing the run");
                    if let Err(e) = child.kill().await {
                        tracing::warn!(error = %e, "killing a sandbox failed");
                    }
                }
                r = act_rx.changed(), if activity_open => {
                    if r.is_ok() {
                        deadline = Instant::now() + policy.hard;
                    } else {
                        activity_open = false;
                    }
                }
                () = tokio::time::sleep_until(end_of_life), if !timed_out && !killed => {
                    timed_out = true;
                    lifetime_exceeded = true;
                    tracing::warn!(after = ?policy.lifetime, "sandbox run reached its absolute lifetime: killing it");
                    if let Err(e) = child.kill().await {
                        tracing::warn!(error = %e, "killing a sandbox failed");
                    }
                }
                () = tokio::time::sleep_until(deadline), if !timed_out && !killed => {
                    timed_out = true;
                    tracing::warn!(after = ?policy.hard, "sandbox run timed out: killing it");
                    if let Err(e) = child.kill().await {
                        tracing::warn!(error = %e, "killing a sandbox failed");
                    }
                }
                r = child.wait() => break r,
            }
        };
        let mut info = match status {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "waiting for a sandbox failed");
                let _ = child.kill().await;
                let _ = child.wait().await;
                ExitInfo {
                    limits_degraded: child.limits_degraded,
                    ..ExitInfo::default()
                }
            }
        };
        let out_abort = stdout.abort_handle();
        let out = tokio::time::timeout(DRAIN_GRACE, stdout).await;
        if out.is_err() {
            out_abort.abort();
        }
        let out = out.ok().and_then(Result::ok).unwrap_or_default();
        let err_abort = stderr.abort_handle();
        let err = tokio::time::timeout(DRAIN_GRACE, stderr).await;
        if err.is_err() {
            err_abort.abort();
        }
        let (err_trunc, tail) = err.ok().and_then(Result::ok).unwrap_or_default();
        info.timed_out = timed_out;
        info.lifetime_exceeded = lifetime_exceeded;
        info.killed = killed;
        info.had_output = out.had_output;
        info.output_truncated = out.truncated || err_trunc;
        info.stderr_tail = tail;
        info
    });
    Supervised {
        events: rx,
        stdin,
        kill,
        task: Some(task),
    }
}

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;
