//! Scheduled tasks and their run log.

use std::fmt;
use std::str::FromStr;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::db::Store;
use crate::error::Result;
use crate::error::StoreError;

/// Lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Active,
    Paused,
    /// A one-shot that has run.
    Completed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "paused" => Ok(Self::Paused),
            "completed" => Ok(Self::Completed),
            other => Err(StoreError::Invalid(format!(
                "unknown task status {other:?}"
            ))),
        }
    }
}

/// Which session a task runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContextMode {
    /// The group's own session (the task sees the conversation).
    Group,
    /// A fresh session per run.
    #[default]
    Isolated,
}

impl ContextMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Isolated => "isolated",
        }
    }

    /// The seed's rule: `group` and `isolated` as given; anything else or nothing is `isolated`.
    pub fn parse_lenient(value: Option<&str>) -> Self {
        match value {
            Some("group") => Self::Group,
            _ => Self::Isolated,
        }
    }
}

/// What to do with a firing missed while cambot was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedRunPolicy {
    /// Skip it; the next future slot is used.
    #[default]
    Skip,
    /// Fire once now, then continue with the next future slot.
    RunOnce,
}

impl MissedRunPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
}

impl FromStr for MissedRunPolicy {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(Self::Skip),
            "run_once" => Ok(Self::RunOnce),
            other => Err(StoreError::Invalid(format!(
                "unknown missed-run policy {other:?} (use skip or run_once)"
            ))),
        }
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledTask {
    pub id: TaskId,
    pub tenant: TenantId,
    pub group_folder: GroupFolder,
    pub chat_jid: ChatJid,
    pub prompt: String,
    pub schedule_type: String,
    pub schedule_value: String,
    /// IANA zone the schedule is read in.
    pub timezone: String,
    pub context_mode: ContextMode,
    pub missed_policy: MissedRunPolicy,
    /// Next firing, ms since the epoch; `None` = never again.
    pub next_run_ms: Option<i64>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    pub status: TaskStatus,
    pub created_at: String,
}

/// One entry of a task's run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub id: i64,
    pub task_id: String,
    pub scheduled_for_ms: Option<i64>,
    pub run_at: String,
    pub duration_ms: Option<i64>,
    /// `claimed`, `running`, `success`, `error`, `skipped`, `interrupted`.
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
}

pub(crate) const TASK_COLUMNS: &str = "id, tenant, group_folder, chat_jid, prompt, schedule_type, schedule_value, timezone, context_mode, missed_policy, next_run_ms, last_run, last_result, status, created_at";

pub(crate) fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ScheduledTask>> {
    let id: String = r.get(0)?;
    let tenant: String = r.get(1)?;
    let folder: String = r.get(2)?;
    let jid: String = r.get(3)?;
    let context: String = r.get(8)?;
    let missed: String = r.get(9)?;
    let status: String = r.get(13)?;
    let prompt = r.get(4)?;
    let schedule_type = r.get(5)?;
    let schedule_value = r.get(6)?;
    let timezone = r.get(7)?;
    let next_run_ms = r.get(10)?;
    let last_run = r.get(11)?;
    let last_result = r.get(12)?;
    let created_at = r.get(14)?;
    let build = || -> Result<ScheduledTask> {
        let corrupt = |e: cambot_protocol::IdError| StoreError::CorruptRow {
            table: "scheduled_tasks",
            reason: format!("task {id}: {e}"),
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

impl Store {
    /// Inserts a new task.
    pub fn create_task(&self, task: &ScheduledTask) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            &format!("INSERT INTO scheduled_tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                task.id.as_str(),
                task.tenant.as_str(),
                task.group_folder.as_str(),
                task.chat_jid.as_str(),
                task.prompt,
                task.schedule_type,
                task.schedule_value,
                task.timezone,
                task.context_mode.as_str(),
                task.missed_policy.as_str(),
                task.next_run_ms,
                task.last_run,
                task.last_result,
                task.status.as_str(),
                task.created_at,
            ],
        )?;
        Ok(())
    }

    /// One task by id.
    pub fn task(&self, id: &TaskId) -> Result<Option<ScheduledTask>> {
        let conn = self.reader()?;
        let row = conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE id = ?1"
            ))?
            .query_row(params![id.as_str()], task_from_row)
            .optional()?;
        row.transpose()
    }

    /// A tenant's tasks; only those of `folder` when given. Newest first.
    pub fn tasks(
        &self,
        tenant: &TenantId,
        folder: Option<&GroupFolder>,
    ) -> Result<Vec<ScheduledTask>> {
        let conn = self.reader()?;
        let rows = match folder {
            Some(f) => conn
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE tenant = ?1 AND group_folder = ?2
                     ORDER BY created_at DESC, id"
                ))?
                .query_map(params![tenant.as_str(), f.as_str()], task_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE tenant = ?1 ORDER BY created_at DESC, id"
                ))?
                .query_map(params![tenant.as_str()], task_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        rows.into_iter().collect()
    }

    /// Every task of every tenant (the admin CLI), oldest first.
    pub fn all_tasks(&self) -> Result<Vec<ScheduledTask>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM scheduled_tasks ORDER BY created_at, id"
            ))?
            .query_map([], task_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().collect()
    }

    /// Sets a task's status. Returns whether the task exists.
    pub fn set_task_status(&self, id: &TaskId, status: TaskStatus) -> Result<bool> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE scheduled_tasks SET status = ?2 WHERE id = ?1",
            params![id.as_str(), status.as_str()],
        )?;
        Ok(n > 0)
    }

    /// Sets status and next run together (resume recomputes the next run).
    pub fn set_task_status_and_next_run(
        &self,
        id: &TaskId,
        status: TaskStatus,
        next_run_ms: Option<i64>,
    ) -> Result<bool> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE scheduled_tasks SET status = ?2, next_run_ms = ?3 WHERE id = ?1",
            params![id.as_str(), status.as_str(), next_run_ms],
        )?;
        Ok(n > 0)
    }

    /// Deletes a task and (by cascade) its run log.
    pub fn delete_task(&self, id: &TaskId) -> Result<bool> {
        let conn = self.conn()?;
        let n = conn.execute(
            "DELETE FROM scheduled_tasks WHERE id = ?1",
            params![id.as_str()],
        )?;
        Ok(n > 0)
    }

    /// A task's run log, newest first.
    pub fn task_runs(&self, id: &TaskId, limit: usize) -> Result<Vec<TaskRun>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(
                params![id.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
                task_run_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Appends a finished run to a task's log.
    pub fn log_task_run(&self, run: &TaskRun) -> Result<i64> {
        let conn = self.conn()?;
        let id = conn.query_row(
            "INSERT INTO task_runs (task_id, scheduled_for_ms, run_at, duration_ms, status, result, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![
                run.task_id,
                run.scheduled_for_ms,
                run.run_at,
                run.duration_ms,
                run.status,
                run.result,
                run.error
            ],
            |r| r.get(0),
        )?;
        Ok(id)
    }
}

/// The `task_runs` columns [`task_run_from_row`] reads, in order.
pub(crate) const TASK_RUN_COLUMNS: &str =
    "id, task_id, scheduled_for_ms, run_at, duration_ms, status, result, error";

pub(crate) fn task_run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRun> {
    Ok(TaskRun {
        id: r.get(0)?,
        task_id: r.get(1)?,
        scheduled_for_ms: r.get(2)?,
        run_at: r.get(3)?,
        duration_ms: r.get(4)?,
        status: r.get(5)?,
        result: r.get(6)?,
        error: r.get(7)?,
    })
}
