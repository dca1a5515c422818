//! [`TaskStore`] on SQLite: scheduled tasks, their run log, and the claims that hand each firing
//! out once. A claim moves the task's `next_run` forward and writes the firing's run-log row in
//! the same transaction, and only if `next_run` still holds the value the scheduler read
//! (compare-and-swap): a firing is handed out once, across crashes, restarts and concurrent
//! schedulers.

use std::collections::HashSet;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use rusqlite::params;

use super::SqliteStore;
use super::limit;
use super::query;
use super::query_one;
use crate::error::Result;
use crate::error::StoreError;
use crate::model::Claim;
use crate::model::ContextMode;
use crate::model::DueRow;
use crate::model::RunOutcomeRecord;
use crate::model::ScheduledTask;
use crate::model::TaskRun;
use crate::model::TaskRunStatus;
use crate::model::TaskStatus;
use crate::store::StoreFuture;
use crate::store::TaskStore;

const TASK_COLUMNS: &str = "id, tenant, group_folder, chat_jid, prompt, schedule_type, schedule_value, timezone, context_mode, missed_policy, next_run_ms, last_run, last_result, status, created_at";

/// [`TASK_COLUMNS`] of the table aliased `t`.
const T_TASK_COLUMNS: &str = "t.id, t.tenant, t.group_folder, t.chat_jid, t.prompt, t.schedule_type, t.schedule_value, t.timezone, t.context_mode, t.missed_policy, t.next_run_ms, t.last_run, t.last_result, t.status, t.created_at";

const TASK_RUN_COLUMNS: &str =
    "id, task_id, scheduled_for_ms, run_at, duration_ms, status, result, error";

