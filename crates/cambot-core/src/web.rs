//! Web chat records (story 1.4): users with password hashes, JWT signing keys, rotating refresh
//! tokens, web sessions, and the history reads the web UI needs.
//!
//! Every read that the web UI makes on behalf of a user is keyed by `(tenant, user)` in SQL, so a
//! row of another user or tenant is simply not found.

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::db::Store;
use crate::error::Result;
use crate::error::StoreError;

/// A web user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUserRow {
    pub tenant: TenantId,
    pub id: String,
    /// PHC string of the password hash (Argon2id).
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A JWT signing key of a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub tenant: TenantId,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_ms: i64,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("algorithm", &self.algorithm)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// A refresh token as stored (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRow {
    pub hash: String,
    pub family: String,
    pub tenant: TenantId,
    pub user_id: String,
    pub expires_ms: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was valid and unused: it is now used, and the new one is stored.
    Rotated { tenant: TenantId, user_id: String },
    /// The token was already used: its whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A web chat session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSessionRow {
    pub tenant: TenantId,
    pub user_id: String,
    pub id: String,
    pub folder: GroupFolder,
    pub chat_jid: ChatJid,
    pub title: String,
    pub created_ms: i64,
    pub last_active_ms: i64,
}

/// A reply of the assistant to a chat (an outbox row, delivered or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    pub id: i64,
    pub text: String,
    pub created_at: String,
}

/// A message of a chat as shown in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatHistoryMessage {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub content: String,
    pub timestamp: String,
}

fn corrupt(table: &'static str) -> impl Fn(cambot_protocol::IdError) -> StoreError {
    move |e| StoreError::CorruptRow {
        table,
        reason: e.to_string(),
    }
}

type RawSession = (String, String, String, String, String, String, i64, i64);

fn build_session(raw: RawSession) -> Result<WebSessionRow> {
    let (tenant, user_id, id, folder, jid, title, created_ms, last_active_ms) = raw;
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
}

const SESSION_COLUMNS: &str =
    "tenant, user_id, id, folder, chat_jid, title, created_ms, last_active_ms";

