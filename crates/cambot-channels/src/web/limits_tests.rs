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

#[test]
fn a_refund_gives_one_token_back() {
    let limiter = RateLimiter::new(1);
    let t0 = Instant::now();
    assert!(limiter.allow_at("a", t0));
    assert!(!limiter.allow_at("a", t0));
    limiter.refund("a");
    assert!(limiter.allow_at("a", t0));
    // An unknown key is not created by a refund.
    limiter.refund("nobody");
    assert_eq!(limiter.len(), 1);
}

/// A flood of distinct keys, none of which refills in time, stays within the cap, and the most
/// recently used (throttled) key keeps its state.
#[test]
fn a_flood_of_distinct_keys_stays_bounded() {
    let limiter = RateLimiter::with_capacity(2, 100);
    let t0 = Instant::now();
    for i in 0..10_000u64 {
        assert!(limiter.allow_at(&format!("name-{i}"), t0 + Duration::from_millis(i)));
        assert!(limiter.len() <= 100, "{} keys after {i}", limiter.len());
    }
    let late = t0 + Duration::from_millis(10_000);
    assert!(limiter.allow_at("victim", late));
    assert!(limiter.allow_at("victim", late));
    assert!(!limiter.allow_at("victim", late));
}

#[test]
fn in_flight_slots_are_per_key_and_freed_on_drop() {
    let f = InFlight::new(2);
    let a1 = f.try_enter("a");
    let a2 = f.try_enter("a");
    assert!(a1.is_some() && a2.is_some());
    assert!(f.try_enter("a").is_none());
    assert!(f.try_enter("b").is_some());
    drop(a1);
    assert!(f.try_enter("a").is_some());
    drop(a2);
    assert!(
        locks::lock("t", &f.counts).is_empty(),
        "no entry outlives its guards"
    );
}

fn xff(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", v.parse().unwrap());
    h
}

#[test]
fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let client: IpAddr = "203.0.113.7".parse().unwrap();
    let proxy: IpAddr = "127.0.0.1".parse().unwrap();
    // No trusted proxy: the header is ignored.
    assert_eq!(client_ip(peer, &xff("203.0.113.7"), &[]), proxy);
    // Behind a trusted proxy: the right-most untrusted entry, not a spoofed left one.
    assert_eq!(client_ip(peer, &xff("203.0.113.7"), &[proxy]), client);
    assert_eq!(
        client_ip(peer, &xff("198.51.100.1, 203.0.113.7"), &[proxy]),
        client
    );
    assert_eq!(
        client_ip(peer, &xff("198.51.100.1, 203.0.113.7, 127.0.0.1"), &[proxy]),
        client
    );
    // Garbage or no header: the proxy itself.
    assert_eq!(client_ip(peer, &xff("not-an-ip"), &[proxy]), proxy);
    assert_eq!(client_ip(peer, &HeaderMap::new(), &[proxy]), proxy);
    // IPv4-mapped IPv6 peers count as their IPv4 address.
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
    assert_eq!(client_ip(mapped, &xff("203.0.113.7"), &[proxy]), client);
}

#[test]
fn ipv6_clients_count_per_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(address_key(a), address_key(b));
    assert_ne!(address_key(a), address_key(c));
    assert_eq!(address_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
}
