use chrono::DateTime;
use chrono::NaiveDate;
use chrono::NaiveDateTime;
use chrono::TimeDelta;
use chrono::TimeZone;
use chrono::Utc;
use chrono_tz::Tz;
use pretty_assertions::assert_eq;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::cron::next_after;

fn cron(expr: &str) -> CronExpr {
    CronExpr::parse(expr).unwrap()
}

fn local(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The next `n` firings after `start`, as RFC 3339 in the zone.
fn firings(expr: &str, tz: Tz, start: &str, n: usize) -> Vec<String> {
    let expr = cron(expr);
    let mut at = utc(start);
    (0..n)
        .map(|_| {
            at = next_after(&expr, at, tz).unwrap();
            at.with_timezone(&tz).to_rfc3339()
        })
        .collect()
}

#[test]
fn fields_accept_lists_ranges_steps_names_and_sunday_seven() {
    let e = cron("*/15 9-17/4 1,15 jan-MAR/2 Mon-fri");
    assert!(e.matches(local("2025-01-01 09:00"))); // Wednesday the 1st
    assert!(e.matches(local("2025-03-03 17:45"))); // Monday
    assert!(!e.matches(local("2025-02-03 09:00"))); // February not selected
    assert!(!e.matches(local("2025-01-01 10:00"))); // 10 not in 9,13,17
    assert!(!e.matches(local("2025-01-01 09:10")));
    // `a/s` = `a-max/s`; 7 and SUN are Sunday; FRI-SUN wraps to Sunday.
    let e = cron("5/20 0 * * 7");
    assert!(e.matches(local("2025-01-05 00:45"))); // Sunday
    assert!(!e.matches(local("2025-01-06 00:45")));
    let e = cron("0 0 * * FRI-SUN");
    let days: Vec<u32> = (1..=7)
        .filter(|d| e.matches(local(&format!("2025-01-{d:02} 00:00"))))
        .collect();
    assert_eq!(days, vec![3, 4, 5]); // Fri 3, Sat 4, Sun 5
    // `a-a` is just `a` (croniter reads it as the whole range).
    let e = cron("5-5 * * * *");
    assert!(e.matches(local("2025-01-01 00:05")));
    assert!(!e.matches(local("2025-01-01 00:06")));
    // Day-of-week `a/s` ends at Saturday: FRI/2 is Friday only.
    let e = cron("0 0 * * FRI/2");
    assert!(e.matches(local("2025-01-03 00:00")));
    assert!(!e.matches(local("2025-01-05 00:00")));
}

#[test]
fn macros_expand() {
    for (mac, plain) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ] {
        let (a, b) = (cron(mac), cron(plain));
        let start = utc("2025-06-15T10:20:00Z");
        assert_eq!(
            next_after(&a, start, Tz::UTC),
            next_after(&b, start, Tz::UTC)
        );
        assert_eq!(a.as_str(), mac);
    }
}

#[test]
fn both_day_fields_restricted_means_either_matches() {
    let either = cron("0 0 13 * FRI");
    assert!(either.matches(local("2025-06-13 00:00"))); // Friday the 13th
    assert!(either.matches(local("2025-06-06 00:00"))); // a Friday
    assert!(either.matches(local("2025-07-13 00:00"))); // a Sunday the 13th
    assert!(!either.matches(local("2025-06-07 00:00")));
    let dom_only = cron("0 0 13 * *");
    assert!(!dom_only.matches(local("2025-06-06 00:00")));
    let dow_only = cron("0 0 * * FRI");
    assert!(!dow_only.matches(local("2025-07-13 00:00")));
    // `*/2` counts as restricted (Vixie's "starts with *" quirk is not copied).
    let star_step = cron("0 0 */2 * MON");
    assert!(star_step.matches(local("2025-06-03 00:00"))); // 3rd, a Tuesday
    assert!(star_step.matches(local("2025-06-02 00:00"))); // a Monday, even day
}

