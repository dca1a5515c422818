//! The `bash` tool: `bash -c <command>` in `/workspace/group`, in its own process group so that
//! a timeout (or the end of the call) kills everything it started. It inherits its own stdio
//! and no other descriptor of the runner (all are close-on-exec: `confine::protect_self`), and
//! cannot reach the runner's through `/proc` (the runner is non-dumpable).

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

use super::Outcome;
use super::ToolContext;

/// How long the output pipes may stay open after the command's process group was killed (a
/// process that left the group with `setsid` could hold them forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BashArgs {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// Kills the process group when dropped: a cancelled call (wall clock) leaves nothing behind.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads everything, keeping the first `cap` bytes; returns them and the total length.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> (Vec<u8>, usize) {
    let Some(mut reader) = reader else {
        return (Vec::new(), 0);
    };
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

pub(super) async fn run(ctx: &ToolContext, a: BashArgs) -> Outcome {
    let limit = ctx.limits.bash_timeout_secs.max(1);
    let secs = a.timeout_secs.unwrap_or(limit).clamp(1, limit);
    let cap = ctx.limits.tool_output_bytes;
    let cwd = ctx.fs.cwd();
    if !cwd.is_dir() {
        std::fs::create_dir_all(cwd)
            .map_err(|e| format!("cannot create {}: {e}", cwd.display()))?;
    }
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&a.command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start bash: {e}"))?;
    let guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let readers = async { tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap)) };
    let waiter = async {
        let waited = tokio::time::timeout(Duration::from_secs(secs), child.wait()).await;
        // Background jobs of the command die with it, and a timeout kills everything.
        guard.kill();
        match waited {
            Ok(status) => (status.ok(), false),
            Err(_) => (child.wait().await.ok(), true),
        }
    };
    tokio::pin!(readers);
    tokio::pin!(waiter);
    // The pipes are drained while waiting, or a chatty command would block on a full pipe.
    let mut drained = None;
    let (status, timed_out) = loop {
        tokio::select! {
            r = &mut readers, if drained.is_none() => drained = Some(r),
            w = &mut waiter => break w,
        }
    };
    let lost = || {
        (
            (Vec::new(), 0),
            (
                b"[output pipes held open by a process that left the group; output lost]".to_vec(),
                0,
            ),
        )
    };
    let ((out, out_total), (err, err_total)) = match drained {
        Some(r) => r,
        None => tokio::time::timeout(PIPE_GRACE, &mut readers)
            .await
            .unwrap_or_else(|_| lost()),
    };
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if out_total > out.len() {
        text.push_str(&format!("\n[stdout truncated: {out_total} bytes]"));
    }
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("[stderr]\n");
        text.push_str(&String::from_utf8_lossy(&err));
        if err_total > err.len() {
            text.push_str(&format!("\n[stderr truncated: {err_total} bytes]"));
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if timed_out {
        text.push_str(&format!(
            "[timed out after {secs} s; the command and its process group were killed]"
        ));
        return Err(text);
    }
    let code = status.and_then(|s| s.code());
    match code {
        Some(0) => {
            text.push_str("[exit code 0]");
            Ok(text)
        }
        Some(c) => {
            text.push_str(&format!("[exit code {c}]"));
            Err(text)
        }
        None => {
            text.push_str("[killed by a signal]");
            Err(text)
        }
    }
}
