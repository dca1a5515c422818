//! The HTTP API: sign-in and token refresh, sessions, history, messages, uploads, and the
//! embedded page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use cambot_core::RefreshRotation;
use cambot_core::RefreshTokenRow;
use cambot_core::WebSessionRow;
use cambot_protocol::Attachment;
use cambot_protocol::TenantId;
use serde::Deserialize;
use serde::Serialize;

use crate::web::app::ApiError;
use crate::web::app::App;
use crate::web::app::Caller;
use crate::web::history;
use crate::web::limits::address_key;
use crate::web::limits::client_ip;
use crate::web::security;
use crate::web::tokens::hash_refresh_token;
use crate::web::tokens::new_refresh_token;
use crate::web::tokens::now_ms;
use crate::web::tokens::random_id;
use crate::web::tokens::valid_user_name;

/// Name of the refresh-token cookie (scoped to the auth endpoints).
pub const REFRESH_COOKIE: &str = "cambot_refresh";
/// Most history entries one call returns.
const HISTORY_LIMIT: usize = 1000;

pub(crate) fn routes(app: Arc<App>) -> Router {
    let body_limit = app.config.max_body_bytes;
    let upload_limit = app.config.max_upload_bytes;
    let api = Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/sessions", get(list_sessions).post(new_session))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/history", get(history))
        .route("/api/sessions/{id}/messages", post(send_message))
        .layer(DefaultBodyLimit::max(body_limit));
    let uploads = Router::new()
        .route("/api/sessions/{id}/uploads", post(upload))
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/ws", get(crate::web::ws::upgrade))
        .merge(api)
        .merge(uploads)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            security::middleware,
        ))
        .with_state(app)
}

async fn index() -> Response {
    static_file(include_str!("ui/index.html"), "text/html; charset=utf-8")
}

async fn script() -> Response {
    static_file(include_str!("ui/app.js"), "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    static_file(include_str!("ui/app.css"), "text/css; charset=utf-8")
}

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    #[serde(default)]
    tenant: Option<String>,
    user: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_at: u64,
    tenant: String,
    user: String,
}

/// Sign-in. Throttled per source address (failed attempts; at most a few password checks in
/// flight) and per user name (every attempt), before any password work is done.
async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let tenant = match body.tenant.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => TenantId::new(t).map_err(|_| ApiError::Unauthorized)?,
        None => app.config.default_tenant.clone(),
    };
    if !valid_user_name(&body.user) || body.password.len() > 1024 {
        return Err(ApiError::Unauthorized);
    }
    let address = address_key(client_ip(peer, &headers, &app.config.trusted_proxies));
    if !app.sign_in_addresses.allow(&address) {
        tracing::warn!(address = %address, "web: sign-ins from this address throttled");
        return Err(ApiError::RateLimited(
            app.sign_in_addresses.retry_after().as_secs(),
        ));
    }
    if !app.sign_ins.allow(&format!("{tenant}/{}", body.user)) {
        return Err(ApiError::RateLimited(app.sign_ins.retry_after().as_secs()));
    }
    let Some(_slot) = app.sign_in_flight.try_enter(&address) else {
        return Err(ApiError::RateLimited(1));
    };
    let user = app
        .check_password(&tenant, &body.user, body.password)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    // Only failures count against the address: a shared address (NAT) keeps signing in.
    app.sign_in_addresses.refund(&address);
    // After the password check: only someone who holds the password learns the tenant's state.
    app.check_tenant(&user.tenant).await?;
    let refresh = new_refresh_token();
    let now = now_ms();
    let family_end = now.saturating_add(secs_to_ms(app.config.refresh_family_ttl_secs));
    let expires_ms = refresh_expiry(&app).min(family_end);
    app.users
        .insert_refresh(&RefreshTokenRow {
            hash: hash_refresh_token(&refresh),
            family: random_id(),
            tenant: user.tenant.clone(),
            user_id: user.id.clone(),
            expires_ms,
            family_created_ms: now,
        })
        .await?;
    tracing::info!(tenant = %user.tenant, user = %user.id, "web: signed in");
    token_response(&app, &user.tenant, &user.id, &refresh, expires_ms).await
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

fn refresh_expiry(app: &App) -> i64 {
    now_ms().saturating_add(secs_to_ms(app.config.refresh_token_ttl_secs))
}

async fn token_response(
    app: &App,
    tenant: &TenantId,
    user: &str,
    refresh: &str,
    refresh_expires_ms: i64,
) -> Result<Response, ApiError> {
    let (access_token, expires_at) = app
        .tokens
        .issue(tenant, user)
        .await
        .map_err(|e| ApiError::internal("issuing a token failed", &e))?;
    let mut response = Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_at,
        tenant: tenant.to_string(),
        user: user.to_owned(),
    })
    .into_response();
    let max_age = u64::try_from(refresh_expires_ms.saturating_sub(now_ms()) / 1000).unwrap_or(0);
    set_cookie(&mut response, &refresh_cookie(app, refresh, max_age));
    Ok(response)
}