fn raw_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSession> {
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

type RawUser = (String, String, String, bool, i64, i64);

fn build_user(raw: RawUser) -> Result<WebUserRow> {
    let (tenant, id, password_hash, disabled, created_ms, updated_ms) = raw;
    Ok(WebUserRow {
        tenant: TenantId::new(&tenant).map_err(corrupt("web_users"))?,
        id,
        password_hash,
        disabled,
        created_ms,
        updated_ms,
    })
}

fn raw_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawUser> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

const USER_COLUMNS: &str = "tenant, id, password_hash, disabled, created_ms, updated_ms";

type RawKey = (String, String, String, Vec<u8>, Vec<u8>, i64);

fn build_key(raw: RawKey) -> Result<SigningKeyRow> {
    let (kid, tenant, algorithm, private_key, public_key, created_ms) = raw;
    Ok(SigningKeyRow {
        kid,
        tenant: TenantId::new(&tenant).map_err(corrupt("web_signing_keys"))?,
        algorithm,
        private_key,
        public_key,
        created_ms,
    })
}

fn raw_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawKey> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

const KEY_COLUMNS: &str = "kid, tenant, algorithm, private_key, public_key, created_ms";

impl Store {
    /// Adds a user (and its tenant, when new). False when the user already exists.
    pub fn web_user_add(&self, tenant: &TenantId, id: &str, password_hash: &str) -> Result<bool> {
        let now = crate::time::now_ms();
        self.with_tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?1, ?2)",
                params![tenant.as_str(), crate::time::now_rfc3339()],
            )?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO web_users (tenant, id, password_hash, disabled, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 0, ?4, ?4)",
                params![tenant.as_str(), id, password_hash, now],
            )?;
            Ok(n == 1)
        })
    }

    /// One user.
    pub fn web_user(&self, tenant: &TenantId, id: &str) -> Result<Option<WebUserRow>> {
        let conn = self.reader()?;
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM web_users WHERE tenant = ?1 AND id = ?2"
            ))?
            .query_row(params![tenant.as_str(), id], raw_user)
            .optional()?;
        raw.map(build_user).transpose()
    }

    /// Users of one tenant, or of all tenants, ordered by tenant and id.
    pub fn web_users(&self, tenant: Option<&TenantId>) -> Result<Vec<WebUserRow>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM web_users WHERE ?1 IS NULL OR tenant = ?1
                 ORDER BY tenant, id"
            ))?
            .query_map(params![tenant.map(TenantId::as_str)], raw_user)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(build_user).collect()
    }

    /// Disables or re-enables a user; disabling revokes every refresh token of the user.
    /// False when there is no such user.
    pub fn web_user_set_disabled(
        &self,
        tenant: &TenantId,
        id: &str,
        disabled: bool,
    ) -> Result<bool> {
        let now = crate::time::now_ms();
        self.with_tx(|tx| {
            let n = tx.execute(
                "UPDATE web_users SET disabled = ?3, updated_ms = ?4 WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id, disabled, now],
            )?;
            if n == 1 && disabled {
                revoke_user_tokens(tx, tenant, id)?;
            }
            Ok(n == 1)
        })
    }

    /// Replaces a user's password hash and revokes every refresh token of the user.
    pub fn web_user_set_password(
        &self,
        tenant: &TenantId,
        id: &str,
        password_hash: &str,
    ) -> Result<bool> {
        let now = crate::time::now_ms();
        self.with_tx(|tx| {
            let n = tx.execute(
                "UPDATE web_users SET password_hash = ?3, updated_ms = ?4 WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id, password_hash, now],
            )?;
            if n == 1 {
                revoke_user_tokens(tx, tenant, id)?;
            }
            Ok(n == 1)
        })
    }

    /// A tenant's signing keys, newest first.
    pub fn web_signing_keys(&self, tenant: &TenantId) -> Result<Vec<SigningKeyRow>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM web_signing_keys WHERE tenant = ?1
                 ORDER BY created_ms DESC, kid"
            ))?
            .query_map(params![tenant.as_str()], raw_key)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(build_key).collect()
    }

    /// One signing key by key id.
    pub fn web_signing_key(&self, kid: &str) -> Result<Option<SigningKeyRow>> {
        let conn = self.reader()?;
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM web_signing_keys WHERE kid = ?1"
            ))?
            .query_row(params![kid], raw_key)
            .optional()?;
        raw.map(build_key).transpose()
    }

    /// Stores a new signing key.
    pub fn web_add_signing_key(&self, key: &SigningKeyRow) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO web_signing_keys (kid, tenant, algorithm, private_key, public_key, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                key.kid,
                key.tenant.as_str(),
                key.algorithm,
                key.private_key,
                key.public_key,
                key.created_ms
            ],
        )?;
        Ok(())
    }

    /// Deletes a tenant's keys created before `before_ms`, except `keep`. Returns how many.
    pub fn web_delete_signing_keys(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        keep: &str,
    ) -> Result<usize> {
        let conn = self.conn()?;
        Ok(conn.execute(
            "DELETE FROM web_signing_keys WHERE tenant = ?1 AND created_ms < ?2 AND kid != ?3",
            params![tenant.as_str(), before_ms, keep],
        )?)
    }

    /// Stores a new refresh token (the first of a family, at sign-in).
    pub fn web_refresh_insert(&self, row: &RefreshTokenRow) -> Result<()> {
        let conn = self.conn()?;
        insert_refresh(&conn, row, crate::time::now_ms())?;
        Ok(())
    }

    /// Presents `old_hash`: if it is valid and unused, marks it used and stores `new_hash` in the
    /// same family; if it was already used, revokes the family (a stolen token was replayed).
    pub fn web_refresh_rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> Result<RefreshRotation> {
        self.with_tx(|tx| {
            let row: Option<(String, String, String, i64, Option<i64>, bool)> = tx
                .query_row(
                    "SELECT family, tenant, user_id, expires_ms, used_ms, revoked
                     FROM web_refresh_tokens WHERE hash = ?1",
                    params![old_hash],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((family, tenant, user_id, expires_ms, used_ms, revoked)) = row else {
                return Ok(RefreshRotation::Invalid);
            };
            if revoked || expires_ms <= now_ms {
                return Ok(RefreshRotation::Invalid);
            }
            if used_ms.is_some() {
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
            insert_refresh(
                tx,
                &RefreshTokenRow {
                    hash: new_hash.to_owned(),
                    family,
                    tenant: tenant.clone(),
                    user_id: user_id.clone(),
                    expires_ms: new_expires_ms,
                },
                now_ms,
            )?;
            Ok(RefreshRotation::Rotated { tenant, user_id })
        })
    }

    /// Revokes the family of a refresh token (sign-out).
    pub fn web_refresh_revoke_family(&self, hash: &str) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE web_refresh_tokens SET revoked = 1
             WHERE family = (SELECT family FROM web_refresh_tokens WHERE hash = ?1)",
            params![hash],
        )?;
        Ok(())
    }

    /// Records a new web session.
    pub fn web_session_insert(&self, s: &WebSessionRow) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            &format!(
                "INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
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
    }

    /// A user's sessions, most recently active first.
    pub fn web_sessions(&self, tenant: &TenantId, user_id: &str) -> Result<Vec<WebSessionRow>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM web_sessions WHERE tenant = ?1 AND user_id = ?2
                 ORDER BY last_active_ms DESC, id"
            ))?
            .query_map(params![tenant.as_str(), user_id], raw_session)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(build_session).collect()
    }

    /// One session, only if it belongs to `(tenant, user_id)`.
    pub fn web_session(
        &self,
        tenant: &TenantId,
        user_id: &str,
        id: &str,
    ) -> Result<Option<WebSessionRow>> {
        let conn = self.reader()?;
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM web_sessions
                 WHERE tenant = ?1 AND user_id = ?2 AND id = ?3"
            ))?
            .query_row(params![tenant.as_str(), user_id, id], raw_session)
            .optional()?;
        raw.map(build_session).transpose()
    }

    /// Marks a session active now; sets its title when it has none yet.
    pub fn web_session_touch(
        &self,
        tenant: &TenantId,
        user_id: &str,
        id: &str,
        now_ms: i64,
        title_if_empty: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn()?;
        conn.prepare_cached(
            "UPDATE web_sessions SET last_active_ms = MAX(last_active_ms, ?4),
                 title = CASE WHEN title = '' AND ?5 IS NOT NULL THEN ?5 ELSE title END
             WHERE tenant = ?1 AND user_id = ?2 AND id = ?3",
        )?
        .execute(params![
            tenant.as_str(),
            user_id,
            id,
            now_ms,
            title_if_empty
        ])?;
        Ok(())
    }

    /// The newest `limit` messages of a chat (bot messages included), oldest first.
    pub fn chat_history(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        limit: usize,
    ) -> Result<Vec<ChatHistoryMessage>> {
        let conn = self.reader()?;
        let mut rows = conn
            .prepare_cached(
                "SELECT seq, id, sender, content, timestamp FROM messages
                 WHERE tenant = ?1 AND chat_jid = ?2 ORDER BY seq DESC LIMIT ?3",
            )?
            .query_map(
                params![
                    tenant.as_str(),
                    chat_jid.as_str(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(ChatHistoryMessage {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        sender: r.get(2)?,
                        content: r.get(3)?,
                        timestamp: r.get(4)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// Replies committed to a chat with an outbox id above `after_id`, oldest first (delivered
    /// or not: the outbox row is the durable record of the reply).
    pub fn chat_replies_after(
        &self,
        tenant: &TenantId,
        chat_jid: &ChatJid,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ChatReply>> {
        let conn = self.reader()?;
        let rows = conn
            .prepare_cached(
                "SELECT id, text, created_at FROM outbox
                 WHERE tenant = ?1 AND chat_jid = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
            )?
            .query_map(
                params![
                    tenant.as_str(),
                    chat_jid.as_str(),
                    after_id,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
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
    }
}

fn insert_refresh(
    conn: &rusqlite::Connection,
    row: &RefreshTokenRow,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO web_refresh_tokens (hash, family, tenant, user_id, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            row.hash,
            row.family,
            row.tenant.as_str(),
            row.user_id,
            now_ms,
            row.expires_ms
        ],
    )?;
    Ok(())
}

fn revoke_user_tokens(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    id: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE web_refresh_tokens SET revoked = 1 WHERE tenant = ?1 AND user_id = ?2",
        params![tenant.as_str(), id],
    )?;
    Ok(())
}
