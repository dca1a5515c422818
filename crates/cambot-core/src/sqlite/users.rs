//! [`UserStore`] on SQLite: users with password hashes, JWT signing keys, rotating refresh
//! tokens and web chat sessions. Every read made for a user is keyed by `(tenant, user)` in SQL,
//! so a row of another user or tenant is simply not found.

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
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
use crate::model::ChatHistoryMessage;
use crate::model::ChatReply;
use crate::model::RefreshRotation;
use crate::model::RefreshTokenRow;
use crate::model::SigningKeyRow;
use crate::model::UserRow;
use crate::model::WebSessionRow;
use crate::store::StoreFuture;
use crate::store::UserStore;

const USER_COLUMNS: &str = "tenant, id, password_hash, disabled, created_ms, updated_ms";
const KEY_COLUMNS: &str = "kid, tenant, algorithm, private_key, public_key, created_ms, sealed";
const SESSION_COLUMNS: &str =
    "tenant, user_id, id, folder, chat_jid, title, created_ms, last_active_ms";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<UserRow>> {
    let tenant: String = r.get(0)?;
    let row = UserRow {
        tenant: TenantId::default_tenant(),
        id: r.get(1)?,
        password_hash: r.get(2)?,
        disabled: r.get(3)?,
        created_ms: r.get(4)?,
        updated_ms: r.get(5)?,
    };
    Ok(TenantId::new(&tenant)
        .map(|tenant| UserRow { tenant, ..row })
        .map_err(corrupt("web_users")))
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SigningKeyRow>> {
    let tenant: String = r.get(1)?;
    let row = SigningKeyRow {
        kid: r.get(0)?,
        tenant: TenantId::default_tenant(),
        algorithm: r.get(2)?,
        private_key: r.get(3)?,
        public_key: r.get(4)?,
        created_ms: r.get(5)?,
        sealed: r.get(6)?,
    };
    Ok(TenantId::new(&tenant)
        .map(|tenant| SigningKeyRow { tenant, ..row })
        .map_err(corrupt("web_signing_keys")))
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WebSessionRow>> {
    let (tenant, folder, jid): (String, String, String) = (r.get(0)?, r.get(3)?, r.get(4)?);
    let (user_id, id, title, created_ms, last_active_ms) =
        (r.get(1)?, r.get(2)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let build = || -> Result<WebSessionRow> {
        Ok(WebSessionRow {
            tenant: TenantId::new(&tenant).map_err(corrupt("web_sessions"))?,
            user_id,
            id,
            folder: GroupFolder::new(&folder).map_err(corrupt("web_sessions"))?,
            chat_jid: ChatJid::new(&jid).map_err(corrupt("web_sessions"))?,
            title,
            created_ms,
            last_active_ms,
        })
    };
    Ok(build())
}

fn insert_refresh(conn: &Connection, row: &RefreshTokenRow, now_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO web_refresh_tokens
             (hash, family, tenant, user_id, created_ms, expires_ms, family_created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.hash,
            row.family,
            row.tenant.as_str(),
            row.user_id,
            now_ms,
            row.expires_ms,
            row.family_created_ms
        ],
    )?;
    Ok(())
}

/// A presented refresh token's row.
struct Presented {
    family: String,
    tenant: String,
    user_id: String,
    expires_ms: i64,
    used: bool,
    revoked: bool,
    family_start: i64,
}

/// Changes one user row and, when it existed and `revoke` says so, revokes every refresh token
/// of the user in the same transaction.
fn update_user(
    store: &SqliteStore,
    tenant: &TenantId,
    id: &str,
    set: &'static str,
    value: rusqlite::types::Value,
    revoke: bool,
) -> StoreFuture<'static, bool> {
    let (tenant, id) = (tenant.clone(), id.to_owned());
    let changes = std::sync::Arc::clone(&store.user_changes);
    let changed = store.transaction(move |tx| {
        let n = tx.execute(
            &format!(
                "UPDATE web_users SET {set} = ?3, updated_ms = ?4 WHERE tenant = ?1 AND id = ?2"
            ),
            params![tenant.as_str(), id, value, crate::time::now_ms()],
        )?;
        if n == 1 && revoke {
            tx.execute(
                "UPDATE web_refresh_tokens SET revoked = 1 WHERE tenant = ?1 AND user_id = ?2",
                params![tenant.as_str(), id],
            )?;
        }
        Ok(n == 1)
    });
    Box::pin(async move {
        let found = changed.await?;
        if found {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(found)
    })
}

impl UserStore for SqliteStore {
    fn chat_history<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        max: usize,
    ) -> StoreFuture<'a, Vec<ChatHistoryMessage>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            let mut rows = conn
                .prepare_cached(
                    "SELECT seq, id, sender, content, timestamp FROM messages
                     WHERE tenant = ?1 AND chat_jid = ?2 ORDER BY seq DESC LIMIT ?3",
                )?
                .query_map(params![tenant.as_str(), chat.as_str(), limit(max)], |r| {
                    Ok(ChatHistoryMessage {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        sender: r.get(2)?,
                        content: r.get(3)?,
                        timestamp: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.reverse();
            Ok(rows)
        })
    }

    fn chat_replies_after<'a>(
        &'a self,
        tenant: &'a TenantId,
        chat_jid: &'a ChatJid,
        after_id: i64,
        max: usize,
    ) -> StoreFuture<'a, Vec<ChatReply>> {
        let (tenant, chat) = (tenant.clone(), chat_jid.clone());
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, text, created_at FROM outbox
                     WHERE tenant = ?1 AND chat_jid = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                )?
                .query_map(
                    params![tenant.as_str(), chat.as_str(), after_id, limit(max)],
                    |r| {
                        Ok(ChatReply {
                            id: r.get(0)?,
                            text: r.get(1)?,
                            created_at: r.get(2)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    fn add_user<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (tenant, id, hash) = (tenant.clone(), id.to_owned(), password_hash.to_owned());
        self.transaction(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?1, ?2)",
                params![tenant.as_str(), crate::time::now_rfc3339()],
            )?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO web_users
                     (tenant, id, password_hash, disabled, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 0, ?4, ?4)",
                params![tenant.as_str(), id, hash, crate::time::now_ms()],
            )?;
            Ok(n == 1)
        })
    }

    fn user<'a>(&'a self, tenant: &'a TenantId, id: &'a str) -> StoreFuture<'a, Option<UserRow>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |conn| {
            query_one(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM web_users WHERE tenant = ?1 AND id = ?2"),
                params![tenant.as_str(), id],
                user_row,
            )
        })
    }

    fn users<'a>(&'a self, tenant: Option<&'a TenantId>) -> StoreFuture<'a, Vec<UserRow>> {
        let tenant = tenant.cloned();
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {USER_COLUMNS} FROM web_users WHERE ?1 IS NULL OR tenant = ?1
                     ORDER BY tenant, id"
                ),
                params![tenant.as_ref().map(TenantId::as_str)],
                user_row,
            )
        })
    }

    fn users_updated_since(&self, since_ms: i64) -> StoreFuture<'_, Vec<UserRow>> {
        self.read(move |conn| {
            query(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM web_users WHERE updated_ms >= ?1"),
                params![since_ms],
                user_row,
            )
        })
    }

    fn user_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.user_changes.subscribe()
    }

    /// Disabling also revokes every refresh token of the user.
    fn set_user_disabled<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        disabled: bool,
    ) -> StoreFuture<'a, bool> {
        update_user(
            self,
            tenant,
            id,
            "disabled",
            i64::from(disabled).into(),
            disabled,
        )
    }

    /// A new password revokes every refresh token of the user.
    fn set_user_password<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, bool> {
        update_user(
            self,
            tenant,
            id,
            "password_hash",
            password_hash.to_owned().into(),
            true,
        )
    }

    fn signing_keys<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Vec<SigningKeyRow>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {KEY_COLUMNS} FROM web_signing_keys WHERE tenant = ?1
                     ORDER BY created_ms DESC, kid"
                ),
                params![tenant.as_str()],
                key_row,
            )
        })
    }

    fn signing_key<'a>(&'a self, kid: &'a str) -> StoreFuture<'a, Option<SigningKeyRow>> {
        let kid = kid.to_owned();
        self.read(move |conn| {
            query_one(
                conn,
                &format!("SELECT {KEY_COLUMNS} FROM web_signing_keys WHERE kid = ?1"),
                params![kid],
                key_row,
            )
        })
    }

    fn add_signing_key<'a>(&'a self, key: &'a SigningKeyRow) -> StoreFuture<'a, ()> {
        let key = key.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO web_signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    key.kid,
                    key.tenant.as_str(),
                    key.algorithm,
                    key.private_key,
                    key.public_key,
                    key.created_ms,
                    key.sealed
                ],
            )?;
            Ok(())
        })
    }

    fn delete_signing_keys<'a>(
        &'a self,
        tenant: &'a TenantId,
        before_ms: i64,
        keep: &'a str,
    ) -> StoreFuture<'a, usize> {
        let (tenant, keep) = (tenant.clone(), keep.to_owned());
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM web_signing_keys WHERE tenant = ?1 AND created_ms < ?2 AND kid != ?3",
                params![tenant.as_str(), before_ms, keep],
            )?)
        })
    }

    fn all_signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRow>> {
        self.read(|conn| {
            query(
                conn,
                &format!("SELECT {KEY_COLUMNS} FROM web_signing_keys ORDER BY tenant, kid"),
                [],
                key_row,
            )
        })
    }

    fn seal_signing_keys(&self, sealed: Vec<(String, Vec<u8>)>) -> StoreFuture<'_, usize> {
        self.write(move |conn| seal_signing_keys(conn, &sealed))
    }

    fn insert_refresh<'a>(&'a self, row: &'a RefreshTokenRow) -> StoreFuture<'a, ()> {
        let row = row.clone();
        self.write(move |conn| insert_refresh(conn, &row, crate::time::now_ms()))
    }

    fn rotate_refresh<'a>(
        &'a self,
        old_hash: &'a str,
        new_hash: &'a str,
        new_expires_ms: i64,
        family_lifetime_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'a, RefreshRotation> {
        let (old_hash, new_hash) = (old_hash.to_owned(), new_hash.to_owned());
        self.transaction(move |tx| {
            let row = tx
                .query_row(
                    "SELECT family, tenant, user_id, expires_ms, used_ms, revoked,
                            family_created_ms
                     FROM web_refresh_tokens WHERE hash = ?1",
                    params![old_hash],
                    |r| {
                        Ok(Presented {
                            family: r.get(0)?,
                            tenant: r.get(1)?,
                            user_id: r.get(2)?,
                            expires_ms: r.get(3)?,
                            used: r.get::<_, Option<i64>>(4)?.is_some(),
                            revoked: r.get(5)?,
                            family_start: r.get(6)?,
                        })
                    },
                )
                .optional()?;
            let Some(Presented {
                family,
                tenant,
                user_id,
                expires_ms,
                used,
                revoked,
                family_start,
            }) = row
            else {
                return Ok(RefreshRotation::Invalid);
            };
            let family_end = family_start.saturating_add(family_lifetime_ms);
            if revoked || expires_ms <= now_ms || family_end <= now_ms {
                return Ok(RefreshRotation::Invalid);
            }
            if used {
                // A used token presented again: a stolen token was replayed.
                tx.execute(
                    "UPDATE web_refresh_tokens SET revoked = 1 WHERE family = ?1",
                    params![family],
                )?;
                return Ok(RefreshRotation::Reused);
            }
            tx.execute(
                "UPDATE web_refresh_tokens SET used_ms = ?2 WHERE hash = ?1",
                params![old_hash, now_ms],
            )?;
            let tenant = TenantId::new(&tenant).map_err(corrupt("web_refresh_tokens"))?;
            let next = RefreshTokenRow {
                hash: new_hash,
                family,
                tenant: tenant.clone(),
                user_id: user_id.clone(),
                expires_ms: new_expires_ms.min(family_end),
                family_created_ms: family_start,
            };
            insert_refresh(tx, &next, now_ms)?;
            Ok(RefreshRotation::Rotated {
                tenant,
                user_id,
                expires_ms: next.expires_ms,
            })
        })
    }

    fn revoke_refresh_family<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, ()> {
        let hash = hash.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE web_refresh_tokens SET revoked = 1
                 WHERE family = (SELECT family FROM web_refresh_tokens WHERE hash = ?1)",
                params![hash],
            )?;
            Ok(())
        })
    }

    fn insert_web_session<'a>(&'a self, s: &'a WebSessionRow) -> StoreFuture<'a, ()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO web_sessions ({SESSION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    s.tenant.as_str(),
                    s.user_id,
                    s.id,
                    s.folder.as_str(),
                    s.chat_jid.as_str(),
                    s.title,
                    s.created_ms,
                    s.last_active_ms
                ],
            )?;
            Ok(())
        })
    }

    fn web_sessions<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
    ) -> StoreFuture<'a, Vec<WebSessionRow>> {
        let (tenant, user) = (tenant.clone(), user_id.to_owned());
        self.read(move |conn| {
            query(
                conn,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM web_sessions WHERE tenant = ?1 AND user_id = ?2
                     ORDER BY last_active_ms DESC, id"
                ),
                params![tenant.as_str(), user],
                session_row,
            )
        })
    }

    fn web_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, Option<WebSessionRow>> {
        let (tenant, user, id) = (tenant.clone(), user_id.to_owned(), id.to_owned());
        self.read(move |conn| {
            query_one(
                conn,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM web_sessions
                     WHERE tenant = ?1 AND user_id = ?2 AND id = ?3"
                ),
                params![tenant.as_str(), user, id],
                session_row,
            )
        })
    }

    fn touch_web_session<'a>(
        &'a self,
        tenant: &'a TenantId,
        user_id: &'a str,
        id: &'a str,
        now_ms: i64,
        title_if_empty: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        let (tenant, user, id) = (tenant.clone(), user_id.to_owned(), id.to_owned());
        let title = title_if_empty.map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE web_sessions SET last_active_ms = MAX(last_active_ms, ?4),
                     title = CASE WHEN title = '' AND ?5 IS NOT NULL THEN ?5 ELSE title END
                 WHERE tenant = ?1 AND user_id = ?2 AND id = ?3",
            )?
            .execute(params![tenant.as_str(), user, id, now_ms, title])?;
            Ok(())
        })
    }
}

