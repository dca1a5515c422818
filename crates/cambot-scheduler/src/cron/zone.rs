//! Evaluating a [`CronExpr`] in a time zone, and reading bare local times, with the DST rules
//! written down in the module docs of [`crate::cron`].

use chrono::DateTime;
use chrono::LocalResult;
use chrono::NaiveDateTime;
use chrono::Offset;
use chrono::TimeDelta;
use chrono::TimeZone;
use chrono::Utc;
use chrono_tz::Tz;

use super::expr::CronExpr;

/// How many matching local minutes one search may reject (because they fall in a DST gap or the
/// second pass of a repeated hour) before giving up. A DST change rejects at most a few hundred.
const MAX_REJECTED: usize = 20_000;

/// The first firing of `expr` strictly after `after`, evaluated in `tz`.
///
/// `None` only when no firing exists before the end of chrono's calendar (expressions that can
/// never match are rejected when parsed).
pub fn next_after(expr: &CronExpr, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    let local = local_time(after, tz)?;
    let found = scan(expr, local, after, tz);
    if !expr.every_hour() {
        return found;
    }
    // Every-hour expressions also fire in the second pass of a repeated hour. When `after` lies
    // in the first pass, second-pass firings of wall times *before* `local` are still to come.
    if let LocalResult::Ambiguous(first, second) = tz.from_local_datetime(&local)
        && first.with_timezone(&Utc) == after
    {
        let width = second.with_timezone(&Utc) - first.with_timezone(&Utc);
        if let Some(start) = local.checked_sub_signed(width)
            && let Some(second_pass) = scan(expr, start, after, tz)
        {
            return Some(found.map_or(second_pass, |f| f.min(second_pass)));
        }
    }
    found
}

/// Walks matching wall-clock minutes strictly after `start_local` and returns the first firing
/// instant strictly after `after`. Within the walk's range the firing instants are in wall-clock
/// order (see [`next_after`] for the one exception it handles).
fn scan(
    expr: &CronExpr,
    start_local: NaiveDateTime,
    after: DateTime<Utc>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let every_hour = expr.every_hour();
    let mut cursor = start_local.checked_add_signed(TimeDelta::nanoseconds(1))?;
    for _ in 0..MAX_REJECTED {
        let wall = expr.next_local_match(cursor)?;
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => {
                let t = t.with_timezone(&Utc);
                if t > after {
                    return Some(t);
                }
            }
            LocalResult::Ambiguous(first, second) => {
                let (first, second) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
                if first > after {
                    return Some(first);
                }
                if every_hour && second > after {
                    return Some(second);
                }
            }
            LocalResult::None => {
                let end = gap_end(wall, tz)?;
                if !every_hour && end > after {
                    return Some(end);
                }
                // Every wall time in this gap maps to `end` (or nothing): jump past it.
                let resume = local_time(end, tz)?;
                if resume > wall {
                    cursor = resume;
                    continue;
                }
            }
        }
        cursor = wall.checked_add_signed(TimeDelta::minutes(1))?;
    }
    None
}

/// Reads a wall-clock time in `tz`: a time that occurs twice means its first occurrence, a time
/// skipped by a DST gap means the instant the gap ends (the first instant after it).
pub fn resolve_local(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => gap_end(local, tz),
    }
}

/// The instant a DST gap containing the (non-existent) wall time `wall` ends: the smallest
/// instant whose local time is later than `wall`.
fn gap_end(wall: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let later = |secs: i64| {
        // Past the calendar's end the local time is later than anything, before its start earlier.
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|t| local_time(t, tz).map_or(secs > 0, |local| local > wall))
    };
    // UTC offsets lie within -12h..=+14h, so the local time of `lo` is before `wall` and that
    // of `hi` after it; bisect on whole seconds (transitions fall on whole seconds).
    let as_utc = wall.and_utc().timestamp();
    let mut lo = as_utc.checked_sub(15 * 3600)?;
    let mut hi = as_utc.checked_add(13 * 3600)?;
    if later(lo) || !later(hi) {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if later(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// The wall-clock time of `t` in `tz`; `None` when the zone's offset pushes it past the end (or
/// the start) of chrono's calendar, where `naive_local` would panic.
fn local_time(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}