/// A task row; an invalid one comes back as its error (the scheduler pauses it).
fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ScheduledTask>> {
    let id: String = r.get(0)?;
    let (tenant, folder, jid): (String, String, String) = (r.get(1)?, r.get(2)?, r.get(3)?);
    let (context, missed, status): (String, String, String) = (r.get(8)?, r.get(9)?, r.get(13)?);
    let (prompt, schedule_type, schedule_value, timezone) =
        (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let (next_run_ms, last_run, last_result, created_at) =
        (r.get(10)?, r.get(11)?, r.get(12)?, r.get(14)?);
    let build = || -> Result<ScheduledTask> {
        let corrupt = |e: cambot_protocol::IdError| StoreError::CorruptRow {
            table: "scheduled_tasks",
            row: Some(format!("task {id}")),
            source: Box::new(e),
        };
        Ok(ScheduledTask {
            id: TaskId::new(&id).map_err(corrupt)?,
            tenant: TenantId::new(&tenant).map_err(corrupt)?,
            group_folder: GroupFolder::new(&folder).map_err(corrupt)?,
            chat_jid: ChatJid::new(&jid).map_err(corrupt)?,
            prompt,
            schedule_type,
            schedule_value,
            timezone,
            context_mode: ContextMode::parse_lenient(Some(&context)),
            missed_policy: missed.parse()?,
            next_run_ms,
            last_run,
            last_result,
            status: status.parse()?,
            created_at,
        })
    };
    Ok(build())
}

fn task_run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TaskRun>> {
    let status: String = r.get(5)?;
    let status = match status.parse::<TaskRunStatus>() {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(TaskRun {
        id: r.get(0)?,
        task_id: r.get(1)?,
        scheduled_for_ms: r.get(2)?,
        run_at: r.get(3)?,
        duration_ms: r.get(4)?,
        status,
        result: r.get(6)?,
        error: r.get(7)?,
    }))
}

impl TaskStore for SqliteStore {
    fn create_task<'a>(&'a self, task: &'a ScheduledTask) -> StoreFuture<'a, ()> {
        let t = task.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO scheduled_tasks ({TASK_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ),
                params![
                    t.id.as_str(),
                    t.tenant.as_str(),
                    t.group_folder.as_str(),
                    t.chat_jid.as_str(),
                    t.prompt,
                    t.schedule_type,
                    t.schedule_value,
                    t.timezone,
                    t.context_mode.as_str(),
                    t.missed_policy.as_str(),
                    t.next_run_ms,
                    t.last_run,
                    t.last_result,
                    t.status.as_str(),
                    t.created_at,
                ],
            )?;
            Ok(())
        })
    }

    fn task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<ScheduledTask>> {
        let id = id.clone();
        self.read(move |conn| {
            query_one(
                conn,
                &format!("SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE id = ?1"),
                params![id.as_str()],
                task_from_row,
            )
        })
    }

    fn tasks<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: Option<&'a GroupFolder>,
    ) -> StoreFuture<'a, Vec<ScheduledTask>> {
        let (tenant, folder) = (tenant.clone(), folder.cloned());
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {TASK_COLUMNS} FROM scheduled_tasks
                     WHERE tenant = ?1 AND (?2 IS NULL OR group_folder = ?2)
                     ORDER BY created_at DESC, id"
                ),
                params![tenant.as_str(), folder.as_ref().map(GroupFolder::as_str)],
                task_from_row,
            )
        })
    }

    fn all_tasks(&self) -> StoreFuture<'_, Vec<ScheduledTask>> {
        self.read(|conn| {
            query(
                conn,
                &format!("SELECT {TASK_COLUMNS} FROM scheduled_tasks ORDER BY created_at, id"),
                [],
                task_from_row,
            )
        })
    }

    fn set_task_status<'a>(
        &'a self,
        id: &'a TaskId,
        status: TaskStatus,
        next_run_ms: Option<Option<i64>>,
    ) -> StoreFuture<'a, bool> {
        let id = id.clone();
        self.write(move |conn| {
            let n = match next_run_ms {
                Some(next) => conn.execute(
                    "UPDATE scheduled_tasks SET status = ?2, next_run_ms = ?3 WHERE id = ?1",
                    params![id.as_str(), status.as_str(), next],
                )?,
                None => conn.execute(
                    "UPDATE scheduled_tasks SET status = ?2 WHERE id = ?1",
                    params![id.as_str(), status.as_str()],
                )?,
            };
            Ok(n > 0)
        })
    }

    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, bool> {
        let id = id.clone();
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM scheduled_tasks WHERE id = ?1",
                params![id.as_str()],
            )?;
            Ok(n > 0)
        })
    }

    fn task_runs<'a>(&'a self, id: &'a TaskId, max: usize) -> StoreFuture<'a, Vec<TaskRun>> {
        let id = id.clone();
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE task_id = ?1
                     ORDER BY id DESC LIMIT ?2"
                ),
                params![id.as_str(), limit(max)],
                task_run_from_row,
            )
        })
    }

    fn next_due_ms(&self) -> StoreFuture<'_, Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT MIN(next_run_ms) FROM scheduled_tasks
                     WHERE status = 'active' AND next_run_ms IS NOT NULL
                       AND tenant NOT IN (SELECT id FROM tenants WHERE state = 'disabled')",
                )?
                .query_row([], |r| r.get(0))?)
        })
    }

    fn due_tasks(&self, now_ms: i64, max: usize) -> StoreFuture<'_, Vec<DueRow>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM scheduled_tasks
                     WHERE status = 'active' AND next_run_ms IS NOT NULL AND next_run_ms <= ?1
                       AND tenant NOT IN (SELECT id FROM tenants WHERE state = 'disabled')
                     ORDER BY next_run_ms, id LIMIT ?2"
                ))?
                .query_map(params![now_ms, limit(max)], |r| {
                    Ok(DueRow {
                        id: r.get(0)?,
                        task: task_from_row(r)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn tasks_with_unfinished_runs(&self) -> StoreFuture<'_, HashSet<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT DISTINCT task_id FROM task_runs WHERE status IN ('claimed', 'running')",
                )?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn claim_firings<'a>(&'a self, claims: &'a [Claim]) -> StoreFuture<'a, Vec<Option<i64>>> {
        let claims = claims.to_vec();
        self.transaction(move |tx| {
            let now = crate::time::now_rfc3339();
            let mut out = Vec::with_capacity(claims.len());
            for c in &claims {
                let changed = tx
                    .prepare_cached(
                        "UPDATE scheduled_tasks SET next_run_ms = ?2
                         WHERE id = ?1 AND status = 'active' AND next_run_ms = ?3
                           AND tenant NOT IN (SELECT id FROM tenants WHERE state = 'disabled')",
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
                            c.run_status.as_str(),
                            c.note
                        ],
                        |r| r.get(0),
                    )?;
                out.push(Some(id));
            }
            Ok(out)
        })
    }

    fn pause_invalid_task<'a>(&'a self, id: &'a str, reason: &'a str) -> StoreFuture<'a, ()> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.transaction(move |tx| {
            tx.execute(
                "UPDATE scheduled_tasks SET status = 'paused', last_result = ?2 WHERE id = ?1",
                params![id, format!("Error: {reason}")],
            )?;
            tx.execute(
                "INSERT INTO task_runs (task_id, run_at, status, error) VALUES (?1, ?2, 'error', ?3)",
                params![id, crate::time::now_rfc3339(), reason],
            )?;
            Ok(())
        })
    }

    fn start_task_run(&self, run_id: i64) -> StoreFuture<'_, ()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE task_runs SET status = 'running', run_at = ?2 WHERE id = ?1",
            )?
            .execute(params![run_id, crate::time::now_rfc3339()])?;
            Ok(())
        })
    }

    fn finish_task_run<'a>(
        &'a self,
        run_id: i64,
        task_id: &'a TaskId,
        outcome: &'a RunOutcomeRecord,
    ) -> StoreFuture<'a, ()> {
        let (task_id, outcome) = (task_id.clone(), outcome.clone());
        self.transaction(move |tx| {
            tx.prepare_cached(
                "UPDATE task_runs SET status = ?2, duration_ms = ?3, result = ?4, error = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                outcome.status.as_str(),
                outcome.duration_ms,
                outcome.result,
                outcome.error
            ])?;
            let last_result = match (&outcome.error, &outcome.result) {
                (Some(e), _) => format!("Error: {e}"),
                (None, Some(r)) => r.chars().take(200).collect(),
                (None, None) => "Completed".to_owned(),
            };
            // A finished one-shot becomes completed, also when it was paused while it ran
            // (resuming it would fire it again).
            tx.prepare_cached(
                "UPDATE scheduled_tasks SET last_run = ?2, last_result = ?3,
                     status = CASE WHEN ?4 AND status IN ('active', 'paused') AND next_run_ms IS NULL
                                   THEN 'completed' ELSE status END
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

    fn unfinished_task_runs(&self) -> StoreFuture<'_, Vec<TaskRun>> {
        self.read(|conn| {
            query(
                conn,
                &format!(
                    "SELECT {TASK_RUN_COLUMNS} FROM task_runs
                     WHERE status IN ('claimed', 'running') ORDER BY id"
                ),
                [],
                task_run_from_row,
            )
        })
    }

    fn set_task_run_status<'a>(
        &'a self,
        run_id: i64,
        status: TaskRunStatus,
        note: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let note = note.map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE task_runs SET status = ?2, error = COALESCE(?3, error) WHERE id = ?1",
            )?
            .execute(params![run_id, status.as_str(), note])?;
            Ok(())
        })
    }

    fn task_of_run(&self, run_id: i64) -> StoreFuture<'_, Option<ScheduledTask>> {
        self.read(move |conn| {
            query_one(
                conn,
                &format!(
                    "SELECT {T_TASK_COLUMNS} FROM scheduled_tasks t
                     JOIN task_runs r ON r.task_id = t.id WHERE r.id = ?1"
                ),
                params![run_id],
                task_from_row,
            )
        })
    }
}
