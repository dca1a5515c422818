//! Per-key rate limits (token buckets): a burst of `per_minute`, refilled evenly over a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use crate::locks;

/// Buckets kept before idle (full) ones are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; false when the key is over its limit.
    pub(crate) fn allow_at(&self, key: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let cap = f64::from(self.per_minute);
        let rate = cap / 60.0;
        let mut buckets = locks::lock("rate limiter", &self.buckets);
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < cap
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((cap, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub(crate) fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
    }

    /// How long until `key` has a token again (for `Retry-After`).
    pub(crate) fn retry_after(&self) -> Duration {
        if self.per_minute == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(60u64.div_ceil(u64::from(self.per_minute)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_capped_and_refills_over_the_minute() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        assert!(limiter.allow_at("a", t0));
        assert!(limiter.allow_at("a", t0));
        assert!(limiter.allow_at("a", t0));
        assert!(!limiter.allow_at("a", t0));
        // Another key has its own bucket.
        assert!(limiter.allow_at("b", t0));
        // One token every 20 s.
        assert!(!limiter.allow_at("a", t0 + Duration::from_secs(19)));
        assert!(limiter.allow_at("a", t0 + Duration::from_secs(21)));
        assert!(!limiter.allow_at("a", t0 + Duration::from_secs(21)));
        assert!(limiter.allow_at("a", t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| limiter.allow_at("a", t0)));
    }
}
