//! The web chat channel: an HTTP API and a WebSocket (axum) plus an embedded single-page UI.
//!
//! - Users belong to a tenant and sign in with a password (Argon2id, checked on a small pool of
//!   dedicated threads, see [`passwords`]); sign-in is throttled per user name and per source
//!   address; it returns a short-lived EdDSA access JWT and sets a rotating refresh token in an
//!   HttpOnly, SameSite=Strict cookie (see [`tokens`]) whose family has an absolute lifetime.
//! - A WebSocket closes when its access token expires or its user is disabled (see `revoke`).
//! - Users, signing keys, refresh tokens and sessions live in cambot's store, reached through
//!   [`cambot_core::UserStore`] ([`crate::ChannelHost::users`]); uploads are handed to cambot
//!   ([`crate::ChannelHost::store_attachment`]), which stores them in the session's group.
//! - Each web session is its own group: chat jid `web:<tenant>:<user>:<session>`, folder
//!   `web-<hash>`, non-main, no trigger. Every call looks the session up by
//!   `(tenant, user, id)`, so another user's session is simply not found (404).
//! - Replies stream over the WebSocket as numbered deltas; a reconnecting client replays what
//!   it missed (see [`hub`]).
//! - The page is static HTML/JS/CSS compiled into the binary, served under a CSP that allows no
//!   inline script and no framing.

mod api;
mod app;
pub mod config;
mod external;
mod history;
pub mod hub;
mod limits;
pub mod passwords;
mod revoke;
mod security;
pub mod tokens;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::REFRESH_COOKIE;
pub use app::session_folder;
pub use app::session_jid;
pub use config::ExternalIssuer;
pub use config::IssuerConfig;
pub use config::SharedSecret;
pub use config::WebConfig;
pub use external::ISSUER_SEPARATOR;
pub use security::CSP;

use crate::channel::BoxFuture;
use crate::channel::Channel;
use crate::channel::ChannelOpts;
use crate::channel::Outbound;
use crate::error::ChannelError;
use crate::locks;
use crate::web::app::App;

const NAME: &str = "web";
const JID_PREFIX: &str = "web:";
/// Disabled-user notices queued per open socket (a socket that falls behind re-checks its user).
const REVOKED_CAPACITY: usize = 64;

/// The web chat channel.
pub struct WebChannel {
    app: Arc<App>,
    connected: AtomicBool,
    local_addr: Mutex<Option<SocketAddr>>,
    server: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for WebChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChannel")
            .field("listen", &self.app.config.listen)
            .finish_non_exhaustive()
    }
}

impl WebChannel {
    /// Builds the channel. cambot must provide its user store ([`crate::ChannelHost::users`])
    /// and key sealer ([`crate::ChannelHost::key_sealer`]).
    pub fn new(opts: ChannelOpts, config: &WebConfig) -> Result<Self, ChannelError> {
        let missing = |what: &str| {
            ChannelError::Config(format!(
                "the web channel needs cambot's {what}, which this host does not provide"
            ))
        };
        let users = opts.host.users().ok_or_else(|| missing("user store"))?;
        let sealer = opts
            .host
            .key_sealer()
            .ok_or_else(|| missing("key vault (to seal token signing keys)"))?;
        config.validate().map_err(ChannelError::Config)?;
        let tokens = tokens::Tokens::new(Arc::clone(&users), sealer, config)?;
        let passwords =
            passwords::PasswordPool::new(config.password_workers, config.password_queue)
                .map_err(|e| ChannelError::Config(format!("web: {e}")))?;
        let app = App {
            host: opts.host,
            users,
            tokens,
            config: config.clone(),
            hub: hub::Hub::new(),
            epoch: tokens::random_id(),
            requests: limits::RateLimiter::new(config.requests_per_minute),
            messages: limits::RateLimiter::new(config.messages_per_minute),
            sign_ins: limits::RateLimiter::new(config.sign_ins_per_minute),
            sign_in_addresses: limits::RateLimiter::new(config.sign_ins_per_address_per_minute),
            sign_in_flight: limits::InFlight::new(config.sign_ins_in_flight_per_address),
            passwords,
            cookie_secure: config.resolved_cookie_secure(),
            revoked: tokio::sync::broadcast::channel(REVOKED_CAPACITY).0,
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
            assistant_name: opts.assistant_name,
            cancel: CancellationToken::new(),
        };
        Ok(Self {
            app: Arc::new(app),
            connected: AtomicBool::new(false),
            local_addr: Mutex::new(None),
            server: Mutex::new(None),
            watcher: Mutex::new(None),
        })
    }

