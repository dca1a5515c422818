//! Time formats used in the database.

use chrono::DateTime;
use chrono::SecondsFormat;
use chrono::Utc;

/// Now as RFC 3339 UTC with milliseconds (`2026-11-24T07:44:00.123Z`): fixed width, so string
/// order is time order.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Milliseconds to RFC 3339; out-of-range values render as the epoch rather than failing.
pub fn ms_to_rfc3339(ms: i64) -> String {
    rfc3339(DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default())
}
