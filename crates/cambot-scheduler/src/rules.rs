//! The task scheduler's rules on top of the schedule math in [`crate::cron`].

use cambot_core::ScheduledTask;
use chrono::DateTime;
use chrono::Utc;

use crate::cron::Schedule;
use crate::cron::ScheduleError;
use crate::cron::parse_time_zone;

/// Rebuilds a stored task's schedule. An interval keeps its grid: it is anchored at the stored
/// next run (or, without one, at `now`).
pub fn stored_schedule(
    task: &ScheduledTask,
    now: DateTime<Utc>,
) -> Result<Schedule, ScheduleError> {
    let tz = parse_time_zone(&task.timezone)?;
    let schedule = Schedule::parse(&task.schedule_type, &task.schedule_value, tz, now)?;
    let anchor = task
        .next_run_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or(now);
    Ok(schedule.anchored_at(anchor))
}

/// The next run of a task being resumed: the next slot after now (a one-shot keeps its time,
/// and fires at once when that has passed).
pub fn next_run_on_resume(
    task: &ScheduledTask,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    Ok(stored_schedule(task, now)?.first_run(now))
}
