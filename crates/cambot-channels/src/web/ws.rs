//! The WebSocket: streams a session's reply text as it is generated and accepts messages.
//!
//! The browser cannot set headers on a WebSocket, so the access token is the first frame
//! (`{"type":"auth","token":...}`), never a URL parameter. Frames are JSON; see `ui/app.js`
//! for the client side. A client that reconnects subscribes with the epoch and the last
//! sequence number it saw and gets what it missed (or `resync: true` to re-read the history).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::CloseFrame;
use axum::extract::ws::Message;
use axum::extract::ws::WebSocket;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast;

use crate::web::app::ApiError;
use crate::web::app::App;
use crate::web::app::Caller;
use crate::web::hub::StreamEvent;
use crate::web::security;
use crate::web::tokens::now_ms;
use crate::web::tokens::now_secs;

/// A socket must authenticate within this time.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Read and write buffer of each socket (grows as needed for larger frames).
const SOCKET_BUFFER_BYTES: usize = 8 * 1024;
/// Close code for an unauthenticated or expired socket.
const CLOSE_UNAUTHORIZED: u16 = 4401;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Auth {
        token: String,
    },
    Subscribe {
        session: String,
        #[serde(default)]
        epoch: Option<String>,
        #[serde(default)]
        after: u64,
    },
    Send {
        session: String,
        text: String,
        #[serde(default)]
        client_id: Option<String>,
        /// Ids returned by uploads to this session.
        #[serde(default)]
        attachments: Vec<String>,
    },
    Ping,
}

pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !security::origin_allowed(&headers, &app.config.allowed_origins) {
        tracing::warn!(origin = ?headers.get("origin"), "web: WebSocket from a foreign origin refused");
        return ApiError::Forbidden.into_response();
    }
    let Ok(permit) = Arc::clone(&app.connections).try_acquire_owned() else {
        return ApiError::Unavailable.into_response();
    };
    // Small buffers: a thousand idle sockets should not cost a thousand 128 KiB buffers.
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_message_size(app.config.max_body_bytes)
        .max_frame_size(app.config.max_body_bytes)
        .on_upgrade(move |socket| serve(app, socket, permit))
}

struct Subscribed {
    session: String,
    jid: ChatJid,
    live: broadcast::Receiver<Arc<StreamEvent>>,
    last_seq: u64,
}

/// When a token that expires at `exp` (seconds since the epoch) stops being valid, as an
/// instant of the runtime's clock.
fn expiry_instant(exp: u64) -> tokio::time::Instant {
    let exp_ms = i64::try_from(exp)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let left = u64::try_from(exp_ms.saturating_sub(now_ms())).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(left)
}

async fn serve(app: Arc<App>, mut socket: WebSocket, _permit: OwnedSemaphorePermit) {
    let mut caller: Option<Caller> = None;
    let mut sub: Option<Subscribed> = None;
    let mut revoked = app.revoked.subscribe();
    let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    // Reset at each `auth` to the token's expiry; unarmed until then.
    let expiry = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(expiry);
    loop {
        let live = async {
            match sub.as_mut() {
                Some(s) => Some(s.live.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = app.cancel.cancelled() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: "server shutting down".into() }))).await;
                return;
            }
            () = &mut auth_deadline, if caller.is_none() => {
                close(&mut socket, CLOSE_UNAUTHORIZED, "authenticate first").await;
                return;
            }
            () = &mut expiry, if caller.is_some() => {
                close(&mut socket, CLOSE_UNAUTHORIZED, "token expired").await;
                return;
            }
            notice = revoked.recv(), if caller.is_some() => {
                if let Some(who) = caller.as_ref()
                    && user_revoked(&app, who, notice).await
                {
                    close(&mut socket, CLOSE_UNAUTHORIZED, "user disabled").await;
                    return;
                }
            }
            event = live => {
                let Some(event) = event else { continue };
                // Never a push past the token's expiry, even if the timer has not fired yet.
                if caller.as_ref().is_some_and(|c| c.exp < now_secs()) {
                    close(&mut socket, CLOSE_UNAUTHORIZED, "token expired").await;
                    return;
                }
                if !forward_live(&app, &mut socket, &mut sub, event).await {
                    return;
                }
            }
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                let exp_before = caller.as_ref().map(|c| c.exp);
                let flow = handle_frame(&app, &mut socket, &mut caller, &mut sub, text.as_str()).await;
                if let Some(c) = caller.as_ref()
                    && exp_before != Some(c.exp)
                {
                    expiry.as_mut().reset(expiry_instant(c.exp));
                }
                match flow {
                    Flow::Continue => {}
                    Flow::Close(code, reason) => {
                        close(&mut socket, code, reason).await;
                        return;
                    }
                }
            }
        }
    }
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn send_json(socket: &mut WebSocket, value: &serde_json::Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

fn event_json(session: &str, event: &StreamEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("session".into(), session.into());
    }
    v
}

/// Sends a live event (skipping any already replayed); a lagging subscriber replays from the
/// buffer or is told to resync.
async fn forward_live(
    app: &App,
    socket: &mut WebSocket,
    sub: &mut Option<Subscribed>,
    event: Result<Arc<StreamEvent>, broadcast::error::RecvError>,
) -> bool {
    let Some(s) = sub.as_mut() else { return true };
    match event {
        Ok(e) => {
            if e.seq() <= s.last_seq {
                return true;
            }
            s.last_seq = e.seq();
            send_json(socket, &event_json(&s.session, &e)).await
        }
        Err(broadcast::error::RecvError::Lagged(_)) => match app.hub.replay(&s.jid, s.last_seq) {
            Some(events) => {
                for e in events {
                    s.last_seq = e.seq();
                    if !send_json(socket, &event_json(&s.session, &e)).await {
                        return false;
                    }
                }
                true
            }
            None => {
                let head = app.hub.subscribe(&s.jid, 0).head;
                s.last_seq = head;
                send_json(
                    socket,
                    &serde_json::json!({"type": "resync", "session": s.session, "epoch": app.epoch, "head": head}),
                )
                .await
            }
        },
        Err(broadcast::error::RecvError::Closed) => {
            *sub = None;
            true
        }
    }
}

