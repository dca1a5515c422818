//! The missed-run policy: what to do with a stored `next_run` when the scheduler looks at it.

use cambot_core::MissedRunPolicy;
use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;

use super::Schedule;

/// How late a firing may be and still count as on time rather than missed: one minute covers a
/// busy host or a quick restart; anything later was missed while cambot was down.
pub const DEFAULT_MISSED_GRACE: TimeDelta = TimeDelta::seconds(60);

/// What the scheduler does with one due check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueAction {
    /// `next_run` is still in the future.
    NotDue,
    /// Run the task now for the slot `scheduled_for` (the stored `next_run`). `caught_up` is
    /// true when the slot was later than the grace (a `run_once` catch-up after downtime, or a
    /// one-shot fired late).
    Fire {
        scheduled_for: DateTime<Utc>,
        caught_up: bool,
    },
    /// The slot was missed by more than the grace and the policy is `skip`: record it (run log
    /// status `skipped`) and do not run it.
    Skip { missed: DateTime<Utc> },
}

/// The outcome of [`decide_due`]: the action, and the `next_run` to store in the same
/// transaction (`None`: the task has no further firing and is `completed` once done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueDecision {
    pub action: DueAction,
    pub next_run: Option<DateTime<Utc>>,
}

/// Decides whether the task whose stored next firing is `next_run` fires at `now`, and what its
/// next `next_run` is.
///
/// - `next_run > now`: [`DueAction::NotDue`], `next_run` unchanged.
/// - Late by at most `grace`: fire it.
/// - Late by more than `grace` (missed while down): `skip` records it as skipped without running,
///   `run_once` fires it once. Either way every other slot up to `now` is dropped, never queued.
/// - A [`Schedule::Once`] is always fired, however late and whatever the policy: skipping its
///   only slot would mean never running it.
///
/// In every firing or skipping case the new `next_run` is the schedule's first slot strictly
/// after `now` (so the same slot is never handed out twice, and an interval stays on its
/// anchor grid).
pub fn decide_due(
    schedule: &Schedule,
    next_run: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: MissedRunPolicy,
    grace: TimeDelta,
) -> DueDecision {
    if next_run > now {
        return DueDecision {
            action: DueAction::NotDue,
            next_run: Some(next_run),
        };
    }
    let late = now - next_run > grace;
    let action = match (late, policy, schedule) {
        (true, MissedRunPolicy::Skip, Schedule::Cron { .. } | Schedule::Interval { .. }) => {
            DueAction::Skip { missed: next_run }
        }
        (caught_up, _, _) => DueAction::Fire {
            scheduled_for: next_run,
            caught_up,
        },
    };
    DueDecision {
        action,
        next_run: schedule.next_run_after(now),
    }
}

#[cfg(test)]
#[path = "missed_tests.rs"]
mod tests;