/// Replaces plaintext private keys by their sealed form so that no copy of the plaintext stays
/// in the file: `secure_delete` zeroes the bytes the update frees, VACUUM rewrites the file
/// (free pages from earlier key rotations may still hold a key), and a TRUNCATE checkpoint
/// empties the WAL, whose older frames hold the old pages.
fn seal_signing_keys(conn: &Connection, sealed: &[(String, Vec<u8>)]) -> Result<usize> {
    if sealed.is_empty() {
        return Ok(0);
    }
    let was: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    let done = (|| -> Result<usize> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut n = 0;
        let update = (|| -> Result<()> {
            let mut stmt = conn.prepare(
                "UPDATE web_signing_keys SET private_key = ?2, sealed = 1 WHERE kid = ?1 AND sealed = 0",
            )?;
            for (kid, bytes) in sealed {
                n += stmt.execute(params![kid, bytes])?;
            }
            Ok(())
        })();
        match update {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        conn.execute_batch("VACUUM")?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::warn!(
                "another process kept the WAL from being emptied after sealing the web signing \
                 keys: their old plaintext stays in the WAL until its next full checkpoint"
            );
        }
        Ok(n)
    })();
    conn.execute_batch(&format!("PRAGMA secure_delete = {was}"))?;
    done
}
