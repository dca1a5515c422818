use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use http::HeaderMap;
use http::HeaderValue;

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
    assert_eq!(
        retry_after(&h, SystemTime::now()),
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn retry_after_accepts_fractional_seconds_and_http_dates() {
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2.5")]), SystemTime::now()),
        Some(Duration::from_millis(2500))
    );
    // 1994-11-06 08:49:37 UTC is 784111777.
    let date = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 7);
    assert_eq!(retry_after(&date, now), Some(Duration::from_secs(7)));
    // A date in the past means "now".
    let later = UNIX_EPOCH + Duration::from_secs(784_111_777 + 100);
    assert_eq!(retry_after(&date, later), Some(Duration::ZERO));
    assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
    assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn http_dates_parse_exactly() {
    assert_eq!(
        parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
        Some(UNIX_EPOCH)
    );
    assert_eq!(
        parse_http_date("Sat, 29 Feb 2020 12:00:01 GMT"),
        Some(UNIX_EPOCH + Duration::from_secs(1_582_977_601))
    );
    assert_eq!(parse_http_date("Sat, 29 Foo 2020 12:00:01 GMT"), None);
    assert_eq!(parse_http_date("Sat, 29 Feb 2020 12:00:01 CET"), None);
}

#[test]
fn should_retry_header_is_tristate() {
    assert_eq!(
        should_retry(&headers(&[("x-should-retry", "true")])),
        Some(true)
    );
    assert_eq!(
        should_retry(&headers(&[("x-should-retry", "false")])),
        Some(false)
    );
    assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
    assert_eq!(should_retry(&HeaderMap::new()), None);
}

#[test]
fn backoff_doubles_up_to_the_cap_and_jitter_only_shortens() {
    let p = RetryPolicy::default();
    assert_eq!(p.backoff(0, 0.0), Duration::from_millis(500));
    assert_eq!(p.backoff(1, 0.0), Duration::from_secs(1));
    assert_eq!(p.backoff(3, 0.0), Duration::from_secs(4));
    assert_eq!(p.backoff(4, 0.0), Duration::from_secs(8));
    assert_eq!(p.backoff(40, 0.0), Duration::from_secs(8));
    assert_eq!(p.backoff(0, 1.0), Duration::from_millis(375));
    for retry in 0..6 {
        let d = p.delay(retry, None);
        assert!(
            d <= p.backoff(retry, 0.0) && d >= p.backoff(retry, 1.0),
            "{d:?}"
        );
    }
}

#[test]
fn a_server_hint_is_honoured_up_to_a_minute() {
    let p = RetryPolicy::default();
    assert_eq!(
        p.delay(0, Some(Duration::from_secs(3))),
        Duration::from_secs(3)
    );
    assert_eq!(p.delay(5, Some(Duration::ZERO)), Duration::ZERO);
    let long = p.delay(0, Some(Duration::from_secs(3600)));
    assert!(long <= Duration::from_millis(500), "{long:?}");
}
