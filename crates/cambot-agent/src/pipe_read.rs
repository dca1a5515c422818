//! Bounded reads of a sandboxed child's output pipes: both drain the pipe to its end so the
//! child never blocks on a full pipe, and keep only what the caller can use.

use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

/// The first `cap` bytes, and whether there was more.
pub(crate) async fn read_head(
    mut r: Box<dyn AsyncRead + Send + Unpin>,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut overflow = false;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        overflow |= n > room;
    }
}

/// The last `keep` bytes.
pub(crate) async fn read_tail(
    mut r: Box<dyn AsyncRead + Send + Unpin>,
    keep: usize,
) -> std::io::Result<Vec<u8>> {
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(tail);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
}
