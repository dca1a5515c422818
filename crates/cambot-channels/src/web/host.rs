//! What the web channel needs from cambot beyond [`crate::ChannelHost`]: users and their
//! credentials, signing keys, refresh tokens, web sessions, chat history and uploads.
//!
//! cambot implements [`WebHost`] on its store; the channel never touches the database. Every
//! method that reads a session takes the caller's `(tenant, user)`, and implementations must
//! answer only with that user's rows: the owner check is part of the contract, not of the
//! caller.

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;

use crate::channel::BoxFuture;
use crate::error::HostError;

/// A signed-in (or token-identified) user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUser {
    pub tenant: TenantId,
    pub id: String,
    pub disabled: bool,
}

/// A JWT signing key (Ed25519): PKCS#8 private key and raw 32-byte public key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub tenant: TenantId,
    pub private_pkcs8: Vec<u8>,
    pub public_raw: Vec<u8>,
    pub created_ms: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Valid: the new token (whose hash was given) now replaces it.
    Rotated { tenant: TenantId, user: String },
    /// Presented after it was already rotated: the whole family is revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A web chat session: its own group (folder, chat jid), owned by one user of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub tenant: TenantId,
    pub user: String,
    pub id: String,
    pub folder: GroupFolder,
    pub jid: ChatJid,
    pub title: String,
    pub created_ms: i64,
    pub last_active_ms: i64,
}

/// One entry of a chat's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryItem {
    /// A message the user sent (`id` is the channel message id, `seq` the arrival order).
    User {
        seq: i64,
        id: String,
        text: String,
        at: String,
    },
    /// A reply; `id` is its outbox id, the resume point of a reconnecting client.
    Assistant { id: i64, text: String, at: String },
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: String,
    pub name: String,
    pub size: u64,
    /// Where the session's agent sees it.
    pub sandbox_path: String,
}

/// cambot's side of the web channel. See the module docs for the owner-check contract.
pub trait WebHost: Send + Sync {
    /// Checks a password. `None` for an unknown user, a wrong password or a disabled user (the
    /// caller cannot tell which). Slow on purpose (Argon2id); runs off the async threads.
    fn check_password(
        &self,
        tenant: TenantId,
        user: String,
        password: String,
    ) -> BoxFuture<'_, Result<Option<WebUser>, HostError>>;

    /// A user, if it exists (disabled users included, flagged).
    fn user(&self, tenant: &TenantId, user: &str) -> Result<Option<WebUser>, HostError>;

    /// A tenant's signing keys, newest first.
    fn signing_keys(&self, tenant: &TenantId) -> Result<Vec<StoredKey>, HostError>;

    /// One signing key by key id, whatever its tenant.
    fn signing_key(&self, kid: &str) -> Result<Option<StoredKey>, HostError>;

    /// Stores a new signing key.
    fn add_signing_key(&self, key: &StoredKey) -> Result<(), HostError>;

    /// Deletes a tenant's keys created before `before_ms`, except `keep`.
    fn retire_signing_keys(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        keep: &str,
    ) -> Result<(), HostError>;

    /// Stores the first refresh token of a new family (by hash).
    fn store_refresh(
        &self,
        hash: &str,
        family: &str,
        tenant: &TenantId,
        user: &str,
        expires_ms: i64,
    ) -> Result<(), HostError>;

    /// Presents a refresh token (by hash) and, when valid, stores its successor.
    fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> Result<Rotation, HostError>;

    /// Revokes the family of a refresh token (sign-out).
    fn revoke_refresh(&self, hash: &str) -> Result<(), HostError>;

    /// Records a new session.
    fn create_session(&self, session: &WebSession) -> Result<(), HostError>;

    /// The user's sessions, most recently active first.
    fn sessions(&self, tenant: &TenantId, user: &str) -> Result<Vec<WebSession>, HostError>;

    /// One session, only if it belongs to `(tenant, user)`.
    fn session(
        &self,
        tenant: &TenantId,
        user: &str,
        id: &str,
    ) -> Result<Option<WebSession>, HostError>;

    /// Marks the session active; names it after its first message.
    fn touch_session(
        &self,
        session: &WebSession,
        now_ms: i64,
        title_if_empty: Option<&str>,
    ) -> Result<(), HostError>;

    /// The newest `limit` user messages and every reply with outbox id above `after_reply`,
    /// merged in time order.
    fn history(
        &self,
        session: &WebSession,
        after_reply: i64,
        limit: usize,
    ) -> Result<Vec<HistoryItem>, HostError>;

    /// Stores an uploaded file in the session's upload area (never parsed on the host).
    fn save_upload(
        &self,
        session: WebSession,
        name: String,
        bytes: Vec<u8>,
    ) -> BoxFuture<'_, Result<UploadInfo, HostError>>;
}