fn refresh_cookie(app: &App, value: &str, max_age: u64) -> String {
    let secure = if app.cookie_secure { "; Secure" } else { "" };
    format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/api/auth; Max-Age={max_age}{secure}"
    )
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Cookie-authenticated calls must come from the page's own origin (or a configured one), on
/// top of the cookie being `SameSite=Strict`.
fn check_cookie_origin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if security::origin_allowed(headers, &app.config.allowed_origins) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn unauthorized_clearing_cookie(app: &App) -> Response {
    let mut response = ApiError::Unauthorized.into_response();
    set_cookie(&mut response, &refresh_cookie(app, "", 0));
    response
}

async fn refresh(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_cookie_origin(&app, &headers)?;
    let Some(old) = cookie_value(&headers, REFRESH_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(unauthorized_clearing_cookie(&app));
    };
    let new = new_refresh_token();
    let rotation = app
        .users
        .rotate_refresh(
            &hash_refresh_token(&old),
            &hash_refresh_token(&new),
            refresh_expiry(&app),
            secs_to_ms(app.config.refresh_family_ttl_secs),
            now_ms(),
        )
        .await?;
    match rotation {
        RefreshRotation::Rotated {
            tenant,
            user_id,
            expires_ms,
        } => {
            // A disabled (or deleted) user's refresh fails, and the new token dies with it; so
            // does a disabled tenant's (its users sign in again once it is enabled).
            if let Err(e) = app.check_user(&tenant, &user_id, false).await {
                app.users
                    .revoke_refresh_family(&hash_refresh_token(&new))
                    .await?;
                if e == ApiError::TenantDisabled {
                    let mut response = e.into_response();
                    set_cookie(&mut response, &refresh_cookie(&app, "", 0));
                    return Ok(response);
                }
                return Ok(unauthorized_clearing_cookie(&app));
            }
            token_response(&app, &tenant, &user_id, &new, expires_ms).await
        }
        RefreshRotation::Reused => {
            tracing::warn!(
                "web: a rotated refresh token was presented again; its family is revoked"
            );
            Ok(unauthorized_clearing_cookie(&app))
        }
        RefreshRotation::Invalid => Ok(unauthorized_clearing_cookie(&app)),
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_cookie_origin(&app, &headers)?;
    if let Some(token) = cookie_value(&headers, REFRESH_COOKIE).filter(|v| !v.is_empty()) {
        app.users
            .revoke_refresh_family(&hash_refresh_token(&token))
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &refresh_cookie(&app, "", 0));
    Ok(response)
}

async fn me(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({"tenant": caller.tenant.to_string(), "user": caller.user}))
}

#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) created_ms: i64,
    pub(crate) last_active_ms: i64,
    /// Past the TTL: history only.
    pub(crate) expired: bool,
}

fn view(app: &App, s: &WebSessionRow) -> SessionView {
    SessionView {
        id: s.id.clone(),
        title: s.title.clone(),
        created_ms: s.created_ms,
        last_active_ms: s.last_active_ms,
        expired: app.is_expired(s),
    }
}

async fn list_sessions(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = app.users.web_sessions(&caller.tenant, &caller.user).await?;
    Ok(Json(sessions.iter().map(|s| view(&app, s)).collect()))
}

async fn new_session(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let session = app.create_session(&caller).await?;
    Ok((StatusCode::CREATED, Json(view(&app, &session))))
}

async fn get_session(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let session = app.owned_session(&caller, &id).await?;
    Ok(Json(view(&app, &session)))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    after_reply: i64,
}

async fn history(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = app.owned_session(&caller, &id).await?;
    // Both reads are keyed by the session's own tenant and chat, found above for this caller.
    let messages = app
        .users
        .chat_history(&session.tenant, &session.chat_jid, HISTORY_LIMIT)
        .await?;
    let replies = app
        .users
        .chat_replies_after(
            &session.tenant,
            &session.chat_jid,
            q.after_reply,
            HISTORY_LIMIT,
        )
        .await?;
    let items = history::merge(messages, replies);
    Ok(Json(serde_json::json!({
        "session": view(&app, &session),
        "items": items,
    })))
}

#[derive(Debug, Deserialize)]
struct SendBody {
    text: String,
    #[serde(default)]
    client_id: Option<String>,
    /// Ids returned by uploads to this session.
    #[serde(default)]
    attachments: Vec<String>,
}

async fn send_message(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SendBody>,
) -> Result<StatusCode, ApiError> {
    app.accept_message(
        &caller,
        &id,
        &body.text,
        body.client_id.as_deref(),
        &body.attachments,
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: String,
}

async fn upload(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let session = app.owned_session(&caller, &id).await?;
    if app.is_expired(&session) {
        return Err(ApiError::Expired);
    }
    if !app.messages.allow(&crate::web::app::user_key(&caller)) {
        return Err(ApiError::RateLimited(app.messages.retry_after().as_secs()));
    }
    if body.is_empty() {
        return Err(ApiError::BadRequest("empty upload".into()));
    }
    // The declared type is the request's Content-Type, unless it is the generic default.
    let declared_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.starts_with("application/octet-stream") && !t.is_empty())
        .map(str::to_owned);
    let stored = app
        .host
        .store_attachment(
            &session.tenant,
            &session.chat_jid,
            Attachment {
                name: q.name,
                declared_type,
                bytes: body.to_vec(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": stored.id, "name": stored.original_name, "size": stored.size,
            "path": stored.sandbox_path, "type": stored.sniffed_type, "document": stored.document,
        })),
    ))
}