#[test]
fn every_rejection_says_why() {
    use CronError::*;
    let cases: Vec<(&str, CronError)> = vec![
        ("", Empty),
        ("   ", Empty),
        ("* * * *", FieldCount(4)),
        ("* * * * * *", FieldCount(6)),
        ("@reboot", UnknownMacro("@reboot".into())),
        (
            "1,,2 * * * *",
            EmptyElement {
                field: Field::Minute,
            },
        ),
        (
            "x * * * *",
            Syntax {
                field: Field::Minute,
                token: "x".into(),
            },
        ),
        (
            "* * * JANUARY *",
            Syntax {
                field: Field::Month,
                token: "JANUARY".into(),
            },
        ),
        (
            "* * * * MON-",
            Syntax {
                field: Field::DayOfWeek,
                token: "".into(),
            },
        ),
        (
            "* * ? * *",
            Syntax {
                field: Field::DayOfMonth,
                token: "?".into(),
            },
        ),
        (
            "* * L * *",
            Syntax {
                field: Field::DayOfMonth,
                token: "L".into(),
            },
        ),
        (
            "* * * * -1",
            Syntax {
                field: Field::DayOfWeek,
                token: "".into(),
            },
        ),
        (
            "*/x * * * *",
            Syntax {
                field: Field::Minute,
                token: "*/x".into(),
            },
        ),
        (
            "60 * * * *",
            OutOfRange {
                field: Field::Minute,
                value: 60,
                min: 0,
                max: 59,
            },
        ),
        (
            "* 24 * * *",
            OutOfRange {
                field: Field::Hour,
                value: 24,
                min: 0,
                max: 23,
            },
        ),
        (
            "* * 0 * *",
            OutOfRange {
                field: Field::DayOfMonth,
                value: 0,
                min: 1,
                max: 31,
            },
        ),
        (
            "* * 32 * *",
            OutOfRange {
                field: Field::DayOfMonth,
                value: 32,
                min: 1,
                max: 31,
            },
        ),
        (
            "* * * 13 *",
            OutOfRange {
                field: Field::Month,
                value: 13,
                min: 1,
                max: 12,
            },
        ),
        (
            "* * * * 8",
            OutOfRange {
                field: Field::DayOfWeek,
                value: 8,
                min: 0,
                max: 7,
            },
        ),
        (
            "99999999999999999999 * * * *",
            OutOfRange {
                field: Field::Minute,
                value: u64::MAX,
                min: 0,
                max: 59,
            },
        ),
        (
            "30-10 * * * *",
            ReversedRange {
                field: Field::Minute,
                start: 30,
                end: 10,
            },
        ),
        (
            "* * * DEC-JAN *",
            ReversedRange {
                field: Field::Month,
                start: 12,
                end: 1,
            },
        ),
        (
            "*/0 * * * *",
            BadStep {
                field: Field::Minute,
                step: 0,
                max: 60,
            },
        ),
        (
            "*/61 * * * *",
            BadStep {
                field: Field::Minute,
                step: 61,
                max: 60,
            },
        ),
        (
            "* */25 * * *",
            BadStep {
                field: Field::Hour,
                step: 25,
                max: 24,
            },
        ),
        ("0 0 30 2 *", NeverMatches),
        ("0 0 31 4,6,9,11 *", NeverMatches),
    ];
    for (expr, want) in cases {
        assert_eq!(CronExpr::parse(expr), Err(want), "{expr:?}");
    }
    // The same day-of-month with a restricted day-of-week is fine (either may match).
    assert!(CronExpr::parse("0 0 30 2 MON").is_ok());
    // 29 February occurs in leap years.
    assert!(CronExpr::parse("0 0 29 2 *").is_ok());
    assert_eq!(
        CronExpr::parse("* 24 * * *").unwrap_err().to_string(),
        "hour: 24 is out of range 0-23"
    );
}

#[test]
fn strictly_after_and_seconds_are_rounded_up() {
    let e = cron("0 9 * * *");
    let at = utc("2025-01-01T09:00:00Z");
    assert_eq!(
        next_after(&e, at, Tz::UTC),
        Some(utc("2025-01-02T09:00:00Z"))
    );
    let just_before = at - TimeDelta::nanoseconds(1);
    assert_eq!(next_after(&e, just_before, Tz::UTC), Some(at));
    let every = cron("* * * * *");
    assert_eq!(
        next_after(&every, utc("2025-01-01T09:00:30.5Z"), Tz::UTC),
        Some(utc("2025-01-01T09:01:00Z"))
    );
}

