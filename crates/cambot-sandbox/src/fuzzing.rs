//! Entry points for the `cargo fuzz` targets under `fuzz/`: the private stdout decoder, driven
//! exactly as a run drives it. Not an API.

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::supervise::SupervisorEvent;
use crate::supervise::read_stdout;

/// Reads `out` the way a run's stdout is read (line cap `max_line` bytes, output cap `cap`
/// bytes) and returns every event (a cut stream ends with [`SupervisorEvent::OutputTruncated`]).
pub async fn stdout_events(
    out: impl AsyncRead + Send + Unpin + 'static,
    max_line: usize,
    cap: u64,
) -> Vec<SupervisorEvent> {
    let (tx, mut rx) = mpsc::channel(crate::supervise::EVENT_CAPACITY);
    let (activity, _activity_rx) = watch::channel(0u64);
    let overflow = CancellationToken::new();
    let reader = read_stdout(Box::new(out), tx, activity, overflow, max_line, cap);
    let collect = async {
        let mut events = Vec::new();
        while let Some(ev) = rx.recv().await {
            events.push(ev);
        }
        events
    };
    let (_stats, events) = tokio::join!(reader, collect);
    events
}
