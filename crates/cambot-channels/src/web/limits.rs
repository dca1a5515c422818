//! Per-key rate limits (token buckets: a burst of `per_minute`, refilled evenly over a minute),
//! per-key in-flight caps, and the source address a request is counted against.
//!
//! Every map here is bounded: a flood of distinct user names or addresses cannot grow memory.
//! When a limiter is full it first drops buckets that have refilled (they carry no state), then
//! the least recently used quarter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use axum::http::HeaderMap;

use crate::locks;

/// Buckets kept before old ones are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: u32,
    capacity: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_KEYS)
    }

    pub(crate) fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        Self {
            per_minute,
            capacity: capacity.max(4),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate(&self) -> (f64, f64) {
        let cap = f64::from(self.per_minute);
        (cap, cap / 60.0)
    }

    /// Makes room for one more key: refilled buckets go first, then the least recently used
    /// quarter (an O(n) pass once per n/4 new keys).
    fn evict(&self, buckets: &mut HashMap<String, (f64, Instant)>, now: Instant) {
        let (cap, rate) = self.rate();
        buckets.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < cap
        });
        if buckets.len() < self.capacity {
            return;
        }
        let mut times: Vec<Instant> = buckets.values().map(|(_, at)| *at).collect();
        let quarter = times.len() / 4;
        let (_, cutoff, _) = times.select_nth_unstable(quarter);
        let cutoff = *cutoff;
        buckets.retain(|_, (_, at)| *at > cutoff);
    }

    /// Takes one token for `key` at `now`; false when the key is over its limit.
    pub(crate) fn allow_at(&self, key: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let (cap, rate) = self.rate();
        let mut buckets = locks::lock("rate limiter", &self.buckets);
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            self.evict(&mut buckets, now);
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

    /// Gives back the token an attempt took (a sign-in that succeeded does not count).
    pub(crate) fn refund(&self, key: &str) {
        let (cap, _) = self.rate();
        if let Some((tokens, _)) = locks::lock("rate limiter", &self.buckets).get_mut(key) {
            *tokens = (*tokens + 1.0).min(cap);
        }
    }

    /// How long until `key` has a token again (for `Retry-After`).
    pub(crate) fn retry_after(&self) -> Duration {
        if self.per_minute == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(60u64.div_ceil(u64::from(self.per_minute)))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        locks::lock("rate limiter", &self.buckets).len()
    }
}

/// At most `per_key` things in flight per key. Entries exist only while something is in flight,
/// so the map is bounded by the number of open requests.
#[derive(Debug)]
pub(crate) struct InFlight {
    per_key: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held while an attempt is in flight; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    key: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl InFlight {
    pub(crate) fn new(per_key: usize) -> Self {
        Self {
            per_key: per_key.max(1),
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for `key`, or `None` when it already has `per_key` in flight.
    pub(crate) fn try_enter(&self, key: &str) -> Option<InFlightGuard> {
        let mut counts = locks::lock("in-flight limiter", &self.counts);
        let n = counts.entry(key.to_owned()).or_insert(0);
        if *n >= self.per_key {
            return None;
        }
        *n += 1;
        Some(InFlightGuard {
            key: key.to_owned(),
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = locks::lock("in-flight limiter", &self.counts);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a request is counted against: the peer, unless the peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (the
/// entries left of it are whatever the client chose to send).
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !trusted.contains(&peer_ip) {
        return peer_ip;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            // Unreadable: nothing left of it can be trusted either.
            return peer_ip;
        };
        let ip = ip.to_canonical();
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    peer_ip
}

/// The limiter key of an address: IPv4 as is, IPv6 by its /64 (one client usually holds a
/// whole /64, so per-address keys would be free to multiply).
pub(crate) fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