#[test]
fn skips_by_field_across_years() {
    let leap = cron("0 0 29 2 *");
    assert_eq!(
        next_after(&leap, utc("2096-03-01T00:00:00Z"), Tz::UTC),
        Some(utc("2104-02-29T00:00:00Z")) // 2100 is not a leap year
    );
    let friday_13 = cron("0 12 13 * *");
    let mut at = utc("2025-01-01T00:00:00Z");
    for want in ["2025-01-13", "2025-02-13", "2025-03-13"] {
        at = next_after(&friday_13, at, Tz::UTC).unwrap();
        assert_eq!(at.date_naive().to_string(), want);
    }
    assert_eq!(
        next_after(&cron("59 23 31 12 *"), utc("2025-12-31T23:59:00Z"), Tz::UTC),
        Some(utc("2026-12-31T23:59:00Z"))
    );
}

#[test]
fn new_york_spring_forward() {
    let ny = chrono_tz::America::New_York; // 2024-03-10 02:00 EST -> 03:00 EDT
    // Wall-clock expression: the skipped 02:30 fires when the gap ends, once.
    assert_eq!(
        firings("30 2 * * *", ny, "2024-03-09T12:00:00Z", 3),
        [
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:30:00-04:00",
            "2024-03-12T02:30:00-04:00"
        ]
    );
    assert_eq!(
        firings("0,30 2 * * *", ny, "2024-03-10T06:00:00Z", 2),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00"]
    );
    // Every-hour expression: skipped wall times do not fire.
    assert_eq!(
        firings("*/20 * * * *", ny, "2024-03-10T06:30:00Z", 4),
        [
            "2024-03-10T01:40:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T03:20:00-04:00",
            "2024-03-10T03:40:00-04:00"
        ]
    );
}

#[test]
fn new_york_fall_back() {
    let ny = chrono_tz::America::New_York; // 2024-11-03 02:00 EDT -> 01:00 EST
    // Wall-clock expression: the repeated 01:30 fires at its first occurrence only.
    assert_eq!(
        firings("30 1 * * *", ny, "2024-11-02T16:00:00Z", 2),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
    // Starting inside the second pass does not fire the repeated time again.
    assert_eq!(
        firings("30 1 * * *", ny, "2024-11-03T06:10:00Z", 1),
        ["2024-11-04T01:30:00-05:00"]
    );
    // Every-hour expression: both passes fire.
    assert_eq!(
        firings("*/20 * * * *", ny, "2024-11-03T04:30:00Z", 8),
        [
            "2024-11-03T00:40:00-04:00",
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:20:00-04:00",
            "2024-11-03T01:40:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:20:00-05:00",
            "2024-11-03T01:40:00-05:00",
            "2024-11-03T02:00:00-05:00"
        ]
    );
    // From late in the first pass, the next firing is an earlier wall time in the second pass.
    assert_eq!(
        firings("15 * * * *", ny, "2024-11-03T05:50:00Z", 2),
        ["2024-11-03T01:15:00-05:00", "2024-11-03T02:15:00-05:00"]
    );
}

#[test]
fn sydney_both_directions() {
    let syd = chrono_tz::Australia::Sydney;
    // 2024-04-07 03:00 AEDT -> 02:00 AEST (fall back)
    assert_eq!(
        firings("30 2 * * *", syd, "2024-04-06T00:00:00Z", 2),
        ["2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"]
    );
    assert_eq!(
        firings("30 * * * *", syd, "2024-04-06T15:00:00Z", 3),
        [
            "2024-04-07T02:30:00+11:00",
            "2024-04-07T02:30:00+10:00",
            "2024-04-07T03:30:00+10:00"
        ]
    );
    // 2024-10-06 02:00 AEST -> 03:00 AEDT (spring forward)
    assert_eq!(
        firings("30 2 * * *", syd, "2024-10-05T00:00:00Z", 2),
        ["2024-10-06T03:00:00+11:00", "2024-10-07T02:30:00+11:00"]
    );
}

#[test]
fn london_half_hour_and_midnight_gaps() {
    let london = chrono_tz::Europe::London; // 2024-03-31 01:00 GMT -> 02:00 BST
    assert_eq!(
        firings("30 1 * * *", london, "2024-03-30T12:00:00Z", 2),
        ["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"]
    );
    // Lord Howe moves by 30 minutes: 2024-10-06 02:00 -> 02:30.
    let lord_howe = chrono_tz::Australia::Lord_Howe;
    assert_eq!(
        firings("15 2 * * *", lord_howe, "2024-10-05T00:00:00Z", 2),
        ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"]
    );
    // Santiago skips midnight: 2024-09-08 00:00 -04 -> 01:00 -03.
    let santiago = chrono_tz::America::Santiago;
    assert_eq!(
        firings("0 0 * * *", santiago, "2024-09-07T12:00:00Z", 2),
        ["2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00"]
    );
}

/// The rules of the module docs applied literally, one instant (whole minute) at a time.
fn fires_by_definition(expr: &CronExpr, t: DateTime<Utc>, tz: Tz) -> bool {
    let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    let now = wall(t);
    if expr.matches(now) {
        let first = match tz.from_local_datetime(&now) {
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc) == t,
            _ => true,
        };
        if expr.every_hour() || first {
            return true;
        }
    }
    // A gap ends at `t`: the wall clock jumped from before `t - 1min` to `now`.
    let before = wall(t - TimeDelta::minutes(1));
    if expr.every_hour() || now - before <= TimeDelta::minutes(1) {
        return false;
    }
    let mut m = before + TimeDelta::minutes(1);
    while m < now {
        if expr.matches(m) && tz.from_local_datetime(&m) == chrono::LocalResult::None {
            return true;
        }
        m += TimeDelta::minutes(1);
    }
    false
}

