//! [`WorkflowStore`] on SQLite: `workflow_defs`, `workflow_runs`, `workflow_steps`, and the
//! outbox's idempotency key. Every write is one IMMEDIATE transaction on the writing connection.

use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::SqliteStore;
use super::corrupt;
use super::limit;
use super::query;
use super::query_one;
use crate::error::Result;
use crate::error::StoreError;
use crate::store::StoreFuture;
use crate::workflow_store::OnceReply;
use crate::workflow_store::WorkflowDefRow;
use crate::workflow_store::WorkflowRunRow;
use crate::workflow_store::WorkflowRunState;
use crate::workflow_store::WorkflowStepChange;
use crate::workflow_store::WorkflowStepRow;
use crate::workflow_store::WorkflowStore;

const RUN_COLUMNS: &str = "id, tenant, workflow, definition, inputs, state, error, created_ms, \
                           updated_ms, finished_ms";

fn def_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WorkflowDefRow>> {
    let tenant: String = r.get(0)?;
    let (name, toml, created_ms, updated_ms) = (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok(TenantId::new(&tenant)
        .map_err(corrupt("workflow_defs"))
        .map(|tenant| WorkflowDefRow {
            tenant,
            name,
            toml,
            created_ms,
            updated_ms,
        }))
}

fn bad_state(table: &'static str, id: &str) -> impl Fn(StoreError) -> StoreError {
    let row = Some(id.to_owned());
    move |e| StoreError::CorruptRow {
        table,
        row: row.clone(),
        source: Box::new(e),
    }
}

/// A run without its steps (read separately).
fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WorkflowRunRow>> {
    let id: String = r.get(0)?;
    let tenant: String = r.get(1)?;
    let state: String = r.get(5)?;
    let (workflow, definition, inputs, error) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?);
    let (created_ms, updated_ms, finished_ms) = (r.get(7)?, r.get(8)?, r.get(9)?);
    let build = || -> Result<WorkflowRunRow> {
        Ok(WorkflowRunRow {
            tenant: TenantId::new(&tenant).map_err(corrupt("workflow_runs"))?,
            state: state.parse().map_err(bad_state("workflow_runs", &id))?,
            id: id.clone(),
            workflow,
            definition,
            inputs,
            error,
            created_ms,
            updated_ms,
            finished_ms,
            steps: Vec::new(),
        })
    };
    Ok(build())
}

fn steps_of(conn: &Connection, run_id: &str) -> Result<Vec<WorkflowStepRow>> {
    query(
        conn,
        "SELECT idx, step_id, state, attempt, output, error, started_ms, finished_ms
         FROM workflow_steps WHERE run_id = ?1 ORDER BY idx",
        [run_id],
        |r| {
            let state: String = r.get(2)?;
            let (idx, step_id, attempt) = (r.get(0)?, r.get(1)?, r.get(3)?);
            let (output, error, started_ms, finished_ms) =
                (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
            Ok(state
                .parse()
                .map_err(bad_state("workflow_steps", run_id))
                .map(|state| WorkflowStepRow {
                    idx,
                    step_id,
                    state,
                    attempt,
                    output,
                    error,
                    started_ms,
                    finished_ms,
                }))
        },
    )
}

fn with_steps(conn: &Connection, mut runs: Vec<WorkflowRunRow>) -> Result<Vec<WorkflowRunRow>> {
    for run in &mut runs {
        run.steps = steps_of(conn, &run.id)?;
    }
    Ok(runs)
}

/// Ends a running run and cancels its unfinished steps. Returns whether it was running.
fn finish_run(
    tx: &Connection,
    tenant: &str,
    id: &str,
    state: WorkflowRunState,
    error: Option<&str>,
    now: i64,
) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE workflow_runs SET state = ?3, error = ?4, updated_ms = ?5, finished_ms = ?5
             WHERE id = ?1 AND tenant = ?2 AND state = 'running'",
        )?
        .execute(params![id, tenant, state.as_str(), error, now])?;
    if n == 0 {
        return Ok(false);
    }
    tx.prepare_cached(
        "UPDATE workflow_steps SET state = 'cancelled', finished_ms = ?2
         WHERE run_id = ?1 AND state IN ('pending', 'running')",
    )?
    .execute(params![id, now])?;
    Ok(true)
}

