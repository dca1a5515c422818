//! [`GroupStore`] on SQLite: which chat maps to which folder, with its trigger and sandbox
//! settings.

use cambot_protocol::ChatJid;
use cambot_protocol::ContainerConfig;
use cambot_protocol::GroupFolder;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::SqliteStore;
use crate::error::BackendError;
use crate::error::Result;
use crate::error::StoreError;
use crate::model::GroupRegistration;
use crate::store::GroupStore;
use crate::store::StoreFuture;

const GROUP_COLUMNS: &str =
    "tenant, jid, name, folder, trigger_pattern, requires_trigger, added_at, container_config";

type RawGroup = (
    String,
    String,
    String,
    String,
    String,
    Option<bool>,
    String,
    Option<String>,
);

fn raw_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawGroup> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

/// Validates a stored row; an invalid row is reported and skipped by the callers.
fn build_group(raw: RawGroup) -> Result<RegisteredGroup> {
    let (tenant, jid, name, folder, trigger, requires_trigger, added_at, config) = raw;
    let corrupt = |row: Option<String>, source: BackendError| StoreError::CorruptRow {
        table: "registered_groups",
        row,
        source,
    };
    let container_config = match config {
        Some(text) if !text.is_empty() => Some(
            serde_json::from_str::<ContainerConfig>(&text)
                .map_err(|e| corrupt(Some(format!("container_config of {jid}")), Box::new(e)))?,
        ),
        _ => None,
    };
    Ok(RegisteredGroup {
        tenant: TenantId::new(&tenant).map_err(|e| corrupt(None, Box::new(e)))?,
        jid: ChatJid::new(&jid).map_err(|e| corrupt(None, Box::new(e)))?,
        name,
        folder: GroupFolder::new(&folder).map_err(|e| corrupt(None, Box::new(e)))?,
        trigger,
        requires_trigger,
        added_at,
        container_config,
    })
}

fn collect_valid(rows: Vec<RawGroup>) -> Vec<RegisteredGroup> {
    rows.into_iter()
        .filter_map(|raw| match build_group(raw) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "skipping invalid registered group row");
                None
            }
        })
        .collect()
}

impl GroupStore for SqliteStore {
    fn register_group(&self, reg: GroupRegistration) -> StoreFuture<'_, RegisteredGroup> {
        let config_json = match config_json(&reg) {
            Ok(json) => json,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.transaction(move |tx| upsert_group(tx, &reg, config_json))
    }

    fn register_group_unclaimed(
        &self,
        reg: GroupRegistration,
    ) -> StoreFuture<'_, Option<RegisteredGroup>> {
        let config_json = match config_json(&reg) {
            Ok(json) => json,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.transaction(move |tx| {
            let claimed: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM registered_groups WHERE jid = ?1 AND tenant <> ?2)
                    AND NOT EXISTS (SELECT 1 FROM registered_groups WHERE jid = ?1 AND tenant = ?2)",
                params![reg.jid.as_str(), reg.tenant.as_str()],
                |row| row.get(0),
            )?;
            if claimed {
                return Ok(None);
            }
            upsert_group(tx, &reg, config_json).map(Some)
        })
    }

    fn set_container_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
        config: Option<ContainerConfig>,
    ) -> StoreFuture<'a, bool> {
        let (tenant, jid) = (tenant.clone(), jid.clone());
        self.write(move |conn| {
            let json = config
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::ContainerConfig(Box::new(e)))?;
            let n = conn.execute(
                "UPDATE registered_groups SET container_config = ?3 WHERE tenant = ?1 AND jid = ?2",
                params![tenant.as_str(), jid.as_str(), json],
            )?;
            Ok(n > 0)
        })
    }

    fn unregister_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, bool> {
        let (tenant, jid) = (tenant.clone(), jid.clone());
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM registered_groups WHERE tenant = ?1 AND jid = ?2",
                params![tenant.as_str(), jid.as_str()],
            )?;
            Ok(n > 0)
        })
    }

    fn registered_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, Option<RegisteredGroup>> {
        let (tenant, jid) = (tenant.clone(), jid.clone());
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM registered_groups WHERE tenant = ?1 AND jid = ?2"
                ))?
                .query_row(params![tenant.as_str(), jid.as_str()], raw_group)
                .optional()?;
            raw.map(build_group).transpose()
        })
    }

    fn registered_groups<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM registered_groups WHERE tenant = ?1 ORDER BY folder, jid"
                ))?
                .query_map(params![tenant.as_str()], raw_group)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(collect_valid(rows))
        })
    }

    fn all_registered_groups(&self) -> StoreFuture<'_, Vec<RegisteredGroup>> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM registered_groups ORDER BY tenant, folder, jid"
                ))?
                .query_map([], raw_group)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(collect_valid(rows))
        })
    }

    fn registrations_of_jid<'a>(
        &'a self,
        jid: &'a ChatJid,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>> {
        let jid = jid.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM registered_groups WHERE jid = ?1 ORDER BY tenant"
                ))?
                .query_map(params![jid.as_str()], raw_group)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(collect_valid(rows))
        })
    }

    fn groups_in_folder<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, Vec<RegisteredGroup>> {
        let (tenant, folder) = (tenant.clone(), folder.clone());
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM registered_groups WHERE tenant = ?1 AND folder = ?2 ORDER BY jid"
                ))?
                .query_map(params![tenant.as_str(), folder.as_str()], raw_group)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(collect_valid(rows))
        })
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        self.read(|conn| {
            let ids = conn
                .prepare_cached("SELECT id FROM tenants ORDER BY id")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids
                .into_iter()
                .filter_map(|id| TenantId::new(&id).ok())
                .collect())
        })
    }
}

fn config_json(reg: &GroupRegistration) -> Result<Option<String>> {
    reg.container_config
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::ContainerConfig(Box::new(e)))
}

/// Seed DEFECT 2: a second chat registered into an existing folder used to delete the first;
/// seed DEFECT 1: re-registering wiped the container config.
fn upsert_group(
    tx: &rusqlite::Transaction<'_>,
    reg: &GroupRegistration,
    config_json: Option<String>,
) -> Result<RegisteredGroup> {
    let now = crate::time::now_rfc3339();
    tx.execute(
        "INSERT INTO registered_groups
             (tenant, jid, name, folder, trigger_pattern, requires_trigger, added_at, container_config)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, jid) DO UPDATE SET
             name = excluded.name,
             folder = excluded.folder,
             trigger_pattern = excluded.trigger_pattern,
             requires_trigger = COALESCE(excluded.requires_trigger, registered_groups.requires_trigger),
             container_config = COALESCE(excluded.container_config, registered_groups.container_config)",
        params![
            reg.tenant.as_str(),
            reg.jid.as_str(),
            reg.name,
            reg.folder.as_str(),
            reg.trigger,
            reg.requires_trigger,
            now,
            config_json
        ],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?1, ?2)",
        params![reg.tenant.as_str(), now],
    )?;
    let raw = tx.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM registered_groups WHERE tenant = ?1 AND jid = ?2"),
        params![reg.tenant.as_str(), reg.jid.as_str()],
        raw_group,
    )?;
    build_group(raw)
}
