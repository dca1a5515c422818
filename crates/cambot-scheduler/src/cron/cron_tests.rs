use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;
use chrono_tz::Tz;
use pretty_assertions::assert_eq;

use super::*;

const NY: Tz = chrono_tz::America::New_York;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    utc("2026-06-15T12:34:56.789Z")
}

fn parse(kind: &str, value: &str) -> Result<Schedule, ScheduleError> {
    Schedule::parse(kind, value, NY, now())
}

fn once_at(value: &str) -> DateTime<Utc> {
    match parse("once", value) {
        Ok(Schedule::Once { at }) => at,
        other => panic!("{value:?}: {other:?}"),
    }
}

// ---- the seed's ipc-auth schedule cases ----

#[test]
fn seed_cron_task_gets_a_future_next_run() {
    let schedule = parse("cron", "0 9 * * *").unwrap();
    let next = schedule.first_run(now()).unwrap();
    assert!(next > now());
    assert_eq!(next, utc("2026-06-15T13:00:00Z")); // 09:00 EDT, 08:34 now
}

#[test]
fn seed_invalid_cron_is_rejected() {
    let err = parse("cron", "not a cron").unwrap_err();
    assert_eq!(
        err,
        ScheduleError::Cron {
            value: "not a cron".into(),
            reason: CronError::FieldCount(3)
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid cron expression \"not a cron\": expected 5 fields (minute hour day-of-month \
         month day-of-week), got 3"
    );
}

#[test]
fn seed_interval_3600000_is_now_plus_one_hour() {
    let schedule = parse("interval", "3600000").unwrap();
    assert_eq!(schedule.first_run(now()), Some(now() + TimeDelta::hours(1)));
}

#[test]
fn seed_abc_and_zero_intervals_are_rejected() {
    assert_eq!(
        parse("interval", "abc"),
        Err(ScheduleError::Interval {
            value: "abc".into(),
            reason: IntervalError::NotANumber
        })
    );
    assert_eq!(
        parse("interval", "0"),
        Err(ScheduleError::Interval {
            value: "0".into(),
            reason: IntervalError::Zero
        })
    );
}

#[test]
fn seed_invalid_once_timestamp_is_rejected() {
    assert_eq!(
        parse("once", "not-a-date"),
        Err(ScheduleError::Once {
            value: "not-a-date".into(),
            reason: OnceError::Unrecognized
        })
    );
}

// ---- types ----

#[test]
fn unknown_schedule_types_are_rejected_not_stored() {
    for kind in ["", "weekly", "CRON", " cron", "at"] {
        assert_eq!(
            parse(kind, "0 9 * * *"),
            Err(ScheduleError::UnknownType(kind.into()))
        );
    }
    assert_eq!(
        parse("weekly", "x").unwrap_err().to_string(),
        "unknown schedule type \"weekly\" (expected cron, interval or once)"
    );
}

#[test]
fn time_zones_by_iana_name() {
    assert_eq!(
        parse_time_zone("Europe/London"),
        Ok(chrono_tz::Europe::London)
    );
    assert_eq!(parse_time_zone(" UTC "), Ok(Tz::UTC));
    assert_eq!(
        parse_time_zone("Mars/Olympus"),
        Err(ScheduleError::UnknownTimeZone("Mars/Olympus".into()))
    );
}

// ---- interval ----

#[test]
fn interval_forms() {
    let every = |v: &str| match parse("interval", v) {
        Ok(Schedule::Interval { every, anchor }) => {
            assert_eq!(anchor, now());
            every.as_millis()
        }
        other => panic!("{v:?}: {other:?}"),
    };
    assert_eq!(every("3600000"), 3_600_000);
    assert_eq!(every(" 60000 "), 60_000);
    assert_eq!(every("500ms"), 500);
    assert_eq!(every("45s"), 45_000);
    assert_eq!(every("30m"), 1_800_000);
    assert_eq!(every("2h"), 7_200_000);
    assert_eq!(every("1d"), 86_400_000);
    assert_eq!(every("36525d"), 3_155_760_000_000); // exactly the maximum
}

#[test]
fn interval_rejections_say_why() {
    use IntervalError::*;
    for (value, reason) in [
        ("", Empty),
        ("  ", Empty),
        ("-5", Negative),
        ("-0", Negative),
        ("abc", NotANumber),
        ("10abc", NotANumber),
        ("1.5h", NotANumber),
        ("m", NotANumber),
        ("+5", NotANumber),
        ("5 m", NotANumber),
        ("0", Zero),
        ("0m", Zero),
        ("36526d", TooLarge),
        ("99999999999999999999", TooLarge),
        ("999999999999999999d", TooLarge),
    ] {
        assert_eq!(parse_interval(value), Err(reason.clone()), "{value:?}");
        assert_eq!(
            parse("interval", value),
            Err(ScheduleError::Interval {
                value: value.into(),
                reason
            })
        );
    }
}

#[test]
fn interval_is_anchored_to_the_schedule_and_skips_missed_slots() {
    let anchor = utc("2026-01-01T10:00:00Z");
    let hourly = parse("interval", "1h").unwrap().anchored_at(anchor);
    let next = |after: &str| hourly.next_run_after(utc(after)).unwrap();
    assert_eq!(next("2026-01-01T09:00:00Z"), anchor); // anchor still ahead
    assert_eq!(next("2026-01-01T10:00:00Z"), utc("2026-01-01T11:00:00Z"));
    assert_eq!(
        next("2026-01-01T10:59:59.999Z"),
        utc("2026-01-01T11:00:00Z")
    );
    // A run that ended at 11:30 does not move the grid (the seed drifted to 12:30).
    assert_eq!(next("2026-01-01T11:30:00Z"), utc("2026-01-01T12:00:00Z"));
    // Down from 10:05 to 13:30: the 11:00, 12:00 and 13:00 slots are skipped, not queued.
    assert_eq!(next("2026-01-01T13:30:00Z"), utc("2026-01-01T14:00:00Z"));
    // Far later, still on the grid.
    assert_eq!(next("2031-07-09T10:00:00Z"), utc("2031-07-09T11:00:00Z"));
    // Sub-second anchors stay exact.
    let odd = parse("interval", "1500")
        .unwrap()
        .anchored_at(utc("2026-01-01T00:00:00.250Z"));
    assert_eq!(
        odd.next_run_after(utc("2026-01-01T00:00:03.000Z")),
        Some(utc("2026-01-01T00:00:03.250Z"))
    );
}

// ---- once ----

#[test]
fn once_with_explicit_offsets() {
    assert_eq!(once_at("2026-12-01T09:00:00Z"), utc("2026-12-01T09:00:00Z"));
    assert_eq!(
        once_at("2026-12-01T09:00:00+01:00"),
        utc("2026-12-01T08:00:00Z")
    );
    assert_eq!(
        once_at("2026-12-01 09:00:00.5-05:00"),
        utc("2026-12-01T14:00:00.5Z")
    );
    assert_eq!(once_at("2026-12-01T09:00Z"), utc("2026-12-01T09:00:00Z"));
    assert_eq!(
        once_at("2026-12-01T09:00+05:30"),
        utc("2026-12-01T03:30:00Z")
    );
}

#[test]
fn once_relative_to_now() {
    assert_eq!(once_at("+30s"), now() + TimeDelta::seconds(30));
    assert_eq!(once_at("+30m"), now() + TimeDelta::minutes(30));
    assert_eq!(once_at("+2h"), now() + TimeDelta::hours(2));
    assert_eq!(once_at("+1d"), now() + TimeDelta::days(1));
    assert_eq!(once_at(" +90m "), now() + TimeDelta::minutes(90));
}

#[test]
fn once_bare_local_times_use_the_zone_and_the_dst_rule() {
    assert_eq!(once_at("2026-12-01T09:00"), utc("2026-12-01T14:00:00Z")); // EST
    assert_eq!(once_at("2026-07-01 09:00"), utc("2026-07-01T13:00:00Z")); // EDT
    assert_eq!(once_at("2026-07-01 09:00:30"), utc("2026-07-01T13:00:30Z"));
    assert_eq!(
        once_at("2026-07-01T09:00:30.25"),
        utc("2026-07-01T13:00:30.25Z")
    );
    // Skipped by spring-forward (2026-03-08 02:00 EST -> 03:00 EDT): the end of the gap.
    assert_eq!(once_at("2026-03-08T02:30"), utc("2026-03-08T07:00:00Z"));
    // Repeated at fall-back (2026-11-01): the first occurrence (EDT).
    assert_eq!(once_at("2026-11-01T01:30"), utc("2026-11-01T05:30:00Z"));
    // The zone is the task's, not the host's.
    let london = Schedule::parse("once", "2026-12-01T09:00", chrono_tz::Europe::London, now());
    assert_eq!(
        london,
        Ok(Schedule::Once {
            at: utc("2026-12-01T09:00:00Z")
        })
    );
}

#[test]
fn once_rejections_say_why() {
    use OnceError::*;
    for (value, reason) in [
        ("", Empty),
        ("+0m", BadRelative),
        ("+5x", BadRelative),
        ("+m", BadRelative),
        ("+-5m", BadRelative),
        ("+1.5h", BadRelative),
        ("+5", BadRelative),
        ("+99999999999999999999d", OutOfRange),
        ("+9999999999999d", OutOfRange),
        ("tomorrow", Unrecognized),
        ("2026-12-01", Unrecognized),
        ("2026-13-01T09:00", Unrecognized),
        ("2026-02-30T09:00", Unrecognized),
        ("2026-12-01T25:00", Unrecognized),
        ("12/01/2026 09:00", Unrecognized),
    ] {
        assert_eq!(
            parse("once", value),
            Err(ScheduleError::Once {
                value: value.into(),
                reason
            }),
            "{value:?}"
        );
    }
}

#[test]
fn once_in_the_past_is_due_once_then_done() {
    let schedule = parse("once", "2020-01-01T00:00:00Z").unwrap();
    let at = utc("2020-01-01T00:00:00Z");
    // A new (or resumed) task: next_run is the past time, so the scheduler sees it due.
    assert_eq!(schedule.first_run(now()), Some(at));
    // After it fired there is no further slot.
    assert_eq!(schedule.next_run_after(now()), None);
    // A future one-shot: its time, then nothing.
    let later = parse("once", "+2h").unwrap();
    assert_eq!(
        later.next_run_after(now()),
        Some(now() + TimeDelta::hours(2))
    );
    assert_eq!(later.next_run_after(now() + TimeDelta::hours(2)), None);
}

#[test]
fn canonical_values_reparse_to_the_same_schedule() {
    for (kind, value, canonical) in [
        ("cron", " 0 9 * * MON-FRI ", "0 9 * * MON-FRI"),
        ("interval", "30m", "1800000"),
        ("once", "+2h", "2026-06-15T14:34:56.789Z"),
        ("once", "2026-12-01T09:00", "2026-12-01T14:00:00Z"),
    ] {
        let schedule = parse(kind, value).unwrap();
        assert_eq!(schedule.schedule_type(), kind);
        assert_eq!(schedule.canonical_value(), canonical);
        let later = now() + TimeDelta::days(3);
        let again = Schedule::parse(kind, canonical, NY, later).unwrap();
        assert_eq!(again, schedule.clone().anchored_at(later));
    }
}

// Found by the `cron` fuzz target: a one-shot after year 9999 has no RFC 3339 form, so its
// stored value ("+17225-03-03T23:25:19Z") could never be read back.
#[test]
fn once_times_without_a_four_digit_year_are_out_of_range() {
    let far = DateTime::from_timestamp(481_406_838_591, 0).unwrap();
    assert_eq!(
        Schedule::parse("once", "+2h", chrono_tz::UTC, far),
        Err(ScheduleError::Once {
            value: "+2h".into(),
            reason: OnceError::OutOfRange
        })
    );
    assert_eq!(
        parse("once", "+3000000d"),
        Err(ScheduleError::Once {
            value: "+3000000d".into(),
            reason: OnceError::OutOfRange
        })
    );
    assert!(parse("once", "+10000-01-01T00:00:00Z").is_err());
    assert!(parse("once", "10000-01-01T09:00").is_err());
    let last = parse("once", "9999-12-31T23:59:59Z").unwrap();
    assert_eq!(
        Schedule::parse("once", &last.canonical_value(), NY, now()).unwrap(),
        last
    );
}

// Found by the `cron` fuzz target: a leap second in a zone whose offset has seconds (LMT) was
// stored as an RFC 3339 value one second earlier than the scheduled instant.
#[test]
fn once_leap_seconds_are_the_next_second_and_read_back_unchanged() {
    assert_eq!(once_at("2026-06-30T23:59:60Z"), utc("2026-07-01T00:00:00Z"));
    for tz in chrono_tz::TZ_VARIANTS {
        let Ok(schedule) = Schedule::parse("once", "5-12- 2T9:00:60.000301", tz, now()) else {
            continue;
        };
        let canonical = schedule.canonical_value();
        assert_eq!(
            Schedule::parse("once", &canonical, tz, now()),
            Ok(schedule),
            "{tz}: {canonical}"
        );
    }
}

// Found by the `cron` fuzz target: next_after panicked (chrono's `naive_local`) when a zone's
// offset pushed the start instant past the end of chrono's calendar, instead of returning None.
#[test]
fn next_firing_at_the_ends_of_the_calendar_is_none_not_a_panic() {
    let yearly = CronExpr::parse("@yearly").unwrap();
    for tz in [chrono_tz::TZ_VARIANTS[0], chrono_tz::Asia::Tokyo, NY] {
        for after in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            if let Some(next) = next_after(&yearly, after, tz) {
                assert!(next > after, "{tz} {after}: {next}");
            }
        }
    }
    assert_eq!(
        next_after(&yearly, DateTime::<Utc>::MAX_UTC, chrono_tz::Asia::Tokyo),
        None
    );
}
