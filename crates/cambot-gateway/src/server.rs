//! One run's HTTP/1.1 server on its Unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::any;
use axum::routing::post;
use cambot_protocol::RUN_TOKEN_HEADER;
use cambot_protocol::ipc::FetchRequest;
use cambot_protocol::ipc::routes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::budget::RunBudget;
use crate::budget::RunMeter;
use crate::gateway::Gateway;
use crate::gateway::GatewayError;
use crate::ipc::HostToolError;
use crate::ipc::RunIdentity;
use crate::proxy::ModelCall;
use crate::response::error_response;

/// A run's live socket. Dropping it does not stop the server; call [`RunSocket::close`].
#[derive(Debug)]
pub struct RunSocket {
    path: PathBuf,
    token: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct RunState {
    gateway: Arc<Gateway>,
    who: Arc<RunIdentity>,
    token: Arc<str>,
    meter: Arc<RunMeter>,
}

impl RunSocket {
    /// Binds `path` (its directory must exist), owned by `owner` (uid, gid) when given so the
    /// sandbox user can connect, and serves the run's routes until [`RunSocket::close`]. The
    /// run's model `budget` starts now.
    pub fn bind(
        gateway: Arc<Gateway>,
        who: RunIdentity,
        path: &Path,
        owner: Option<(u32, u32)>,
        budget: RunBudget,
    ) -> Result<Self, GatewayError> {
        let socket_err = |source| GatewayError::Socket {
            path: path.to_owned(),
            source,
        };
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).map_err(socket_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_err)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(socket_err)?;
        }
        let token = new_token();
        let limits = gateway.policy.socket;
        let state = RunState {
            gateway,
            who: Arc::new(who),
            token: Arc::from(token.as_str()),
            meter: Arc::new(RunMeter::start(budget)),
        };
        let app = routes_for(state);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(crate::listener::serve(
            listener,
            app,
            limits,
            cancel.clone(),
        ));
        Ok(Self {
            path: path.to_owned(),
            token,
            cancel,
            task,
        })
    }

    /// The token the run must send in [`RUN_TOKEN_HEADER`].
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server (in-flight requests finish) and removes the socket file.
    pub async fn close(self) {
        self.cancel.cancel();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// 32 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn routes_for(state: RunState) -> Router {
    let policy = &state.gateway.policy;
    // Tool calls are small JSON; only model requests (whole transcripts) may be large.
    let model = Router::new()
        .route("/v1/model/{provider}/{*rest}", any(model))
        .layer(axum::extract::DefaultBodyLimit::max(policy.max_body_bytes));
    Router::new()
        .route(routes::SEND_MESSAGE, post(send_message))
        .route(routes::SCHEDULE_TASK, post(schedule_task))
        .route(routes::LIST_TASKS, post(list_tasks).get(list_tasks))
        .route(routes::PAUSE_TASK, post(pause_task))
        .route(routes::RESUME_TASK, post(resume_task))
        .route(routes::CANCEL_TASK, post(cancel_task))
        .route(routes::REGISTER_GROUP, post(register_group))
        .route(routes::LIST_GROUPS, post(list_groups).get(list_groups))
        .route(routes::RUN_WORKFLOW, post(run_workflow))
        .route(
            routes::LIST_WORKFLOWS,
            post(list_workflows).get(list_workflows),
        )
        .route(routes::FETCH, post(fetch))
        .layer(axum::extract::DefaultBodyLimit::max(
            policy.socket.max_ipc_body_bytes,
        ))
        .merge(model)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_token,
        ))
        .with_state(state)
}

