//! cambot's side of the web channel ([`WebHost`]) on the store: users with Argon2id password
//! hashes, signing keys, refresh tokens, web sessions, history and uploads.
//!
//! Every session read is keyed by `(tenant, user, id)` in SQL, so the owner check cannot be
//! forgotten by a caller.

use std::io::Write;
use std::sync::Arc;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::PasswordHash;
use argon2::PasswordHasher;
use argon2::PasswordVerifier;
use argon2::password_hash::SaltString;
use cambot_channels::BoxFuture;
use cambot_channels::HostError;
use cambot_channels::web::HistoryItem;
use cambot_channels::web::Rotation;
use cambot_channels::web::StoredKey;
use cambot_channels::web::UploadInfo;
use cambot_channels::web::WebHost;
use cambot_channels::web::WebSession;
use cambot_channels::web::WebUser;
use cambot_core::RefreshRotation;
use cambot_core::RefreshTokenRow;
use cambot_core::SigningKeyRow;
use cambot_core::Store;
use cambot_core::WebSessionRow;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane) and a random
/// salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Checks a password against a PHC string (false for a malformed hash).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Most Argon2 memory a stored hash may ask for (blocks of 1 KiB): 256 MiB.
const MAX_ARGON2_BLOCKS: usize = 256 * 1024;

/// [`verify_password`] with caller-owned Argon2 working memory, reused across checks (the
/// password thread keeps one buffer instead of allocating 19 MiB per sign-in).
pub fn verify_password_with(password: &str, phc: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (argon2::Params::try_from(&hash), hash.salt, hash.hash)
    else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if needed > MAX_ARGON2_BLOCKS {
        return false;
    }
    if blocks.len() < needed {
        blocks.resize(needed, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..needed])
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// A hash to verify against when the user does not exist, so that an unknown name takes as
/// long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("cambot-dummy-password").unwrap_or_default())
}

type PasswordJob = Box<dyn FnOnce(&mut Vec<argon2::Block>) + Send>;

/// Sign-ins waiting for the password thread; more are refused (503) rather than queued.
const PASSWORD_QUEUE: usize = 64;

