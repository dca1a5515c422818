//! Shared state of the web channel, its error responses, the authenticated-caller extractor,
//! and the session rules every entry point (HTTP and WebSocket) goes through.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::response::Response;
use cambot_core::StoreError;
use cambot_core::TenantState;
use cambot_core::UserRow;
use cambot_core::UserStore;
use cambot_core::WebSessionRow;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelHost;
use crate::channel::GroupRegistrationRequest;
use crate::error::HostError;
use crate::web::config::WebConfig;
use crate::web::hub::Hub;
use crate::web::limits::InFlight;
use crate::web::limits::RateLimiter;
use crate::web::passwords::PasswordError;
use crate::web::passwords::PasswordPool;
use crate::web::tokens::Identity;
use crate::web::tokens::Tokens;
use crate::web::tokens::now_ms;
use crate::web::tokens::now_secs;
use crate::web::tokens::random_id;

/// A session's activity time is refreshed at most this often (ms).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Everything the handlers share.
pub(crate) struct App {
    pub(crate) host: Arc<dyn ChannelHost>,
    /// Users, keys, refresh tokens, sessions: every read made for a user is keyed by
    /// `(tenant, user)` in the store.
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) tokens: Tokens,
    pub(crate) config: WebConfig,
    pub(crate) hub: Hub,
    /// Random per process start: sequence numbers are only comparable within one epoch.
    pub(crate) epoch: String,
    pub(crate) requests: RateLimiter,
    pub(crate) messages: RateLimiter,
    /// Sign-in attempts per user name.
    pub(crate) sign_ins: RateLimiter,
    /// Failed sign-ins per source address ([`crate::web::limits::address_key`]).
    pub(crate) sign_in_addresses: RateLimiter,
    /// Password checks in flight per source address.
    pub(crate) sign_in_flight: InFlight,
    pub(crate) passwords: PasswordPool,
    /// `config.cookie_secure` resolved against the listen address.
    pub(crate) cookie_secure: bool,
    /// Users just disabled: their open WebSockets close.
    pub(crate) revoked: tokio::sync::broadcast::Sender<Arc<(TenantId, String)>>,
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
    pub(crate) assistant_name: String,
    pub(crate) cancel: CancellationToken,
}

/// An API error. The body names a code only; details go to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    Unauthorized,
    NotFound,
    BadRequest(String),
    /// An upload over a size or quota limit; the message says which.
    TooLarge(String),
    Forbidden,
    RateLimited(u64),
    /// The session is past its TTL: read-only history.
    Expired,
    Unavailable,
    Internal,
    /// The operator disabled the caller's tenant (`cambot tenants disable`).
    TenantDisabled,
}

impl ApiError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "too_large",
            Self::Forbidden => "forbidden",
            Self::RateLimited(_) => "rate_limited",
            Self::Expired => "expired",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::TenantDisabled => "tenant_disabled",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Expired => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TenantDisabled => StatusCode::FORBIDDEN,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::BadRequest(m) | Self::TooLarge(m) => m.clone(),
            Self::Expired => "this session has expired; its history is read-only".into(),
            Self::TenantDisabled => "this tenant is disabled; ask the operator to enable it".into(),
            other => other.code().replace('_', " "),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::NotFound => Self::NotFound,
            HostError::Forbidden => Self::NotFound,
            HostError::Invalid(m) => Self::BadRequest(m),
            HostError::TooLarge(m) => Self::TooLarge(m),
            // The message goes back to the browser as the request's error text.
            HostError::InvalidId(e) => Self::BadRequest(e.to_string()),
            HostError::ShuttingDown => Self::Unavailable,
            e @ HostError::Directory { .. } => Self::internal("storage failed", &e),
            HostError::Store(e) => Self::internal("storage failed", &*e),
            e @ HostError::Sealing(_) => Self::internal("key vault failed", &e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal("storage failed", &e)
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            // The queue is full: refused rather than queued, the client retries later.
            PasswordError::Busy => Self::Unavailable,
            other => Self::internal("password check failed", &other),
        }
    }
}

