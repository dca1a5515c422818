//! [`MountRootStore`] on SQLite: each tenant's mount roots.

use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::SqliteStore;
use super::corrupt;
use super::query;
use crate::error::Result;
use crate::error::StoreError;
use crate::model::TenantMountRoot;
use crate::store::MountRootStore;
use crate::store::StoreFuture;

fn root_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TenantMountRoot>> {
    let tenant: String = r.get(0)?;
    Ok(TenantId::new(&tenant)
        .map_err(corrupt("tenant_mount_roots"))
        .and_then(|tenant| {
            Ok(TenantMountRoot {
                tenant,
                path: r.get(1)?,
                rw: r.get(2)?,
                added_at: r.get(3)?,
            })
        }))
}

impl MountRootStore for SqliteStore {
    fn mount_roots<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<TenantMountRoot>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |conn| {
            query(
                conn,
                "SELECT tenant, path, rw, added_at FROM tenant_mount_roots
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, path",
                params![tenant],
                root_row,
            )
        })
    }

    fn set_mount_root<'a>(
        &'a self,
        tenant: &'a TenantId,
        path: &'a str,
        rw: bool,
    ) -> StoreFuture<'a, TenantMountRoot> {
        let (tenant, path) = (tenant.clone(), path.to_owned());
        self.transaction(move |tx| {
            let known = tx
                .query_row(
                    "SELECT 1 FROM tenants WHERE id = ?1",
                    params![tenant.as_str()],
                    |_| Ok(()),
                )
                .optional()?;
            if known.is_none() {
                return Err(StoreError::Invalid(format!("unknown tenant {tenant}")));
            }
            tx.execute(
                "INSERT INTO tenant_mount_roots (tenant, path, rw, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, path) DO UPDATE SET rw = excluded.rw",
                params![tenant.as_str(), path, rw, crate::time::now_rfc3339()],
            )?;
            let added_at: String = tx.query_row(
                "SELECT added_at FROM tenant_mount_roots WHERE tenant = ?1 AND path = ?2",
                params![tenant.as_str(), path],
                |r| r.get(0),
            )?;
            Ok(TenantMountRoot {
                tenant,
                path,
                rw,
                added_at,
            })
        })
    }

    fn remove_mount_root<'a>(
        &'a self,
        tenant: &'a TenantId,
        path: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, path) = (tenant.clone(), path.to_owned());
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM tenant_mount_roots WHERE tenant = ?1 AND path = ?2",
                params![tenant.as_str(), path],
            )?;
            Ok(n > 0)
        })
    }
}