impl WorkflowStore for SqliteStore {
    fn put_workflow_def(&self, row: WorkflowDefRow) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            let existed: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM workflow_defs WHERE tenant = ?1 AND name = ?2)",
                )?
                .query_row(params![row.tenant.as_str(), row.name], |r| r.get(0))?;
            tx.prepare_cached(
                "INSERT INTO workflow_defs (tenant, name, toml, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, name) DO UPDATE SET
                     toml = excluded.toml, updated_ms = excluded.updated_ms",
            )?
            .execute(params![
                row.tenant.as_str(),
                row.name,
                row.toml,
                row.created_ms,
                row.updated_ms
            ])?;
            Ok(existed)
        })
    }

    fn workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowDefRow>> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.read(move |conn| {
            query_one(
                conn,
                "SELECT tenant, name, toml, created_ms, updated_ms FROM workflow_defs
                 WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                def_row,
            )
        })
    }

    fn workflow_defs<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<WorkflowDefRow>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |conn| {
            query(
                conn,
                "SELECT tenant, name, toml, created_ms, updated_ms FROM workflow_defs
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name",
                params![tenant],
                def_row,
            )
        })
    }

    fn delete_workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM workflow_defs WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            Ok(n > 0)
        })
    }

    fn create_workflow_run(&self, run: WorkflowRunRow) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            let n = tx
                .prepare_cached(&format!(
                    "INSERT INTO workflow_runs ({RUN_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (id) DO NOTHING"
                ))?
                .execute(params![
                    run.id,
                    run.tenant.as_str(),
                    run.workflow,
                    run.definition,
                    run.inputs,
                    run.state.as_str(),
                    run.error,
                    run.created_ms,
                    run.updated_ms,
                    run.finished_ms
                ])?;
            if n == 0 {
                return Ok(false);
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO workflow_steps
                     (run_id, idx, step_id, state, attempt, output, error, started_ms, finished_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for s in &run.steps {
                insert.execute(params![
                    run.id,
                    s.idx,
                    s.step_id,
                    s.state.as_str(),
                    s.attempt,
                    s.output,
                    s.error,
                    s.started_ms,
                    s.finished_ms
                ])?;
            }
            Ok(true)
        })
    }

    fn workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowRunRow>> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
        self.read(move |conn| {
            let run = query_one(
                conn,
                &format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?1 AND tenant = ?2"),
                params![id, tenant],
                run_row,
            )?;
            Ok(with_steps(conn, run.into_iter().collect())?.pop())
        })
    }

    fn workflow_runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        workflow: Option<&'a str>,
        max: usize,
    ) -> StoreFuture<'a, Vec<WorkflowRunRow>> {
        let (tenant, workflow) = (tenant.as_str().to_owned(), workflow.map(str::to_owned));
        self.read(move |conn| {
            let runs = query(
                conn,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM workflow_runs
                     WHERE tenant = ?1 AND (?2 IS NULL OR workflow = ?2)
                     ORDER BY created_ms DESC, id DESC LIMIT ?3"
                ),
                params![tenant, workflow, limit(max)],
                run_row,
            )?;
            with_steps(conn, runs)
        })
    }

    fn unfinished_workflow_runs(&self) -> StoreFuture<'_, Vec<(TenantId, String)>> {
        self.read(|conn| {
            query(
                conn,
                "SELECT tenant, id FROM workflow_runs WHERE state = 'running'
                 ORDER BY created_ms, id",
                [],
                |r| {
                    let (tenant, id): (String, String) = (r.get(0)?, r.get(1)?);
                    Ok(TenantId::new(&tenant)
                        .map_err(corrupt("workflow_runs"))
                        .map(|t| (t, id)))
                },
            )
        })
    }

    fn update_workflow_step(&self, change: WorkflowStepChange) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            let now = crate::time::now_ms();
            let s = &change.step;
            let n = tx
                .prepare_cached(
                    "UPDATE workflow_steps SET state = ?5, attempt = ?6, output = ?7, error = ?8,
                         started_ms = ?9, finished_ms = ?10
                     WHERE run_id = ?1 AND idx = ?2 AND state = ?3 AND attempt = ?4
                       AND EXISTS (SELECT 1 FROM workflow_runs
                                   WHERE id = ?1 AND tenant = ?11 AND state = 'running')",
                )?
                .execute(params![
                    change.run_id,
                    s.idx,
                    change.expected_state.as_str(),
                    change.expected_attempt,
                    s.state.as_str(),
                    s.attempt,
                    s.output,
                    s.error,
                    s.started_ms,
                    s.finished_ms,
                    change.tenant.as_str()
                ])?;
            if n == 0 {
                return Ok(false);
            }
            match &change.finish_run {
                Some((state, error)) => {
                    finish_run(
                        tx,
                        change.tenant.as_str(),
                        &change.run_id,
                        *state,
                        error.as_deref(),
                        now,
                    )?;
                }
                None => {
                    tx.prepare_cached("UPDATE workflow_runs SET updated_ms = ?2 WHERE id = ?1")?
                        .execute(params![change.run_id, now])?;
                }
            }
            Ok(true)
        })
    }

    fn finish_workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        state: WorkflowRunState,
        error: Option<String>,
    ) -> StoreFuture<'a, bool> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
        self.transaction(move |tx| {
            finish_run(
                tx,
                &tenant,
                &id,
                state,
                error.as_deref(),
                crate::time::now_ms(),
            )
        })
    }

    fn enqueue_reply_once(&self, send: OnceReply) -> StoreFuture<'_, (i64, bool)> {
        self.transaction(move |tx| {
            let existing: Option<i64> = tx
                .prepare_cached("SELECT id FROM outbox WHERE idempotency_key = ?1")?
                .query_row([&send.idempotency_key], |r| r.get(0))
                .optional()?;
            if let Some(id) = existing {
                return Ok((id, false));
            }
            tx.prepare_cached(
                "INSERT INTO outbox (tenant, chat_jid, text, origin, created_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                send.tenant.as_str(),
                send.chat_jid.as_str(),
                send.text,
                send.origin,
                crate::time::now_rfc3339(),
                send.idempotency_key
            ])?;
            Ok((tx.last_insert_rowid(), true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow_store::WorkflowStepState;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            WorkflowStepState::Pending,
            WorkflowStepState::Running,
            WorkflowStepState::Succeeded,
            WorkflowStepState::Failed,
            WorkflowStepState::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<WorkflowStepState>().ok(), Some(s));
        }
        for s in [
            WorkflowRunState::Running,
            WorkflowRunState::Succeeded,
            WorkflowRunState::Failed,
            WorkflowRunState::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<WorkflowRunState>().ok(), Some(s));
        }
        assert!("done".parse::<WorkflowRunState>().is_err());
    }
}