fn error_json(e: &ApiError, client_id: Option<&str>) -> serde_json::Value {
    serde_json::json!({"type": "error", "code": e.code(), "message": e.message(), "client_id": client_id})
}

/// Does a disabled-user notice concern this socket's user? A socket that missed notices
/// (lagged) re-reads its user.
async fn user_revoked(
    app: &App,
    who: &Caller,
    notice: Result<Arc<(TenantId, String)>, broadcast::error::RecvError>,
) -> bool {
    match notice {
        Ok(n) => n.0 == who.tenant && n.1 == who.user,
        Err(broadcast::error::RecvError::Lagged(_)) => app
            .check_user(&who.tenant, &who.user, who.external)
            .await
            .is_err(),
        // The sender lives in `App`, which outlives every socket.
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

/// The caller may still act: token unexpired, user not disabled.
async fn still_valid(app: &App, caller: &Caller) -> Result<(), ApiError> {
    if caller.exp < now_secs() {
        return Err(ApiError::Unauthorized);
    }
    app.check_user(&caller.tenant, &caller.user, caller.external)
        .await
}

async fn handle_frame(
    app: &App,
    socket: &mut WebSocket,
    caller: &mut Option<Caller>,
    sub: &mut Option<Subscribed>,
    text: &str,
) -> Flow {
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        let e = ApiError::BadRequest("unreadable frame".into());
        return if send_json(socket, &error_json(&e, None)).await {
            Flow::Continue
        } else {
            Flow::Close(1011, "send failed")
        };
    };
    if let ClientFrame::Auth { token } = &frame {
        return match app.authenticate(token).await {
            Ok(c) => {
                if caller
                    .as_ref()
                    .is_some_and(|old| old.tenant != c.tenant || old.user != c.user)
                {
                    return Flow::Close(CLOSE_UNAUTHORIZED, "identity changed");
                }
                let reply = serde_json::json!({"type": "ready", "tenant": c.tenant.to_string(), "user": c.user, "epoch": app.epoch});
                *caller = Some(c);
                if send_json(socket, &reply).await {
                    Flow::Continue
                } else {
                    Flow::Close(1011, "send failed")
                }
            }
            Err(_) => Flow::Close(CLOSE_UNAUTHORIZED, "unauthorized"),
        };
    }
    let Some(who) = caller.as_ref() else {
        return Flow::Close(CLOSE_UNAUTHORIZED, "authenticate first");
    };
    if let Err(e) = still_valid(app, who).await {
        let _ = send_json(socket, &error_json(&e, None)).await;
        return Flow::Close(CLOSE_UNAUTHORIZED, "unauthorized");
    }
    if !app.requests.allow(&crate::web::app::user_key(who)) {
        let e = ApiError::RateLimited(app.requests.retry_after().as_secs());
        return if send_json(socket, &error_json(&e, None)).await {
            Flow::Continue
        } else {
            Flow::Close(1011, "send failed")
        };
    }
    let ok = match frame {
        ClientFrame::Auth { .. } => true,
        ClientFrame::Ping => send_json(socket, &serde_json::json!({"type": "pong"})).await,
        ClientFrame::Subscribe {
            session,
            epoch,
            after,
        } => subscribe(app, socket, who, sub, session, epoch, after).await,
        ClientFrame::Send {
            session,
            text,
            client_id,
            attachments,
        } => {
            let reply = match app
                .accept_message(who, &session, &text, client_id.as_deref(), &attachments)
                .await
            {
                Ok(()) => {
                    serde_json::json!({"type": "accepted", "session": session, "client_id": client_id})
                }
                Err(e) => error_json(&e, client_id.as_deref()),
            };
            send_json(socket, &reply).await
        }
    };
    if ok {
        Flow::Continue
    } else {
        Flow::Close(1011, "send failed")
    }
}

async fn subscribe(
    app: &App,
    socket: &mut WebSocket,
    caller: &Caller,
    sub: &mut Option<Subscribed>,
    session: String,
    epoch: Option<String>,
    after: u64,
) -> bool {
    let owned = match app.owned_session(caller, &session).await {
        Ok(s) => s,
        Err(e) => return send_json(socket, &error_json(&e, None)).await,
    };
    let after = if epoch.as_deref() == Some(app.epoch.as_str()) {
        after
    } else {
        0
    };
    let s = app.hub.subscribe(&owned.chat_jid, after);
    let head = s.head;
    let header = serde_json::json!({
        "type": "subscribed", "session": session, "epoch": app.epoch, "head": head,
        "resync": s.resync, "expired": app.is_expired(&owned),
    });
    if !send_json(socket, &header).await {
        return false;
    }
    let mut last_seq = if s.resync { head } else { after };
    for e in &s.replay {
        last_seq = e.seq();
        if !send_json(socket, &event_json(&session, e)).await {
            return false;
        }
    }
    *sub = Some(Subscribed {
        session,
        jid: owned.chat_jid,
        live: s.live,
        last_seq,
    });
    true
}
