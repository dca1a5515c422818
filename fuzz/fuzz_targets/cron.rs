//! The schedule parser (`Schedule::parse`: cron, interval, once) and the next-firing search
//! (`next_after` in a zone, `CronExpr::next_local_match`), in every IANA zone and at any instant
//! chrono can represent. libFuzzer's `-timeout` (scripts/fuzz.sh sets 10 s) checks that every
//! search terminates.
//!
//! Input: 2 bytes zone, 1 byte mode, 8 bytes instant, 1 byte schedule type, then the value.
//!
//! Properties: the canonical value parses back to the same schedule; successive firings are
//! strictly increasing; a cron firing is a matching wall-clock minute or the end of a DST gap;
//! a local match matches, is not earlier than its start, and exists whenever the calendar has
//! room left.

#![no_main]

use cambot_scheduler::cron::CronExpr;
use cambot_scheduler::cron::Schedule;
use cambot_scheduler::cron::next_after;
use chrono::DateTime;
use chrono::Datelike;
use chrono::NaiveDateTime;
use chrono::Offset;
use chrono::TimeDelta;
use chrono::TimeZone;
use chrono::Utc;
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;

/// Years this far inside chrono's calendar always have a next cron match (the longest gap
/// between two matches is 8 years: 29 February).
const SAFE_YEARS: i32 = 262_000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (head, value) = data.split_at(12);
    let zones = chrono_tz::TZ_VARIANTS;
    let tz: Tz = zones[usize::from(u16::from_le_bytes([head[0], head[1]])) % zones.len()];
    let raw = i64::from_le_bytes(head[3..11].try_into().unwrap());
    let after = instant(head[2], raw);
    let kind = ["cron", "interval", "once", "weekly"][usize::from(head[11] % 4)];
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };

    if kind == "cron"
        && let Ok(expr) = CronExpr::parse(value)
    {
        check_cron(&expr, tz, after);
    }
    let Ok(schedule) = Schedule::parse(kind, value, tz, after) else {
        return;
    };
    assert_eq!(schedule.schedule_type(), kind);
    let canonical = schedule.canonical_value();
    let again = Schedule::parse(kind, &canonical, tz, after)
        .unwrap_or_else(|e| panic!("canonical value {canonical:?} refused: {e}"));
    assert_eq!(
        again, schedule,
        "canonical value {canonical:?} reads differently"
    );

    let mut t = after;
    for _ in 0..4 {
        match schedule.next_run_after(t) {
            Some(next) => {
                assert!(next > t, "next run {next} is not after {t}");
                t = next;
            }
            None => break,
        }
    }
    let _ = schedule.first_run(after);
});

/// Near today (DST rules as they are) or anywhere in chrono's range (calendar edges).
fn instant(mode: u8, raw: i64) -> DateTime<Utc> {
    let secs = if mode % 2 == 0 {
        1_700_000_000 + raw % (40 * 366 * 86_400)
    } else {
        raw % 8_210_298_412_800
    };
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn check_cron(expr: &CronExpr, tz: Tz, after: DateTime<Utc>) {
    assert_eq!(CronExpr::parse(expr.as_str()).as_ref(), Ok(expr));
    let Some(local) = local_time(after, tz) else {
        assert_eq!(
            next_after(expr, after, tz),
            None,
            "no wall clock at {after} in {tz}"
        );
        return;
    };
    match expr.next_local_match(local) {
        Some(m) => {
            assert!(m >= local, "local match {m} before its start {local}");
            assert!(expr.matches(m), "local match {m} does not match");
        }
        None => assert!(
            local.year().abs() >= SAFE_YEARS,
            "no local match after {local} for {:?}",
            expr.as_str()
        ),
    }
    let mut t = after;
    for _ in 0..3 {
        let Some(next) = next_after(expr, t, tz) else {
            assert!(
                t.year().abs() >= SAFE_YEARS,
                "no firing after {t} in {tz} for {:?}",
                expr.as_str()
            );
            return;
        };
        assert!(next > t, "firing {next} is not after {t}");
        let wall = local_time(next, tz).expect("a firing has a wall-clock time");
        assert!(
            expr.matches(wall) || gap_ends_at(next, wall, tz),
            "firing {next} ({wall} in {tz}) neither matches {:?} nor ends a gap",
            expr.as_str()
        );
        t = next;
    }
}

/// Whether the wall clock jumped forward at `t` (a DST gap, or a zone changing its offset).
fn gap_ends_at(t: DateTime<Utc>, wall: NaiveDateTime, tz: Tz) -> bool {
    let Some(before) = t.checked_sub_signed(TimeDelta::seconds(1)) else {
        return false;
    };
    local_time(before, tz).is_some_and(|b| b + TimeDelta::seconds(1) != wall)
}

/// The wall-clock time of `t`, `None` past the ends of chrono's calendar.
fn local_time(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}