#[test]
fn agrees_with_a_minute_by_minute_reading_of_the_rules_near_dst_changes() {
    let zones = [
        chrono_tz::America::New_York,
        chrono_tz::Australia::Sydney,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Europe::London,
        chrono_tz::America::Santiago,
    ];
    let changes = [
        "2024-03-10T07:00:00Z",
        "2024-11-03T06:00:00Z",
        "2024-04-06T16:00:00Z",
        "2024-10-05T16:00:00Z",
        "2024-10-05T15:30:00Z",
        "2024-04-06T15:00:00Z",
        "2024-03-31T01:00:00Z",
        "2024-10-27T01:00:00Z",
        "2024-09-08T04:00:00Z",
        "2024-04-07T03:00:00Z",
    ];
    let exprs = [
        "30 1 * * *",
        "*/20 * * * *",
        "0,30 1-3 * * *",
        "15 * * * *",
        "* 2 * * *",
        "0 0 * * *",
        "*/7 0-4 * * *",
        "59 23 * * *",
        "45 2,3 * * SUN",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let tz = zones[rng.gen_range(0..zones.len())];
        let change = utc(changes[rng.gen_range(0..changes.len())]);
        let expr = cron(exprs[rng.gen_range(0..exprs.len())]);
        let after = change + TimeDelta::seconds(rng.gen_range(-5 * 3600..3 * 3600));
        let got = next_after(&expr, after, tz).unwrap();
        // Brute force over whole minutes from just after `after`.
        let mut t = DateTime::from_timestamp((after.timestamp() / 60 + 1) * 60, 0).unwrap();
        while !fires_by_definition(&expr, t, tz) {
            t += TimeDelta::minutes(1);
        }
        assert_eq!(got, t, "{} in {tz} after {after}", expr.as_str());
    }
}

#[test]
fn a_working_year_in_berlin_is_261_weekday_mornings() {
    let berlin = chrono_tz::Europe::Berlin;
    let e = cron("0 9 * * MON-FRI");
    let mut at = utc("2025-01-01T00:00:00Z");
    let end = utc("2026-01-01T00:00:00Z");
    let mut count = 0;
    loop {
        at = next_after(&e, at, berlin).unwrap();
        if at >= end {
            break;
        }
        let wall = at.with_timezone(&berlin);
        assert_eq!(wall.format("%H:%M").to_string(), "09:00");
        assert!(!matches!(
            wall.date_naive().format("%a").to_string().as_str(),
            "Sat" | "Sun"
        ));
        count += 1;
    }
    assert_eq!(count, 261);
}

#[test]
fn next_local_match_is_exact_for_the_calendar() {
    let e = cron("0 0 31 * *");
    let from = NaiveDate::from_ymd_opt(2025, 4, 1)
        .unwrap()
        .and_hms_opt(0, 0, 1)
        .unwrap();
    assert_eq!(e.next_local_match(from), Some(local("2025-05-31 00:00")));
    let weekly = cron("0 0 * * SUN");
    assert_eq!(
        weekly.next_local_match(local("2025-01-05 00:00")),
        Some(local("2025-01-05 00:00"))
    );
}
