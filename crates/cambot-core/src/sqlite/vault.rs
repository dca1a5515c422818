//! [`VaultStore`] on SQLite: the vault's sealed rows (`vault_meta`, `vault_deks`,
//! `vault_secrets`).

use std::collections::BTreeSet;

use cambot_protocol::TenantId;
use rusqlite::Connection;
use rusqlite::OptionalExtension;
use rusqlite::params;

use super::SqliteStore;
use super::corrupt;
use super::query;
use super::query_one;
use crate::error::Result;
use crate::store::StoreFuture;
use crate::vault_store::VaultDekRow;
use crate::vault_store::VaultKeyChange;
use crate::vault_store::VaultSecretRow;
use crate::vault_store::VaultStore;

const SECRET_COLUMNS: &str = "tenant, name, nonce, ciphertext, created_ms, updated_ms, expires_ms";

fn dek_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<VaultDekRow>> {
    let tenant: String = r.get(0)?;
    let (nonce, wrapped, created_ms) = (r.get(1)?, r.get(2)?, r.get(3)?);
    Ok(TenantId::new(&tenant)
        .map_err(corrupt("vault_deks"))
        .map(|tenant| VaultDekRow {
            tenant,
            nonce,
            wrapped,
            created_ms,
        }))
}

fn secret_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<VaultSecretRow>> {
    let tenant: String = r.get(0)?;
    let row = (
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    );
    Ok(TenantId::new(&tenant)
        .map_err(corrupt("vault_secrets"))
        .map(|tenant| {
            let (name, nonce, ciphertext, created_ms, updated_ms, expires_ms) = row;
            VaultSecretRow {
                tenant,
                name,
                nonce,
                ciphertext,
                created_ms,
                updated_ms,
                expires_ms,
            }
        }))
}

fn check(conn: &Connection) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT kek_check FROM vault_meta WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?)
}

fn dek(conn: &Connection, tenant: &str) -> Result<Option<VaultDekRow>> {
    query_one(
        conn,
        "SELECT tenant, nonce, wrapped, created_ms FROM vault_deks WHERE tenant = ?1",
        [tenant],
        dek_row,
    )
}

impl VaultStore for SqliteStore {
    fn vault_check(&self) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.read(check)
    }

    fn init_vault_check(&self, kek_check: Vec<u8>) -> StoreFuture<'_, Vec<u8>> {
        self.transaction(move |tx| {
            if let Some(stored) = check(tx)? {
                return Ok(stored);
            }
            tx.execute(
                "INSERT INTO vault_meta (id, kek_check, updated_ms) VALUES (1, ?1, ?2)",
                params![kek_check, crate::time::now_ms()],
            )?;
            Ok(kek_check)
        })
    }

    fn vault_dek<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Option<VaultDekRow>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| dek(conn, &tenant))
    }

    fn vault_deks(&self) -> StoreFuture<'_, Vec<VaultDekRow>> {
        self.read(|conn| {
            query(
                conn,
                "SELECT tenant, nonce, wrapped, created_ms FROM vault_deks ORDER BY tenant",
                [],
                dek_row,
            )
        })
    }

    fn insert_vault_dek(
        &self,
        row: VaultDekRow,
        kek_check: Vec<u8>,
    ) -> StoreFuture<'_, Option<VaultDekRow>> {
        self.transaction(move |tx| {
            if check(tx)?.as_deref() != Some(kek_check.as_slice()) {
                return Ok(None);
            }
            tx.execute(
                "INSERT OR IGNORE INTO vault_deks (tenant, nonce, wrapped, created_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![row.tenant.as_str(), row.nonce, row.wrapped, row.created_ms],
            )?;
            dek(tx, row.tenant.as_str())
        })
    }

    fn vault_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<VaultSecretRow>> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.read(move |conn| {
            query_one(
                conn,
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM vault_secrets WHERE tenant = ?1 AND name = ?2"
                ),
                params![tenant, name],
                secret_row,
            )
        })
    }

    fn vault_secrets<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<VaultSecretRow>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM vault_secrets
                     WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name"
                ),
                params![tenant],
                secret_row,
            )
        })
    }

    fn put_vault_secret(&self, row: VaultSecretRow) -> StoreFuture<'_, ()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO vault_secrets
                     (tenant, name, nonce, ciphertext, created_ms, updated_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant, name) DO UPDATE SET
                     nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                     updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms",
            )?
            .execute(params![
                row.tenant.as_str(),
                row.name,
                row.nonce,
                row.ciphertext,
                row.created_ms,
                row.updated_ms,
                row.expires_ms
            ])?;
            Ok(())
        })
    }

    fn delete_vault_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.write(move |conn| {
            let n = conn.execute(
                "DELETE FROM vault_secrets WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            Ok(n > 0)
        })
    }

    fn replace_vault_keys(
        &self,
        old_check: Vec<u8>,
        new_check: Vec<u8>,
        deks: Vec<VaultDekRow>,
    ) -> StoreFuture<'_, VaultKeyChange> {
        self.transaction(move |tx| {
            if check(tx)?.as_deref() != Some(old_check.as_slice()) {
                return Ok(VaultKeyChange::Changed);
            }
            // Checked before any write, under the write lock: nothing can change in between,
            // so a mismatch never leaves half the keys replaced.
            let stored: BTreeSet<String> = tx
                .prepare("SELECT tenant FROM vault_deks")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let given: BTreeSet<String> = deks.iter().map(|d| d.tenant.to_string()).collect();
            if stored != given || given.len() != deks.len() {
                return Ok(VaultKeyChange::Changed);
            }
            let mut update = tx.prepare_cached(
                "UPDATE vault_deks SET nonce = ?2, wrapped = ?3 WHERE tenant = ?1",
            )?;
            for d in &deks {
                update.execute(params![d.tenant.as_str(), d.nonce, d.wrapped])?;
            }
            tx.execute(
                "UPDATE vault_meta SET kek_check = ?1, updated_ms = ?2 WHERE id = 1",
                params![new_check, crate::time::now_ms()],
            )?;
            Ok(VaultKeyChange::Replaced)
        })
    }
}
