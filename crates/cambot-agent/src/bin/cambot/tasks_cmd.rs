//! `cambot tasks`: scheduled tasks of a data directory, read and changed in its database. Safe
//! while the daemon runs: it notices the change (SQLite `data_version`) and re-checks its timer;
//! a firing it already claimed is re-checked at dispatch, so a cancel or pause still holds.
//! Pause, resume and cancel follow the same rules as the agent's IPC tools
//! (`cambot_scheduler::{pause_task, resume_task, cancel_task}`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_core::ScheduledTask;
use cambot_core::Store;
use cambot_core::TaskStatus;
use cambot_protocol::DataLayout;
use cambot_protocol::TaskId;
use cambot_scheduler::Change;
use cambot_scheduler::TaskChangeError;
use cambot_scheduler::cancel_task;
use cambot_scheduler::load_task;
use cambot_scheduler::pause_task;
use cambot_scheduler::resume_task;
use chrono::DateTime;
use chrono::Utc;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum TasksCommand {
    /// List tasks (all tenants unless --tenant).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only tasks of this group folder.
        #[arg(long)]
        group: Option<String>,
        /// Only tasks in this status (active, paused, completed).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one task and its latest runs.
    Show { id: String },
    /// Pause a task: it does not fire until resumed.
    Pause { id: String },
    /// Resume a paused task; its next run is recomputed from now.
    Resume { id: String },
    /// Cancel a task: it and its run log are deleted; a firing already due never starts.
    Cancel { id: String },
    /// A task's run log, newest first.
    Runs {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

pub(crate) async fn run(config: &Config, cmd: TasksCommand) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let db = layout.database();
    if !db.exists() {
        bail!(
            "no database at {} (wrong --data-dir? cambot has not run here yet)",
            db.display()
        );
    }
    let store: std::sync::Arc<dyn Store> = cambot_agent::database::open_store(&layout)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let store = store.as_ref();
    let mut out = std::io::stdout().lock();
    match cmd {
        TasksCommand::List {
            tenant,
            group,
            status,
        } => list(store, &mut out, tenant, group, status).await?,
        TasksCommand::Show { id } => show(store, &mut out, &task_id(&id)?).await?,
        TasksCommand::Pause { id } => {
            let task = find(store, &id).await?;
            match pause_task(store, &task).await.map_err(change_error)? {
                Change::Applied => writeln!(out, "paused {}", task.id)?,
                Change::Unchanged => writeln!(out, "{} is already paused", task.id)?,
            }
        }
        TasksCommand::Resume { id } => {
            let task = find(store, &id).await?;
            let (change, next) = resume_task(store, &task, Utc::now())
                .await
                .map_err(change_error)?;
            let next = next.map_or_else(|| "never".to_owned(), |t| when(&task, t));
            match change {
                Change::Applied => writeln!(out, "resumed {}; next run {next}", task.id)?,
                Change::Unchanged => {
                    writeln!(out, "{} is already active; next run {next}", task.id)?;
                }
            }
        }
        TasksCommand::Cancel { id } => {
            let task = find(store, &id).await?;
            cancel_task(store, &task).await.map_err(change_error)?;
            writeln!(out, "cancelled {} (task and run log deleted)", task.id)?;
        }
        TasksCommand::Runs { id, limit } => {
            let task = find(store, &id).await?;
            runs(store, &mut out, &task, limit).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn task_id(id: &str) -> Result<TaskId> {
    TaskId::new(id).with_context(|| format!("invalid task id {id:?}"))
}

async fn find(store: &dyn Store, id: &str) -> Result<ScheduledTask> {
    load_task(store, &task_id(id)?).await.map_err(change_error)
}

fn change_error(e: TaskChangeError) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// A firing time in UTC and in the task's zone.
fn when(task: &ScheduledTask, t: DateTime<Utc>) -> String {
    let utc = cambot_core::time::rfc3339(t);
    match task.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) if tz != chrono_tz::UTC => format!(
            "{utc} ({} {})",
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"),
            task.timezone
        ),
        _ => utc,
    }
}

fn next_run(task: &ScheduledTask) -> String {
    task.next_run_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), cambot_core::time::rfc3339)
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

async fn list(
    store: &dyn Store,
    out: &mut impl Write,
    tenant: Option<String>,
    group: Option<String>,
    status: Option<String>,
) -> Result<()> {
    let status = match status.as_deref() {
        None => None,
        Some("active") => Some(TaskStatus::Active),
        Some("paused") => Some(TaskStatus::Paused),
        Some("completed") => Some(TaskStatus::Completed),
        Some(other) => bail!("unknown status {other:?} (use active, paused or completed)"),
    };
    let tasks = match tenant {
        Some(t) => {
            let tenant = crate::tenants_cmd::known_tenant(store, &t).await?;
            store.tasks(&tenant, None).await?
        }
        None => store.all_tasks().await?,
    };
    let tasks: Vec<_> = tasks
        .into_iter()
        .filter(|t| {
            group
                .as_deref()
                .is_none_or(|g| t.group_folder.as_str() == g)
        })
        .filter(|t| status.is_none_or(|s| t.status == s))
        .collect();
    if tasks.is_empty() {
        writeln!(out, "no tasks")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<30} {:<10} {:<14} {:<9} {:<20} {:<25} PROMPT",
        "ID", "TENANT", "GROUP", "STATUS", "SCHEDULE", "NEXT RUN"
    )?;
    for t in tasks {
        writeln!(
            out,
            "{:<30} {:<10} {:<14} {:<9} {:<20} {:<25} {}",
            t.id,
            t.tenant,
            t.group_folder,
            t.status,
            one_line(&format!("{} {}", t.schedule_type, t.schedule_value), 20),
            next_run(&t),
            one_line(&t.prompt, 50)
        )?;
    }
    Ok(())
}