    /// Whether the refresh cookie is marked `Secure` (configured, or resolved from `listen`).
    pub fn cookie_secure(&self) -> bool {
        self.app.cookie_secure
    }

    /// The address the server listens on (after `connect`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *locks::lock("web local address", &self.local_addr)
    }

    /// The access-token issuer (tests and tools issue and inspect tokens through it).
    pub fn tokens(&self) -> &tokens::Tokens {
        &self.app.tokens
    }

    /// Reply streams currently held in memory (one per active session).
    pub fn streams_in_memory(&self) -> usize {
        self.app.hub.len()
    }

    fn io(e: std::io::Error) -> ChannelError {
        ChannelError::Io {
            channel: NAME.into(),
            source: e,
        }
    }
}

impl Channel for WebChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(&self.app.config.listen)
                .await
                .map_err(Self::io)?;
            let addr = listener.local_addr().map_err(Self::io)?;
            let router = api::routes(Arc::clone(&self.app));
            let cancel = self.app.cancel.clone();
            let handle = tokio::spawn(async move {
                // The peer address is what sign-in throttling counts against.
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                let served = axum::serve(listener, service)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "web: server failed");
                }
            });
            *locks::lock("web server task", &self.server) = Some(handle);
            let watcher = tokio::spawn(revoke::watch_users(Arc::clone(&self.app)));
            *locks::lock("web user watcher", &self.watcher) = Some(watcher);
            *locks::lock("web local address", &self.local_addr) = Some(addr);
            self.connected.store(true, Ordering::SeqCst);
            tracing::info!(address = %addr, "web chat listening on http://{addr}/");
            Ok(())
        })
    }

    fn send_message<'a>(
        &'a self,
        message: Outbound<'a>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let result = if self.owns_jid(message.tenant, message.chat_jid) {
            // The reply is already durable (it is the session's history); this only pushes it
            // to the sockets watching the session.
            self.app
                .hub
                .publish_reply(message.chat_jid, message.delivery_id, message.text);
            Ok(())
        } else {
            Err(ChannelError::Delivery {
                channel: NAME.into(),
                jid: message.chat_jid.to_string(),
                reason: format!("not a web chat of tenant {}", message.tenant),
            })
        };
        Box::pin(async move { result })
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// A web jid names its tenant (`web:<tenant>:...`, see [`session_jid`]): the jid alone
    /// would let a reply committed for another tenant reach this tenant's session.
    fn owns_jid(&self, tenant: &TenantId, jid: &ChatJid) -> bool {
        jid.as_str()
            .strip_prefix(JID_PREFIX)
            .and_then(|rest| rest.strip_prefix(tenant.as_str()))
            .is_some_and(|rest| rest.starts_with(':'))
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            self.app.cancel.cancel();
            let watcher = locks::lock("web user watcher", &self.watcher).take();
            if let Some(watcher) = watcher {
                // It stops on the cancellation above; awaiting it only reaps the task.
                if let Err(e) = watcher.await {
                    tracing::warn!(error = %e, "web: user watcher failed");
                }
            }
            let handle = locks::lock("web server task", &self.server).take();
            if let Some(handle) = handle
                && tokio::time::timeout(std::time::Duration::from_secs(5), handle)
                    .await
                    .is_err()
            {
                tracing::warn!("web: server did not stop in time");
            }
            self.connected.store(false, Ordering::SeqCst);
            Ok(())
        })
    }

    fn stream_delta<'a>(
        &'a self,
        tenant: &'a TenantId,
        jid: &'a ChatJid,
        text: &'a str,
    ) -> BoxFuture<'a, ()> {
        if self.owns_jid(tenant, jid) {
            self.app.hub.publish_delta(jid, text);
        }
        Box::pin(async {})
    }
}
