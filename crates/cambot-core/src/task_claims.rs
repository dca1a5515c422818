//! Claiming due task firings. A claim moves the task's `next_run` forward and writes the
//! firing's run-log row in the same transaction, and only if `next_run` still holds the value
//! the scheduler read (compare-and-swap): so a firing is handed out once, across crashes,
//! restarts and concurrent schedulers.

use cambot_protocol::TaskId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::db::Store;
use crate::error::Result;
use crate::tasks::ScheduledTask;
use crate::tasks::TASK_COLUMNS;
use crate::tasks::TASK_RUN_COLUMNS;
use crate::tasks::TaskRun;
use crate::tasks::TaskStatus;
use crate::tasks::task_from_row;
use crate::tasks::task_run_from_row;

/// One firing to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub task_id: TaskId,
    /// The `next_run` the scheduler read; the claim fails if it changed meanwhile.
    pub expected_next_run_ms: i64,
    /// The `next_run` to store (`None`: no further firing).
    pub new_next_run_ms: Option<i64>,
    /// The slot this firing is for.
    pub scheduled_for_ms: i64,
    /// `claimed` (will run) or `skipped` (recorded, not run).
    pub run_status: &'static str,
    /// Note for the run log (`skipped` reasons).
    pub note: Option<String>,
}

/// A due task as read for claiming: an invalid row comes back as its error, with its id, so
/// the scheduler can pause it instead of retrying it forever.
#[derive(Debug)]
pub struct DueRow {
    pub id: String,
    pub task: Result<ScheduledTask>,
}

impl Store {
    /// The earliest `next_run_ms` of an active task.
    pub fn next_due_ms(&self) -> Result<Option<i64>> {
        let conn = self.reader()?;
        Ok(conn
            .prepare_cached(
                "SELECT MIN(next_run_ms) FROM scheduled_tasks WHERE status = 'active' AND next_run_ms IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))?)
    }

    /// Active tasks due at `now_ms`, earliest first.
    pub fn due_tasks(&self, now_ms: i64, limit: usize) -> Result<Vec<DueRow>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM scheduled_tasks
             WHERE status = 'active' AND next_run_ms IS NOT NULL AND next_run_ms <= ?1
             ORDER BY next_run_ms, id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    let id: String = r.get(0)?;
                    Ok(DueRow {
                        id,
                        task: task_from_row(r)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Task ids with a firing claimed or running now.
    pub fn tasks_with_unfinished_runs(&self) -> Result<std::collections::HashSet<String>> {
        let conn = self.reader()?;
        let ids = conn
            .prepare_cached(
                "SELECT DISTINCT task_id FROM task_runs WHERE status IN ('claimed', 'running')",
            )?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Claims firings in one transaction. Returns, per claim, the run-log id, or `None` when the
    /// task changed meanwhile (another claim won, or it was paused, resumed or cancelled).
    pub fn claim_firings(&self, claims: &[Claim]) -> Result<Vec<Option<i64>>> {
        let now = crate::time::now_rfc3339();
        self.with_tx(|tx| {
            let mut out = Vec::with_capacity(claims.len());
            for c in claims {
                let changed = tx
                    .prepare_cached(
                        "UPDATE scheduled_tasks SET next_run_ms = ?2
                         WHERE id = ?1 AND status = 'active' AND next_run_ms = ?3",
                    )?
                    .execute(params![
                        c.task_id.as_str(),
                        c.new_next_run_ms,
                        c.expected_next_run_ms
                    ])?;
                if changed == 0 {
                    out.push(None);
                    continue;
                }
                let id: i64 = tx
                    .prepare_cached(
                        "INSERT INTO task_runs (task_id, scheduled_for_ms, run_at, status, error)
                         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    )?
                    .query_row(
                        params![
                            c.task_id.as_str(),
                            c.scheduled_for_ms,
                            now,
                            c.run_status,
                            c.note
                        ],
                        |r| r.get(0),
                    )?;
                out.push(Some(id));
            }
            Ok(out)
        })
    }

    /// Moves a task's `next_run` forward without a firing (compare-and-swap as above).
    pub fn advance_next_run(
        &self,
        id: &TaskId,
        expected_ms: i64,
        new_ms: Option<i64>,
    ) -> Result<bool> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE scheduled_tasks SET next_run_ms = ?2 WHERE id = ?1 AND status = 'active' AND next_run_ms = ?3",
            params![id.as_str(), new_ms, expected_ms],
        )?;
        Ok(n > 0)
    }

    /// Pauses a task whose stored definition cannot run, recording why in its log.
    pub fn pause_invalid_task(&self, id: &str, reason: &str) -> Result<()> {
        let now = crate::time::now_rfc3339();
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE scheduled_tasks SET status = 'paused', last_result = ?2 WHERE id = ?1",
                params![id, format!("Error: {reason}")],
            )?;
            tx.execute(
                "INSERT INTO task_runs (task_id, run_at, status, error) VALUES (?1, ?2, 'error', ?3)",
                params![id, now, reason],
            )?;
            Ok(())
        })
    }