impl ApiError {
    /// Logs the cause (the client only sees `internal`).
    pub(crate) fn internal(what: &str, e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %e, "web: {what}");
        Self::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(serde_json::json!({"error": self.code(), "message": self.message()})),
        )
            .into_response();
        if let Self::RateLimited(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self == Self::Unavailable {
            // Busy (password threads, connections): worth retrying shortly.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self == Self::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) tenant: TenantId,
    pub(crate) user: String,
    pub(crate) exp: u64,
    /// Token from the configured external issuer.
    pub(crate) external: bool,
}

impl App {
    /// Verifies an access token and that its user may still act (exists locally unless the
    /// token is external, and is not disabled).
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let identity: Identity = self.tokens.verify(token).await.map_err(|e| {
            tracing::debug!(error = %e, "web: token refused");
            ApiError::Unauthorized
        })?;
        self.check_user(&identity.tenant, &identity.user, identity.external)
            .await?;
        Ok(Caller {
            tenant: identity.tenant,
            user: identity.user,
            exp: identity.exp,
            external: identity.external,
        })
    }

    /// A disabled user's tokens, and those of a disabled tenant, stop working at once: checked
    /// on every call. An external identity (`<iss>|<sub>`) is its issuer's to vouch for: it
    /// never reads a local user row, so a local user named like its `sub` neither lends it
    /// access nor locks it out; its tenant's state still counts.
    pub(crate) async fn check_user(
        &self,
        tenant: &TenantId,
        user: &str,
        external: bool,
    ) -> Result<(), ApiError> {
        self.check_tenant(tenant).await?;
        if external {
            return Ok(());
        }
        match self.users.user(tenant, user).await? {
            Some(u) if u.disabled => Err(ApiError::Unauthorized),
            Some(_) => Ok(()),
            None => Err(ApiError::Unauthorized),
        }
    }

    /// A disabled tenant accepts no sign-in and no token. A tenant without a row (data from
    /// before tenants were administered) is served as before.
    pub(crate) async fn check_tenant(&self, tenant: &TenantId) -> Result<(), ApiError> {
        match self.users.tenant(tenant).await? {
            Some(row) if row.state == TenantState::Disabled => {
                tracing::info!(tenant = %tenant, "web: refused: the tenant is disabled");
                Err(ApiError::TenantDisabled)
            }
            _ => Ok(()),
        }
    }

    /// Checks a password on a password thread. `None` for an unknown user, a wrong
    /// password or a disabled user (the caller cannot tell which).
    pub(crate) async fn check_password(
        &self,
        tenant: &TenantId,
        user: &str,
        password: String,
    ) -> Result<Option<UserRow>, ApiError> {
        let row = self.users.user(tenant, user).await?;
        let ok = self
            .passwords
            .check(password, row.as_ref().map(|r| r.password_hash.clone()))
            .await?;
        Ok(row.filter(|r| ok && !r.disabled))
    }

    /// The caller's session, or 404 for anything that is not theirs.
    pub(crate) async fn owned_session(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<WebSessionRow, ApiError> {
        if !valid_session_id(id) {
            return Err(ApiError::NotFound);
        }
        self.users
            .web_session(&caller.tenant, &caller.user, id)
            .await?
            .ok_or(ApiError::NotFound)
    }

    pub(crate) fn is_expired(&self, session: &WebSessionRow) -> bool {
        let ttl_ms = i64::try_from(self.config.session_ttl_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        now_ms().saturating_sub(session.last_active_ms) > ttl_ms
    }

    /// Creates a session: its own non-main group (folder, chat jid), no trigger needed.
    pub(crate) async fn create_session(&self, caller: &Caller) -> Result<WebSessionRow, ApiError> {
        if !self.messages.allow(&user_key(caller)) {
            return Err(ApiError::RateLimited(self.messages.retry_after().as_secs()));
        }
        let id = random_id();
        let jid = session_jid(&caller.tenant, &caller.user, &id).ok_or(ApiError::Internal)?;
        let folder = session_folder(&caller.tenant, &caller.user, &id).ok_or(ApiError::Internal)?;
        self.host
            .register_group(GroupRegistrationRequest {
                tenant: caller.tenant.clone(),
                jid: jid.clone(),
                name: format!("web {} {}", caller.user, &id[..8]),
                folder: folder.clone(),
                trigger: format!("@{}", self.assistant_name),
                requires_trigger: Some(false),
            })
            .await?;
        let now = now_ms();
        let session = WebSessionRow {
            tenant: caller.tenant.clone(),
            user_id: caller.user.clone(),
            id,
            folder,
            chat_jid: jid.clone(),
            title: String::new(),
            created_ms: now,
            last_active_ms: now,
        };
        self.users.insert_web_session(&session).await?;
        self.host
            .on_chat_metadata(ChatMetadata {
                tenant: caller.tenant.clone(),
                chat_jid: jid,
                timestamp: chrono::Utc::now().to_rfc3339(),
                name: Some(format!("web: {}", caller.user)),
                channel: Some("web".into()),
                is_group: Some(false),
            })
            .await?;
        Ok(session)
    }

    /// Accepts a chat message into one of the caller's sessions. The store deduplicates on
    /// `client_id`, so a client may resend after a dropped connection.
    pub(crate) async fn accept_message(
        &self,
        caller: &Caller,
        session_id: &str,
        text: &str,
        client_id: Option<&str>,
        attachments: &[String],
    ) -> Result<(), ApiError> {
        let session = self.owned_session(caller, session_id).await?;
        if self.is_expired(&session) {
            return Err(ApiError::Expired);
        }
        let text = text.trim();
        if text.is_empty() && attachments.is_empty() {
            return Err(ApiError::BadRequest("empty message".into()));
        }
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_ATTACHMENTS} attachments per message"
            )));
        }
        if text.chars().count() > self.config.max_message_chars {
            return Err(ApiError::BadRequest("message too long".into()));
        }
        if !self.messages.allow(&user_key(caller)) {
            return Err(ApiError::RateLimited(self.messages.retry_after().as_secs()));
        }
        let id = match client_id {
            Some(c) if valid_client_id(c) => format!("web-{c}"),
            Some(_) => return Err(ApiError::BadRequest("invalid client_id".into())),
            None => format!("web-{}", random_id()),
        };
        self.host
            .on_message(InboundMessage {
                tenant: session.tenant.clone(),
                chat_jid: session.chat_jid.clone(),
                id,
                sender: format!("web:{}", caller.user),
                sender_name: caller.user.clone(),
                content: text.to_owned(),
                timestamp: chrono::Utc::now().to_rfc3339(),
                is_from_me: false,
                is_bot_message: false,
                attachments: attachments.to_vec(),
            })
            .await?;
        // Activity only matters at TTL granularity (hours): touching at most once a minute
        // keeps a write off the path of every message.
        let now = now_ms();
        if session.title.is_empty() || now.saturating_sub(session.last_active_ms) > TOUCH_EVERY_MS {
            let title: String = text.chars().take(60).collect();
            self.users
                .touch_web_session(
                    &session.tenant,
                    &session.user_id,
                    &session.id,
                    now,
                    Some(&title),
                )
                .await?;
        }
        Ok(())
    }
}

