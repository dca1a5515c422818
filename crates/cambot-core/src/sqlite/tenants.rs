//! [`TenantStore`] on SQLite. Removing and purging find the tenant's rows through every table
//! that has a `tenant` column, so a table added later is covered without touching this file.

use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::params;

use super::SqliteStore;
use super::query_one;
use crate::error::Result;
use crate::error::StoreError;
use crate::model::TenantRemoval;
use crate::model::TenantRow;
use crate::model::TenantState;
use crate::model::TenantSummary;
use crate::store::StoreFuture;
use crate::store::TenantStore;

const TENANT_COLUMNS: &str =
    "id, name, state, created_at, COALESCE(updated_at, created_at), provider";

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TenantRow>> {
    let id: String = r.get(0)?;
    let state: String = r.get(2)?;
    let (name, created_at, updated_at, provider) = (r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        Ok(TenantRow {
            id: TenantId::new(&id).map_err(|e| StoreError::CorruptRow {
                table: "tenants",
                row: Some(id.clone()),
                source: Box::new(e),
            })?,
            name,
            state: state.parse()?,
            provider,
            created_at,
            updated_at,
        })
    })())
}

/// `(groups, users)` of a tenant.
/// What keeps a tenant from being removed without a purge: its groups, users and secrets.
fn holdings(conn: &Connection, id: &str) -> Result<(usize, usize, usize)> {
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM registered_groups WHERE tenant = ?1),
                    (SELECT COUNT(*) FROM web_users WHERE tenant = ?1),
                    (SELECT COUNT(*) FROM vault_secrets WHERE tenant = ?1)",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
}

/// Deletes every row of the tenant: the run log of its tasks (keyed by task) and the steps of
/// its workflow runs (keyed by run), then each table with a `tenant` column, then its
/// `tenants` row. Returns how many rows went.
fn delete_tenant_rows(tx: &rusqlite::Transaction<'_>, id: &str) -> Result<usize> {
    // Messages reference chats: checking at commit lets the tables go in any order.
    tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    let mut deleted = tx.execute(
        "DELETE FROM task_runs WHERE task_id IN (SELECT id FROM scheduled_tasks WHERE tenant = ?1)",
        [id],
    )?;
    // Counted here: the cascade from `workflow_runs` would delete them uncounted.
    deleted += tx.execute(
        "DELETE FROM workflow_steps WHERE run_id IN (SELECT id FROM workflow_runs WHERE tenant = ?1)",
        [id],
    )?;
    let tables = tx
        .prepare(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
             WHERE m.type = 'table' AND c.name = 'tenant' ORDER BY m.name",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for table in tables {
        let quoted = table.replace('"', "\"\"");
        deleted += tx.execute(&format!("DELETE FROM \"{quoted}\" WHERE tenant = ?1"), [id])?;
    }
    deleted += tx.execute("DELETE FROM tenants WHERE id = ?1", [id])?;
    Ok(deleted)
}

fn exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?)
}

impl TenantStore for SqliteStore {
    fn add_tenant<'a>(&'a self, id: &'a TenantId, name: &'a str) -> StoreFuture<'a, bool> {
        let (id, name) = (id.to_string(), name.to_owned());
        self.write(move |conn| {
            let now = crate::time::now_rfc3339();
            let added = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO tenants (id, name, state, created_at, updated_at)
                     VALUES (?1, ?2, 'active', ?3, ?3)",
                )?
                .execute(params![id, name, now])?;
            Ok(added == 1)
        })
    }

    fn tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, Option<TenantRow>> {
        let id = id.to_string();
        self.read(move |conn| {
            query_one(
                conn,
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"),
                [id],
                tenant_row,
            )
        })
    }

    fn tenant_summaries(&self) -> StoreFuture<'_, Vec<TenantSummary>> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {TENANT_COLUMNS},
                            (SELECT COUNT(*) FROM registered_groups g WHERE g.tenant = tenants.id),
                            (SELECT COUNT(*) FROM web_users u WHERE u.tenant = tenants.id)
                     FROM tenants ORDER BY id"
                ))?
                .query_map([], |r| Ok((tenant_row(r)?, r.get(6)?, r.get(7)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(row, groups, users)| match row {
                    Ok(tenant) => Some(TenantSummary {
                        tenant,
                        groups,
                        users,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an invalid tenant row");
                        None
                    }
                })
                .collect())
        })
    }

    fn disabled_tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        self.read(|conn| {
            let ids = conn
                .prepare_cached("SELECT id FROM tenants WHERE state = 'disabled' ORDER BY id")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids
                .into_iter()
                .filter_map(|id| TenantId::new(&id).ok())
                .collect())
        })
    }

    fn set_tenant_state<'a>(
        &'a self,
        id: &'a TenantId,
        state: TenantState,
    ) -> StoreFuture<'a, bool> {
        let id = id.to_string();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE tenants SET state = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![id, state.as_str(), crate::time::now_rfc3339()])?;
            Ok(changed == 1)
        })
    }

    fn set_tenant_provider<'a>(
        &'a self,
        id: &'a TenantId,
        provider: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        let (id, provider) = (id.to_string(), provider.map(str::to_owned));
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE tenants SET provider = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![id, provider, crate::time::now_rfc3339()])?;
            Ok(changed == 1)
        })
    }

    fn remove_tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, TenantRemoval> {
        let id = id.clone();
        self.transaction(move |tx| {
            if id.is_default() {
                return Ok(TenantRemoval::Protected);
            }
            if !exists(tx, id.as_str())? {
                return Ok(TenantRemoval::NotFound);
            }
            let (groups, users, secrets) = holdings(tx, id.as_str())?;
            if groups > 0 || users > 0 || secrets > 0 {
                return Ok(TenantRemoval::NotEmpty {
                    groups,
                    users,
                    secrets,
                });
            }
            delete_tenant_rows(tx, id.as_str())?;
            Ok(TenantRemoval::Removed)
        })
    }

    fn purge_tenant<'a>(&'a self, id: &'a TenantId) -> StoreFuture<'a, Option<usize>> {
        let id = id.clone();
        self.transaction(move |tx| {
            if id.is_default() {
                return Err(StoreError::Invalid(
                    "the default tenant cannot be purged".to_owned(),
                ));
            }
            if !exists(tx, id.as_str())? {
                return Ok(None);
            }
            delete_tenant_rows(tx, id.as_str()).map(Some)
        })
    }
}