    /// Marks a claimed firing as running (its start time becomes `run_at`).
    pub fn start_task_run(&self, run_id: i64) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached("UPDATE task_runs SET status = 'running', run_at = ?2 WHERE id = ?1")?
            .execute(params![run_id, crate::time::now_rfc3339()])?;
        Ok(())
    }

    /// Records a firing's outcome and the task's last result; a finished one-shot becomes
    /// `completed`, also when it was paused while it ran (resuming it would fire it again).
    pub fn finish_task_run(
        &self,
        run_id: i64,
        task_id: &TaskId,
        outcome: &RunOutcomeRecord,
    ) -> Result<()> {
        self.with_tx(|tx| {
            tx.prepare_cached(
                "UPDATE task_runs SET status = ?2, duration_ms = ?3, result = ?4, error = ?5 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                outcome.status,
                outcome.duration_ms,
                outcome.result,
                outcome.error
            ])?;
            let last_result = match (&outcome.error, &outcome.result) {
                (Some(e), _) => format!("Error: {e}"),
                (None, Some(r)) => r.chars().take(200).collect(),
                (None, None) => "Completed".to_owned(),
            };
            tx.prepare_cached(
                "UPDATE scheduled_tasks SET last_run = ?2, last_result = ?3,
                     status = CASE WHEN ?4 AND status IN ('active', 'paused') AND next_run_ms IS NULL THEN 'completed' ELSE status END
                 WHERE id = ?1",
            )?
            .execute(params![
                task_id.as_str(),
                crate::time::now_rfc3339(),
                last_result,
                outcome.completes_once
            ])?;
            Ok(())
        })
    }

    /// Firings that were claimed or running when the process stopped.
    pub fn unfinished_task_runs(&self) -> Result<Vec<TaskRun>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE status IN ('claimed', 'running') ORDER BY id"
            ))?
            .query_map([], task_run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Sets a firing's status without touching the task (`claimed` again, `cancelled`,
    /// `interrupted`, `skipped`).
    pub fn set_task_run_status(&self, run_id: i64, status: &str, note: Option<&str>) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "UPDATE task_runs SET status = ?2, error = COALESCE(?3, error) WHERE id = ?1",
        )?
        .execute(params![run_id, status, note])?;
        Ok(())
    }

    /// The task a run belongs to, if it still exists.
    pub fn task_of_run(&self, run_id: i64) -> Result<Option<ScheduledTask>> {
        let conn = self.reader()?;
        let row = conn
            .prepare_cached(&format!(
                "SELECT {} FROM scheduled_tasks t JOIN task_runs r ON r.task_id = t.id WHERE r.id = ?1",
                TASK_COLUMNS
                    .split(", ")
                    .map(|c| format!("t.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?
            .query_row(params![run_id], task_from_row)
            .optional()?;
        row.transpose()
    }
}

/// What [`Store::finish_task_run`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcomeRecord {
    /// `success` or `error`.
    pub status: &'static str,
    pub duration_ms: i64,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The task is a one-shot: mark it `completed` when it has no further firing.
    pub completes_once: bool,
}

impl TaskStatus {
    /// Whether the scheduler fires a task in this status.
    pub fn is_active(self) -> bool {
        self == Self::Active
    }
}
