use cambot_core::MissedRunPolicy;
use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;
use pretty_assertions::assert_eq;

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hourly() -> Schedule {
    Schedule::parse(
        "interval",
        "1h",
        chrono_tz::UTC,
        utc("2026-01-01T00:00:00Z"),
    )
    .unwrap()
}

fn daily_nine() -> Schedule {
    Schedule::parse(
        "cron",
        "0 9 * * *",
        chrono_tz::Europe::London,
        utc("2026-01-01T00:00:00Z"),
    )
    .unwrap()
}

fn decide(schedule: &Schedule, next_run: &str, now: &str, policy: MissedRunPolicy) -> DueDecision {
    decide_due(
        schedule,
        utc(next_run),
        utc(now),
        policy,
        DEFAULT_MISSED_GRACE,
    )
}

#[test]
fn not_due_leaves_next_run_alone() {
    for policy in [MissedRunPolicy::Skip, MissedRunPolicy::RunOnce] {
        let d = decide(
            &hourly(),
            "2026-01-01T10:00:00Z",
            "2026-01-01T09:59:59Z",
            policy,
        );
        assert_eq!(
            d,
            DueDecision {
                action: DueAction::NotDue,
                next_run: Some(utc("2026-01-01T10:00:00Z"))
            }
        );
    }
}

#[test]
fn on_time_fires_whatever_the_policy() {
    for policy in [MissedRunPolicy::Skip, MissedRunPolicy::RunOnce] {
        // Exactly at the slot, and late by exactly the grace.
        for now in ["2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"] {
            let d = decide(&hourly(), "2026-01-01T10:00:00Z", now, policy);
            assert_eq!(
                d,
                DueDecision {
                    action: DueAction::Fire {
                        scheduled_for: utc("2026-01-01T10:00:00Z"),
                        caught_up: false
                    },
                    next_run: Some(utc("2026-01-01T11:00:00Z"))
                }
            );
        }
    }
}

#[test]
fn skip_does_not_fire_a_run_missed_while_down() {
    // Down from 09:59 to 13:30: the 10:00 slot (and 11, 12, 13) is skipped, next is 14:00.
    let d = decide(
        &hourly(),
        "2026-01-01T10:00:00Z",
        "2026-01-01T13:30:00Z",
        MissedRunPolicy::Skip,
    );
    assert_eq!(
        d,
        DueDecision {
            action: DueAction::Skip {
                missed: utc("2026-01-01T10:00:00Z")
            },
            next_run: Some(utc("2026-01-01T14:00:00Z"))
        }
    );
    // One second past the grace is already missed.
    let d = decide(
        &daily_nine(),
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:01:01Z",
        MissedRunPolicy::Skip,
    );
    assert_eq!(
        d.action,
        DueAction::Skip {
            missed: utc("2026-01-05T09:00:00Z")
        }
    );
    assert_eq!(d.next_run, Some(utc("2026-01-06T09:00:00Z")));
}

#[test]
fn run_once_fires_once_then_moves_to_the_next_future_slot() {
    // Down for three days: one catch-up run, not three.
    let d = decide(
        &daily_nine(),
        "2026-01-05T09:00:00Z",
        "2026-01-08T12:00:00Z",
        MissedRunPolicy::RunOnce,
    );
    assert_eq!(
        d,
        DueDecision {
            action: DueAction::Fire {
                scheduled_for: utc("2026-01-05T09:00:00Z"),
                caught_up: true
            },
            next_run: Some(utc("2026-01-09T09:00:00Z"))
        }
    );
    // Asking again at the same moment with the new next_run: nothing more to fire.
    let again = decide(
        &daily_nine(),
        "2026-01-09T09:00:00Z",
        "2026-01-08T12:00:00Z",
        MissedRunPolicy::RunOnce,
    );
    assert_eq!(again.action, DueAction::NotDue);
}

#[test]
fn a_one_shot_missed_while_down_still_fires_once() {
    let once = Schedule::parse(
        "once",
        "2026-01-05T09:00:00Z",
        chrono_tz::UTC,
        utc("2026-01-01T00:00:00Z"),
    )
    .unwrap();
    for policy in [MissedRunPolicy::Skip, MissedRunPolicy::RunOnce] {
        let d = decide(
            &once,
            "2026-01-05T09:00:00Z",
            "2026-01-06T00:00:00Z",
            policy,
        );
        assert_eq!(
            d,
            DueDecision {
                action: DueAction::Fire {
                    scheduled_for: utc("2026-01-05T09:00:00Z"),
                    caught_up: true
                },
                next_run: None
            }
        );
    }
    // On time: fires, and there is no next run (the task completes).
    let d = decide(
        &once,
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:00:00Z",
        MissedRunPolicy::Skip,
    );
    assert_eq!(d.next_run, None);
    assert!(matches!(
        d.action,
        DueAction::Fire {
            caught_up: false,
            ..
        }
    ));
}

#[test]
fn the_next_run_is_always_strictly_after_now() {
    // Fired exactly on the slot: the same slot is never handed out again.
    let d = decide(
        &daily_nine(),
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:00:00Z",
        MissedRunPolicy::Skip,
    );
    assert_eq!(d.next_run, Some(utc("2026-01-06T09:00:00Z")));
    let custom = decide_due(
        &hourly(),
        utc("2026-01-01T10:00:00Z"),
        utc("2026-01-01T10:04:00Z"),
        MissedRunPolicy::Skip,
        TimeDelta::minutes(5),
    );
    assert!(matches!(
        custom.action,
        DueAction::Fire {
            caught_up: false,
            ..
        }
    ));
}