/// Every password check runs on one dedicated thread. Argon2id needs 19 MiB per check: on the
/// blocking pool, parallel checks would multiply that (a cheap memory attack), and each pool
/// thread's allocator arena would keep its 19 MiB afterwards. The thread lives as long as the
/// process and only ever waits on its queue.
fn password_worker() -> Option<&'static std::sync::mpsc::SyncSender<PasswordJob>> {
    static WORKER: OnceLock<Option<std::sync::mpsc::SyncSender<PasswordJob>>> = OnceLock::new();
    WORKER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<PasswordJob>(PASSWORD_QUEUE);
            std::thread::Builder::new()
                .name("cambot-password".into())
                .spawn(move || {
                    let mut blocks = Vec::new();
                    while let Ok(job) = rx.recv() {
                        job(&mut blocks);
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

async fn on_password_thread<T: Send + 'static>(
    f: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
) -> Result<T, HostError> {
    let worker = password_worker()
        .ok_or_else(|| HostError::Storage("cannot start the password thread".into()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    worker
        .try_send(Box::new(move |blocks| {
            let _ = tx.send(f(blocks));
        }))
        .map_err(|_| HostError::ShuttingDown)?;
    rx.await
        .map_err(|_| HostError::Storage("the password thread stopped".into()))
}

/// The store-backed [`WebHost`].
#[derive(Clone)]
pub struct StoreWebHost {
    store: Store,
    layout: DataLayout,
}

impl std::fmt::Debug for StoreWebHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWebHost").finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> HostError {
    HostError::Storage(e.to_string())
}

impl StoreWebHost {
    pub fn new(store: Store, layout: DataLayout) -> Arc<Self> {
        Arc::new(Self { store, layout })
    }
}

fn session_from_row(r: WebSessionRow) -> WebSession {
    WebSession {
        tenant: r.tenant,
        user: r.user_id,
        id: r.id,
        folder: r.folder,
        jid: r.chat_jid,
        title: r.title,
        created_ms: r.created_ms,
        last_active_ms: r.last_active_ms,
    }
}

fn key_from_row(r: SigningKeyRow) -> Option<StoredKey> {
    (r.algorithm == "EdDSA").then_some(StoredKey {
        kid: r.kid,
        tenant: r.tenant,
        private_pkcs8: r.private_key,
        public_raw: r.public_key,
        created_ms: r.created_ms,
    })
}

/// Keeps `[A-Za-z0-9._-]`, replaces the rest, never starts with a dot, at most 100 characters.
pub fn sanitize_upload_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "upload".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn rfc3339_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

impl WebHost for StoreWebHost {
    fn check_password(
        &self,
        tenant: TenantId,
        user: String,
        password: String,
    ) -> BoxFuture<'_, Result<Option<WebUser>, HostError>> {
        let store = self.store.clone();
        Box::pin(async move {
            on_password_thread(move |blocks| {
                let row = store.web_user(&tenant, &user).map_err(storage)?;
                let Some(row) = row else {
                    verify_password_with(&password, dummy_hash(), blocks);
                    return Ok(None);
                };
                let ok = verify_password_with(&password, &row.password_hash, blocks);
                Ok((ok && !row.disabled).then_some(WebUser {
                    tenant: row.tenant,
                    id: row.id,
                    disabled: false,
                }))
            })
            .await?
        })
    }

    fn user(&self, tenant: &TenantId, user: &str) -> Result<Option<WebUser>, HostError> {
        Ok(self
            .store
            .web_user(tenant, user)
            .map_err(storage)?
            .map(|r| WebUser {
                tenant: r.tenant,
                id: r.id,
                disabled: r.disabled,
            }))
    }

    fn signing_keys(&self, tenant: &TenantId) -> Result<Vec<StoredKey>, HostError> {
        Ok(self
            .store
            .web_signing_keys(tenant)
            .map_err(storage)?
            .into_iter()
            .filter_map(key_from_row)
            .collect())
    }

    fn signing_key(&self, kid: &str) -> Result<Option<StoredKey>, HostError> {
        Ok(self
            .store
            .web_signing_key(kid)
            .map_err(storage)?
            .and_then(key_from_row))
    }

    fn add_signing_key(&self, key: &StoredKey) -> Result<(), HostError> {
        self.store
            .web_add_signing_key(&SigningKeyRow {
                kid: key.kid.clone(),
                tenant: key.tenant.clone(),
                algorithm: "EdDSA".into(),
                private_key: key.private_pkcs8.clone(),
                public_key: key.public_raw.clone(),
                created_ms: key.created_ms,
            })
            .map_err(storage)
    }

    fn retire_signing_keys(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        keep: &str,
    ) -> Result<(), HostError> {
        self.store
            .web_delete_signing_keys(tenant, before_ms, keep)
            .map(|_| ())
            .map_err(storage)
    }

    fn store_refresh(
        &self,
        hash: &str,
        family: &str,
        tenant: &TenantId,
        user: &str,
        expires_ms: i64,
    ) -> Result<(), HostError> {
        self.store
            .web_refresh_insert(&RefreshTokenRow {
                hash: hash.to_owned(),
                family: family.to_owned(),
                tenant: tenant.clone(),
                user_id: user.to_owned(),
                expires_ms,
            })
            .map_err(storage)
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> Result<Rotation, HostError> {
        Ok(
            match self
                .store
                .web_refresh_rotate(old_hash, new_hash, new_expires_ms, now_ms)
                .map_err(storage)?
            {
                RefreshRotation::Rotated { tenant, user_id } => Rotation::Rotated {
                    tenant,
                    user: user_id,
                },
                RefreshRotation::Reused => Rotation::Reused,
                RefreshRotation::Invalid => Rotation::Invalid,
            },
        )
    }

    fn revoke_refresh(&self, hash: &str) -> Result<(), HostError> {
        self.store.web_refresh_revoke_family(hash).map_err(storage)
    }

    fn create_session(&self, s: &WebSession) -> Result<(), HostError> {
        self.store
            .web_session_insert(&WebSessionRow {
                tenant: s.tenant.clone(),
                user_id: s.user.clone(),
                id: s.id.clone(),
                folder: s.folder.clone(),
                chat_jid: s.jid.clone(),
                title: s.title.clone(),
                created_ms: s.created_ms,
                last_active_ms: s.last_active_ms,
            })
            .map_err(storage)
    }

    fn sessions(&self, tenant: &TenantId, user: &str) -> Result<Vec<WebSession>, HostError> {
        Ok(self
            .store
            .web_sessions(tenant, user)
            .map_err(storage)?
            .into_iter()
            .map(session_from_row)
            .collect())
    }

    fn session(
        &self,
        tenant: &TenantId,
        user: &str,
        id: &str,
    ) -> Result<Option<WebSession>, HostError> {
        Ok(self
            .store
            .web_session(tenant, user, id)
            .map_err(storage)?
            .map(session_from_row))
    }

    fn touch_session(
        &self,
        session: &WebSession,
        now_ms: i64,
        title_if_empty: Option<&str>,
    ) -> Result<(), HostError> {
        self.store
            .web_session_touch(
                &session.tenant,
                &session.user,
                &session.id,
                now_ms,
                title_if_empty,
            )
            .map_err(storage)
    }

    fn history(
        &self,
        session: &WebSession,
        after_reply: i64,
        limit: usize,
    ) -> Result<Vec<HistoryItem>, HostError> {
        let users = self
            .store
            .chat_history(&session.tenant, &session.jid, limit)
            .map_err(storage)?;
        let replies = self
            .store
            .chat_replies_after(&session.tenant, &session.jid, after_reply, limit)
            .map_err(storage)?;
        let mut items: Vec<(i64, u8, HistoryItem)> = users
            .into_iter()
            .map(|m| {
                (
                    rfc3339_ms(&m.timestamp),
                    0,
                    HistoryItem::User {
                        seq: m.seq,
                        id: m.id,
                        text: m.content,
                        at: m.timestamp,
                    },
                )
            })
            .chain(replies.into_iter().map(|r| {
                (
                    rfc3339_ms(&r.created_at),
                    1,
                    HistoryItem::Assistant {
                        id: r.id,
                        text: r.text,
                        at: r.created_at,
                    },
                )
            }))
            .collect();
        items.sort_by_key(|(at, kind, _)| (*at, *kind));
        Ok(items.into_iter().map(|(_, _, item)| item).collect())
    }

    fn save_upload(
        &self,
        session: WebSession,
        name: String,
        bytes: Vec<u8>,
    ) -> BoxFuture<'_, Result<UploadInfo, HostError>> {
        let layout = self.layout.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let id = hex_id();
                let name = sanitize_upload_name(&name);
                let dir = layout
                    .uploads_dir(&session.tenant, &session.folder)
                    .join(&id);
                std::fs::create_dir_all(&dir).map_err(storage)?;
                // create_new refuses an existing file or symlink at the path.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(dir.join(&name))
                    .map_err(storage)?;
                file.write_all(&bytes).map_err(storage)?;
                Ok(UploadInfo {
                    sandbox_path: format!("/workspace/uploads/{id}/{name}"),
                    id,
                    name,
                    size: bytes.len() as u64,
                })
            })
            .await
            .map_err(|e| HostError::Storage(format!("upload task: {e}")))?
        })
    }
}

fn hex_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("correct horse", "not a hash"));
        let mut blocks = Vec::new();
        assert!(verify_password_with("correct horse", &phc, &mut blocks));
        assert!(!verify_password_with("wrong", &phc, &mut blocks));
        assert!(!verify_password_with(
            "correct horse",
            "not a hash",
            &mut blocks
        ));
        assert_eq!(blocks.len(), 19 * 1024);
        // Parameters come from the stored hash, not from the defaults.
        let params = argon2::Params::new(8192, 1, 2, None).unwrap_or_default();
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let custom = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"other password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(custom.contains("m=8192,t=1,p=2"), "{custom}");
        assert!(verify_password_with("other password", &custom, &mut blocks));
        assert!(!verify_password_with("correct horse", &custom, &mut blocks));
    }

    #[test]
    fn upload_names_are_sanitized() {
        assert_eq!(sanitize_upload_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_upload_name("..hidden"), "hidden");
        assert_eq!(sanitize_upload_name("a b$c.pdf"), "a_b_c.pdf");
        assert_eq!(sanitize_upload_name(""), "upload");
        assert_eq!(sanitize_upload_name("C:\\x\\y.txt"), "y.txt");
    }
}
