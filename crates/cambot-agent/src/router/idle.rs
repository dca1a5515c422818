//! A live run's idle deadline, pushed back by every answer without touching the timer wheel.

use std::pin::Pin;

use tokio::time::Instant;
use tokio::time::Sleep;

/// When a live run with nothing left to answer closes.
///
/// A run answering a busy chat pushes its deadline back with every result, many times a second.
/// Re-arming a tokio timer each time costs a timer-wheel insertion and removal per message, so
/// the timer stays armed at the deadline it was first given: when it fires early (the deadline
/// moved since), it is re-armed once at the current deadline.
#[derive(Default)]
pub(super) struct IdleDeadline {
    /// The deadline in force (`None`: the run is not idle).
    deadline: Option<Instant>,
    /// The armed timer, possibly earlier than `deadline`.
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleDeadline {
    /// The run is idle from now on: it closes at `deadline` unless set again first.
    pub(super) fn set(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        if self.timer.is_none() {
            self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
    }

    /// Completes when the deadline in force has passed (never while none is), and clears it.
    pub(super) async fn passed(&mut self) {
        loop {
            let Some(timer) = self.timer.as_mut() else {
                return std::future::pending().await;
            };
            timer.as_mut().await;
            match self.deadline {
                Some(deadline) if deadline > Instant::now() => timer.as_mut().reset(deadline),
                Some(_) => {
                    self.deadline = None;
                    self.timer = None;
                    return;
                }
                None => self.timer = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_set() {
        let start = Instant::now();
        let mut idle = IdleDeadline::default();
        idle.set(start + Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        idle.set(start + Duration::from_secs(14));
        tokio::time::sleep(Duration::from_secs(4)).await;
        idle.set(start + Duration::from_secs(18));
        idle.passed().await;
        assert_eq!(start.elapsed(), Duration::from_secs(18));
    }

    #[tokio::test(start_paused = true)]
    async fn never_fires_when_not_set_and_fires_once_per_set() {
        let mut idle = IdleDeadline::default();
        let unset = tokio::time::timeout(Duration::from_secs(3600), idle.passed()).await;
        assert!(unset.is_err(), "an unset deadline fired");
        let start = Instant::now();
        idle.set(start + Duration::from_secs(5));
        idle.passed().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let again = tokio::time::timeout(Duration::from_secs(3600), idle.passed()).await;
        assert!(again.is_err(), "a deadline fired twice");
    }
}