async fn show(store: &dyn Store, out: &mut impl Write, id: &TaskId) -> Result<()> {
    let task = load_task(store, id).await.map_err(change_error)?;
    let next = task
        .next_run_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), |t| when(&task, t));
    writeln!(out, "id:            {}", task.id)?;
    writeln!(out, "tenant:        {}", task.tenant)?;
    writeln!(out, "group:         {}", task.group_folder)?;
    writeln!(out, "chat:          {}", task.chat_jid)?;
    writeln!(out, "status:        {}", task.status)?;
    writeln!(
        out,
        "schedule:      {} {}",
        task.schedule_type, task.schedule_value
    )?;
    writeln!(out, "timezone:      {}", task.timezone)?;
    writeln!(out, "context mode:  {}", task.context_mode.as_str())?;
    writeln!(out, "missed runs:   {}", task.missed_policy.as_str())?;
    writeln!(out, "next run:      {next}")?;
    writeln!(
        out,
        "last run:      {}",
        task.last_run.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "last result:   {}",
        task.last_result
            .as_deref()
            .map_or_else(|| "-".to_owned(), |r| one_line(r, 200))
    )?;
    writeln!(out, "created:       {}", task.created_at)?;
    writeln!(out, "prompt:")?;
    for line in task.prompt.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "latest runs:")?;
    runs(store, out, &task, 5).await
}

async fn runs(
    store: &dyn Store,
    out: &mut impl Write,
    task: &ScheduledTask,
    limit: usize,
) -> Result<()> {
    let runs = store.task_runs(&task.id, limit).await?;
    if runs.is_empty() {
        writeln!(out, "no runs")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<8} {:<25} {:<25} {:<12} {:>9} RESULT",
        "RUN", "SCHEDULED FOR", "STARTED", "STATUS", "MS"
    )?;
    for r in runs {
        let slot = r
            .scheduled_for_ms
            .map_or_else(|| "-".to_owned(), cambot_core::time::ms_to_rfc3339);
        let duration = r
            .duration_ms
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        let detail = match (&r.error, &r.result) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(res)) => res.clone(),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "{:<8} {:<25} {:<25} {:<12} {:>9} {}",
            r.id,
            slot,
            r.run_at,
            r.status,
            duration,
            one_line(&detail, 60)
        )?;
    }
    Ok(())
}
