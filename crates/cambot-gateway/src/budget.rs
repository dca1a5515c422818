//! A run's model budget, enforced by the gateway whatever the runner does: model requests,
//! tokens (counted from the upstream's own usage reports as they stream by) and wall time
//! (from the moment the run's socket was bound). Once one is spent, every further model call
//! is refused before it reaches the upstream.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

/// What one run may spend on its model, whatever the runner's own stop rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunBudget {
    /// Requests forwarded to the upstream (every method and path counts).
    pub model_requests: u32,
    /// Input + output tokens, as the upstream reports them.
    pub tokens: u64,
    /// Time from the socket's bind after which model calls are refused.
    pub wall_clock: Duration,
}

impl Default for RunBudget {
    /// Four turns of the runner's default limits (25 calls, 400 000 tokens), 30 minutes.
    fn default() -> Self {
        Self {
            model_requests: 100,
            tokens: 1_600_000,
            wall_clock: Duration::from_secs(1_800),
        }
    }
}

/// Which budget refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Exhausted {
    #[error("model_requests: this run used its {limit} model requests")]
    Requests { limit: u32 },
    #[error("tokens: this run used {used} tokens, its budget is {limit}")]
    Tokens { used: u64, limit: u64 },
    #[error("wall_clock: this run is past its {secs} s of model time")]
    WallClock { secs: u64 },
}

/// One run's spending so far. Shared by every connection of the run's socket.
#[derive(Debug)]
pub(crate) struct RunMeter {
    budget: RunBudget,
    deadline: Instant,
    requests: AtomicU32,
    tokens: AtomicU64,
}

impl RunMeter {
    /// Starts the run's clock now.
    pub(crate) fn start(budget: RunBudget) -> Self {
        Self {
            budget,
            deadline: Instant::now() + budget.wall_clock,
            requests: AtomicU32::new(0),
            tokens: AtomicU64::new(0),
        }
    }

    /// Takes one request from the budget, or says which budget is spent. Nothing is taken
    /// when the call is refused.
    pub(crate) fn admit(&self) -> Result<(), Exhausted> {
        if Instant::now() >= self.deadline {
            return Err(Exhausted::WallClock {
                secs: self.budget.wall_clock.as_secs(),
            });
        }
        let used = self.tokens.load(Ordering::Acquire);
        if used >= self.budget.tokens {
            return Err(Exhausted::Tokens {
                used,
                limit: self.budget.tokens,
            });
        }
        // Concurrent calls race for the last request: exactly the budget gets through.
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.budget.model_requests).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Exhausted::Requests {
                limit: self.budget.model_requests,
            })
    }

    /// Adds tokens an upstream reported.
    pub(crate) fn charge(&self, tokens: u64) {
        self.tokens.fetch_add(tokens, Ordering::AcqRel);
    }
}
