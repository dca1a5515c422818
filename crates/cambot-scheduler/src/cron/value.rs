//! Reading the `interval` and `once` schedule values of the IPC/CLI form.

use std::time::Duration;

use chrono::DateTime;
use chrono::Datelike;
use chrono::NaiveDateTime;
use chrono::TimeDelta;
use chrono::Timelike;
use chrono::Utc;
use chrono_tz::Tz;

use super::zone;

/// The longest accepted interval: 100 years of 365.25 days.
pub const MAX_INTERVAL: Duration = Duration::from_secs(36_525 * 86_400);

/// Why an interval value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error("the value is empty")]
    Empty,
    #[error("must be positive")]
    Negative,
    #[error(
        "must be a positive whole number of milliseconds, or a number with a unit ms, s, m, h or d"
    )]
    NotANumber,
    #[error("must be greater than zero")]
    Zero,
    #[error("longer than the maximum of 100 years")]
    TooLarge,
}

/// Why a one-shot time was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnceError {
    #[error("the value is empty")]
    Empty,
    #[error(
        "not a time: use RFC 3339 with an offset (2026-12-01T09:00:00Z, 2026-12-01T09:00:00+01:00), \
         a local time (2026-12-01T09:00, 2026-12-01 09:00:00) or a relative time (+30s, +30m, +2h, +1d)"
    )]
    Unrecognized,
    #[error(
        "a relative time must be + followed by a positive whole number and a unit s, m, h or d"
    )]
    BadRelative,
    #[error("out of the supported date range")]
    OutOfRange,
}

/// Reads an interval: a positive whole number of milliseconds (the seed's form, `3600000`), or
/// a positive whole number followed by a unit `ms`, `s`, `m`, `h` or `d` (`30m`, `2h`).
pub fn parse_interval(value: &str) -> Result<Duration, IntervalError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(IntervalError::Empty);
    }
    if value.starts_with('-') {
        return Err(IntervalError::Negative);
    }
    let digits_end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(digits_end);
    if digits.is_empty() {
        return Err(IntervalError::NotANumber);
    }
    let unit_ms: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(IntervalError::NotANumber),
    };
    // Only digits here, so a failed parse means the number overflowed.
    let count = digits.parse::<u64>().map_err(|_| IntervalError::TooLarge)?;
    let millis = count.checked_mul(unit_ms).ok_or(IntervalError::TooLarge)?;
    let every = Duration::from_millis(millis);
    if every.is_zero() {
        Err(IntervalError::Zero)
    } else if every > MAX_INTERVAL {
        Err(IntervalError::TooLarge)
    } else {
        Ok(every)
    }
}

/// Reads a one-shot time: RFC 3339 with an explicit offset or `Z`; `+<n><unit>` relative to
/// `now` (units `s`, `m`, `h`, `d`); or a bare local date-time read in `tz` with the DST rule
/// of the module docs (a repeated time means its first occurrence, a skipped one the end of
/// the gap).
pub fn parse_once(value: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, OnceError> {
    let mut at = read_once(value, tz, now)?;
    // A leap second (`:60`) is the next second: the stored RFC 3339 form of an instant keeps no
    // leap second once it is shifted off `:59` into UTC, so it would read back a second early.
    if let Some(nanos) = at.nanosecond().checked_sub(1_000_000_000) {
        at = at
            .with_nanosecond(nanos)
            .and_then(|t| t.checked_add_signed(TimeDelta::seconds(1)))
            .ok_or(OnceError::OutOfRange)?;
    }
    // The stored form is RFC 3339, which has four-digit years only: a later time could be
    // scheduled but never read back.
    if (0..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(OnceError::OutOfRange)
    }
}

fn read_once(value: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, OnceError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(OnceError::Empty);
    }
    if let Some(relative) = value.strip_prefix('+') {
        let delta = parse_relative(relative)?;
        return now.checked_add_signed(delta).ok_or(OnceError::OutOfRange);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    // RFC 3339 without seconds, still with an explicit offset.
    for format in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(at) = DateTime::parse_from_str(&value.replace(['z', 'Z'], "+00:00"), format) {
            return Ok(at.with_timezone(&Utc));
        }
    }
    const LOCAL_FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    for format in LOCAL_FORMATS {
        if let Ok(local) = NaiveDateTime::parse_from_str(value, format) {
            return zone::resolve_local(local, tz).ok_or(OnceError::OutOfRange);
        }
    }
    Err(OnceError::Unrecognized)
}

fn parse_relative(relative: &str) -> Result<TimeDelta, OnceError> {
    let digits_end = relative
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(relative.len());
    let (digits, unit) = relative.split_at(digits_end);
    if digits.is_empty() {
        return Err(OnceError::BadRelative);
    }
    // Only digits here, so a failed parse means the number overflowed.
    let count: i64 = digits.parse().map_err(|_| OnceError::OutOfRange)?;
    if count == 0 {
        return Err(OnceError::BadRelative);
    }
    let unit_secs: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(OnceError::BadRelative),
    };
    count
        .checked_mul(unit_secs)
        .and_then(TimeDelta::try_seconds)
        .ok_or(OnceError::OutOfRange)
}
