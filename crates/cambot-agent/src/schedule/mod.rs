//! Schedule math: cron, interval and one-shot schedules (issue 5).