/// Attachments one message may name.
const MAX_ATTACHMENTS: usize = 20;

pub(crate) fn user_key(caller: &Caller) -> String {
    format!("{}/{}", caller.tenant, caller.user)
}

/// Session ids are 32 lowercase hex characters.
pub(crate) fn valid_session_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `web:<tenant>:<user>:<session>`. Neither part can contain `:` (validated names); an
/// external user (`<iss>|<sub>`, where `iss` is often a URL) is `x|<hash>` there instead,
/// which no local name can be.
pub fn session_jid(tenant: &TenantId, user: &str, session: &str) -> Option<ChatJid> {
    if user.contains(crate::web::ISSUER_SEPARATOR) {
        let digest = hex::encode(sha2::Sha256::digest(user.as_bytes()));
        return ChatJid::new(&format!("web:{tenant}:x|{}:{session}", &digest[..32])).ok();
    }
    ChatJid::new(&format!("web:{tenant}:{user}:{session}")).ok()
}

/// `web-<32 hex>`, a hash of (tenant, user, session): one folder per session.
pub fn session_folder(tenant: &TenantId, user: &str, session: &str) -> Option<GroupFolder> {
    let mut h = sha2::Sha256::new();
    for part in [tenant.as_str(), user, session] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = hex::encode(h.finalize());
    GroupFolder::new(&format!("web-{}", &digest[..32])).ok()
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let caller = app.authenticate(token.trim()).await?;
        if caller.exp < now_secs() {
            return Err(ApiError::Unauthorized);
        }
        if !app.requests.allow(&user_key(&caller)) {
            return Err(ApiError::RateLimited(app.requests.retry_after().as_secs()));
        }
        Ok(caller)
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