fn ipc_error(state: &RunState, route: &str, e: &HostToolError) -> Response {
    let status = match e {
        HostToolError::BadRequest(_)
        | HostToolError::MalformedBody(_)
        | HostToolError::InvalidId(_)
        | HostToolError::InvalidSchedule(_)
        | HostToolError::Unresumable(_)
        | HostToolError::Fetch(_) => StatusCode::BAD_REQUEST,
        HostToolError::Forbidden(_) => StatusCode::FORBIDDEN,
        HostToolError::NotFound(_) => StatusCode::NOT_FOUND,
        HostToolError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        HostToolError::Store(_) | HostToolError::GroupDir { .. } | HostToolError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    tracing::warn!(
        run = %state.who.run_id,
        tenant = %state.who.tenant,
        group = %state.who.folder,
        route,
        status = status.as_u16(),
        error = %e,
        "host tool call refused"
    );
    let mut resp = error_response(status, e.kind(), &e.to_string());
    if let HostToolError::RateLimited { retry_after_secs } = e
        && let Ok(v) = retry_after_secs.to_string().parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// Decodes a host-tool request body; an empty body is `{}`. Public (hidden) for the fuzz
/// targets under `fuzz/`.
#[doc(hidden)]
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, HostToolError> {
    let raw: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(raw).map_err(HostToolError::MalformedBody)
}

fn ok<T: Serialize>(value: T) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

async fn check_token(
    State(state): State<RunState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(RUN_TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(given, state.token.as_bytes()) {
        state
            .gateway
            .stats
            .bad_token
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(run = %state.who.run_id, path = %req.uri().path(), "request without the run's token refused");
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong run token",
        );
    }
    next.run(req).await
}

async fn not_found(State(state): State<RunState>, req: axum::extract::Request) -> Response {
    tracing::warn!(run = %state.who.run_id, path = %req.uri().path(), "unknown host route");
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route {}", req.uri().path()),
    )
}

async fn send_message(State(state): State<RunState>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, routes::SEND_MESSAGE, &e),
    };
    match state.gateway.ipc.send_message(&state.who, req).await {
        Ok(id) => ok(serde_json::json!({ "ok": true, "delivery_id": id })),
        Err(e) => ipc_error(&state, routes::SEND_MESSAGE, &e),
    }
}

async fn schedule_task(State(state): State<RunState>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, routes::SCHEDULE_TASK, &e),
    };
    match state
        .gateway
        .ipc
        .schedule_task(&state.who, req, chrono::Utc::now())
        .await
    {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::SCHEDULE_TASK, &e),
    }
}

async fn list_tasks(State(state): State<RunState>) -> Response {
    match state.gateway.ipc.list_tasks(&state.who).await {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::LIST_TASKS, &e),
    }
}

async fn run_workflow(State(state): State<RunState>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, routes::RUN_WORKFLOW, &e),
    };
    match state.gateway.ipc.run_workflow(&state.who, req).await {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::RUN_WORKFLOW, &e),
    }
}

async fn list_workflows(State(state): State<RunState>) -> Response {
    match state.gateway.ipc.list_workflows(&state.who).await {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::LIST_WORKFLOWS, &e),
    }
}

async fn task_action(state: RunState, route: &'static str, body: Bytes) -> Response {
    let req = match parse::<cambot_protocol::ipc::TaskIdRequest>(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, route, &e),
    };
    let ipc = &state.gateway.ipc;
    let result = match route {
        routes::PAUSE_TASK => ipc.pause_task(&state.who, &req).await,
        routes::RESUME_TASK => ipc.resume_task(&state.who, &req, chrono::Utc::now()).await,
        _ => ipc.cancel_task(&state.who, &req).await,
    };
    match result {
        Ok(()) => ok(cambot_protocol::ipc::Ok { ok: true }),
        Err(e) => ipc_error(&state, route, &e),
    }
}

async fn pause_task(State(state): State<RunState>, body: Bytes) -> Response {
    task_action(state, routes::PAUSE_TASK, body).await
}

async fn resume_task(State(state): State<RunState>, body: Bytes) -> Response {
    task_action(state, routes::RESUME_TASK, body).await
}

async fn cancel_task(State(state): State<RunState>, body: Bytes) -> Response {
    task_action(state, routes::CANCEL_TASK, body).await
}

async fn register_group(State(state): State<RunState>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, routes::REGISTER_GROUP, &e),
    };
    match state.gateway.ipc.register_group(&state.who, req).await {
        Ok(g) => ok(serde_json::json!({ "ok": true, "jid": g.jid, "folder": g.folder })),
        Err(e) => ipc_error(&state, routes::REGISTER_GROUP, &e),
    }
}

async fn list_groups(State(state): State<RunState>) -> Response {
    match state.gateway.ipc.list_groups(&state.who).await {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::LIST_GROUPS, &e),
    }
}

async fn fetch(State(state): State<RunState>, body: Bytes) -> Response {
    let req: FetchRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return ipc_error(&state, routes::FETCH, &e),
    };
    match state.gateway.fetch(&state.who.tenant, &req.url).await {
        Ok(r) => ok(r),
        Err(e) => ipc_error(&state, routes::FETCH, &e.into()),
    }
}

async fn model(
    State(state): State<RunState>,
    uri: Uri,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The raw path, not the decoded one: the proxy refuses every spelling but the plain one.
    state
        .gateway
        .proxy_model(ModelCall {
            run: state.who.run_id.as_str(),
            tenant: &state.who.tenant,
            path: uri.path(),
            query: query.as_deref(),
            method,
            headers: &headers,
            body,
            meter: &state.meter,
            allowed_provider: state.who.model_provider.as_deref(),
        })
        .await
}
