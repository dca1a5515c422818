//! The two stdio channels: a size-capped JSON Lines reader for host input and a writer that
//! flushes every event line as soon as it is produced.

use cambot_protocol::HostToRunner;
use cambot_protocol::RunnerToHost;
use cambot_protocol::run::MAX_LINE_BYTES;
use tokio::io::AsyncBufRead;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One line of host input: a parsed message, or the precise reason it was rejected.
pub type Inbound = Result<HostToRunner, String>;

/// A spawned task that is aborted when its handle is dropped.
#[derive(Debug)]
pub struct OwnedTask(JoinHandle<()>);

impl OwnedTask {
    /// Waits for the task to finish on its own.
    pub async fn join(mut self) {
        let handle = std::mem::replace(&mut self.0, tokio::spawn(async {}));
        let _ = handle.await;
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads lines of at most `cap` bytes (newline excluded). A longer line is skipped to its end
/// and reported as an error, so one bad line never desynchronises the stream.
pub struct LineReader<R> {
    inner: R,
    cap: usize,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    TooLong { bytes: usize },
    NotUtf8,
    Eof,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, cap: usize) -> Self {
        Self { inner, cap }
    }

    pub async fn next_line(&mut self) -> std::io::Result<Line> {
        let mut buf: Vec<u8> = Vec::new();
        let mut total = 0usize;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if total == 0 {
                    return Ok(Line::Eof);
                }
                return Ok(finish(buf, total, self.cap));
            }
            let (piece, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            total += piece.len();
            if total <= self.cap {
                buf.extend_from_slice(piece);
            } else if !buf.is_empty() {
                // Past the cap: stop keeping bytes, keep counting to the end of the line.
                buf = Vec::new();
            }
            self.inner.consume(used);
            if done {
                return Ok(finish(buf, total, self.cap));
            }
        }
    }
}

fn finish(mut buf: Vec<u8>, total: usize, cap: usize) -> Line {
    if total > cap {
        return Line::TooLong { bytes: total };
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    match String::from_utf8(buf) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8,
    }
}

/// Parses one input line into a message or a precise rejection reason.
pub fn parse_input(line: &str, line_no: u64) -> Option<Inbound> {
    if line.trim().is_empty() {
        return None;
    }
    Some(HostToRunner::parse_line(line).map_err(|e| {
        let snippet: String = line.chars().take(80).collect();
        format!("input line {line_no} is not a valid host message ({e}): {snippet:?}")
    }))
}

/// Spawns the stdin reader: every line becomes one [`Inbound`] on the returned channel, which
/// closes at end of input (or on a read error, which is logged).
pub fn spawn_reader<R>(input: R) -> (mpsc::Receiver<Inbound>, OwnedTask)
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(crate::CHANNEL_CAPACITY);
    let task = tokio::spawn(async move {
        let mut reader = LineReader::new(input, MAX_LINE_BYTES);
        let mut line_no = 0u64;
        loop {
            line_no += 1;
            let item = match reader.next_line().await {
                Ok(Line::Eof) => break,
                Ok(Line::Text(t)) => match parse_input(&t, line_no) {
                    Some(item) => item,
                    None => continue,
                },
                Ok(Line::TooLong { bytes }) => Err(format!(
                    "input line {line_no} is {bytes} bytes, over the {MAX_LINE_BYTES}-byte limit; skipped"
                )),
                Ok(Line::NotUtf8) => Err(format!("input line {line_no} is not UTF-8; skipped")),
                Err(e) => {
                    tracing::warn!(error = %e, "reading stdin failed; treating it as closed");
                    break;
                }
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    (rx, OwnedTask(task))
}

/// Spawns the stdout writer: one line per event, flushed at once. The task ends when every
/// sender is dropped, after writing what was queued.
pub fn spawn_writer<W>(mut out: W) -> (mpsc::Sender<RunnerToHost>, OwnedTask)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<RunnerToHost>(crate::CHANNEL_CAPACITY);
    let task = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let line = event.to_line();
            let written = async {
                out.write_all(line.as_bytes()).await?;
                out.flush().await
            }
            .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "writing to stdout failed; the host is gone");
                break;
            }
        }
    });
    (tx, OwnedTask(task))
}

#[cfg(test)]
#[path = "io_tests.rs"]
mod tests;
