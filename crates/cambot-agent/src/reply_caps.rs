//! Per-run caps on result messages: a run may send at most so many replies, and so many bytes
//! of replies, in any 60-second window, so a runaway or hostile run cannot flood its chat. The
//! host tools' own `send_message` has its per-group token bucket in the gateway; this covers
//! the runner's `result` lines.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// The caps of every run (`[agent] max_replies_per_minute`, `max_reply_bytes_per_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyCaps {
    pub per_minute: u32,
    pub bytes_per_minute: usize,
}

impl Default for ReplyCaps {
    fn default() -> Self {
        Self {
            per_minute: 30,
            bytes_per_minute: 256 * 1024,
        }
    }
}

/// One run's replies in the last minute.
#[derive(Debug)]
pub struct ReplyMeter {
    caps: ReplyCaps,
    recent: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl ReplyMeter {
    pub fn new(caps: ReplyCaps) -> Self {
        Self {
            caps,
            recent: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Counts a reply of `len` bytes, or says which cap it would break (and counts nothing).
    pub fn admit(&mut self, len: usize) -> Result<(), String> {
        let now = Instant::now();
        while let Some(&(at, n)) = self.recent.front() {
            if now.duration_since(at) < WINDOW {
                break;
            }
            self.recent.pop_front();
            self.bytes -= n;
        }
        if self.recent.len() >= self.caps.per_minute as usize {
            return Err(format!(
                "the run sent more than {} replies within a minute",
                self.caps.per_minute
            ));
        }
        if self.bytes + len > self.caps.bytes_per_minute {
            return Err(format!(
                "the run sent more than {} bytes of replies within a minute",
                self.caps.bytes_per_minute
            ));
        }
        self.recent.push_back((now, len));
        self.bytes += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(per_minute: u32, bytes_per_minute: usize) -> ReplyMeter {
        ReplyMeter::new(ReplyCaps {
            per_minute,
            bytes_per_minute,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_cap_refuses_the_reply_over_it_and_frees_up_after_a_minute() {
        let mut m = meter(3, 1 << 20);
        for _ in 0..3 {
            m.admit(10).unwrap();
        }
        let err = m.admit(10).unwrap_err();
        assert!(err.contains("more than 3 replies"), "{err}");
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(m.admit(10).is_err(), "still inside the window");
        tokio::time::sleep(Duration::from_secs(1)).await;
        m.admit(10).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_cap_counts_the_sizes_in_the_window() {
        let mut m = meter(100, 1000);
        m.admit(600).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let err = m.admit(401).unwrap_err();
        assert!(err.contains("more than 1000 bytes"), "{err}");
        m.admit(400).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The first 600 bytes left the window; the 400 from 30 s ago are still in it.
        m.admit(600).unwrap();
        assert!(m.admit(1).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_reply_is_not_counted() {
        let mut m = meter(100, 100);
        assert!(m.admit(101).is_err());
        m.admit(100).unwrap();
    }
}
