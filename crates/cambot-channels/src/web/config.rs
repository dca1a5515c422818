//! `[channels.web]` in the config file. Every key has a default; `cambot.example.toml` lists
//! them all.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;

use cambot_protocol::TenantId;
use serde::Deserialize;
use serde::Serialize;

/// The web chat channel's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the web chat. Default: false (it needs users: `cambot users add`).
    pub enabled: bool,
    /// Address to listen on. Default `127.0.0.1:8080` (port 0 picks a free port).
    pub listen: String,
    /// Tenant of a sign-in that names none. Default `default`.
    pub default_tenant: TenantId,
    /// `iss` of the access tokens cambot issues (and requires). Default `cambot`.
    pub issuer: String,
    /// `aud` of the access tokens. Default `cambot-web`.
    pub audience: String,
    /// Lifetime of an access token (seconds). Default 900.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (seconds); each use rotates it. Default 2 592 000 (30 days).
    pub refresh_token_ttl_secs: u64,
    /// Absolute lifetime of a refresh token family (seconds), from sign-in: rotation never
    /// extends a sign-in beyond it. Default 2 592 000 (30 days).
    pub refresh_family_ttl_secs: u64,
    /// A tenant's signing key is replaced after this long (seconds); the previous key keeps
    /// verifying until the tokens it signed have expired. Default 86 400.
    pub key_rotation_secs: u64,
    /// A session idle for less than this (seconds) resumes after a page refresh; older sessions
    /// are read-only history. Default 86 400 (24 h).
    pub session_ttl_secs: u64,
    /// Extra origins (`https://chat.example.com`) allowed to call the API with CORS and to open
    /// the WebSocket. The page's own origin is always allowed. Default: none.
    pub allowed_origins: Vec<String>,
    /// Mark the refresh cookie `Secure`. Default (unset): on unless `listen` is a loopback
    /// address (`127.0.0.0/8`, `::1`, `localhost`); set it to override either way.
    pub cookie_secure: Option<bool>,
    /// Messages one user may send per minute (all sessions together). Default 60.
    pub messages_per_minute: u32,
    /// API requests one user may make per minute. Default 600.
    pub requests_per_minute: u32,
    /// Sign-in attempts per minute for one user name. Default 10.
    pub sign_ins_per_minute: u32,
    /// Failed sign-ins per minute from one source address (an IPv6 client counts per /64).
    /// Default 30.
    pub sign_ins_per_address_per_minute: u32,
    /// Password checks one source address may have waiting or running at once; more are
    /// refused (429). Default 2.
    pub sign_ins_in_flight_per_address: usize,
    /// Threads checking passwords (each holds Argon2's 19 MiB). 0: one per core. Default 0.
    pub password_workers: usize,
    /// Password checks waiting for a thread; more are refused (503). Default 16.
    pub password_queue: usize,
    /// Reverse proxies (exact IP addresses) whose `X-Forwarded-For` names the client. A request
    /// from any other peer is attributed to the peer address. Default: none.
    pub trusted_proxies: Vec<IpAddr>,
    /// How often (seconds) open WebSockets are checked against users disabled by another
    /// process (`cambot users disable`); disabling through the daemon's own store closes them
    /// at once. Default 2.
    pub user_check_secs: u64,
    /// Largest JSON request body and WebSocket frame (bytes). Default 65 536.
    pub max_body_bytes: usize,
    /// Largest upload (bytes). Default 10 485 760.
    pub max_upload_bytes: usize,
    /// Longest chat message (characters). Default 16 000.
    pub max_message_chars: usize,
    /// Most open connections (HTTP and WebSocket). Default 4 096.
    pub max_connections: usize,
    /// Also accept access tokens from an external issuer (sites that already have sign-in).
    pub external: Option<ExternalIssuer>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8080".to_owned(),
            default_tenant: TenantId::default_tenant(),
            issuer: "cambot".to_owned(),
            audience: "cambot-web".to_owned(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 2_592_000,
            refresh_family_ttl_secs: 2_592_000,
            key_rotation_secs: 86_400,
            session_ttl_secs: 86_400,
            allowed_origins: Vec::new(),
            cookie_secure: None,
            messages_per_minute: 60,
            requests_per_minute: 600,
            sign_ins_per_minute: 10,
            sign_ins_per_address_per_minute: 30,
            sign_ins_in_flight_per_address: 2,
            password_workers: 0,
            password_queue: 16,
            trusted_proxies: Vec::new(),
            user_check_secs: 2,
            max_body_bytes: 65_536,
            max_upload_bytes: 10_485_760,
            max_message_chars: 16_000,
            max_connections: 4_096,
            external: None,
        }
    }
}

impl WebConfig {
    /// Whether the refresh cookie is `Secure`: as configured, else on unless the listener is
    /// loopback (a browser only sends a Secure cookie over HTTPS or to localhost, and anything
    /// reachable from elsewhere should be behind TLS).
    pub fn resolved_cookie_secure(&self) -> bool {
        self.cookie_secure
            .unwrap_or_else(|| !listen_is_loopback(&self.listen))
    }

    /// Checks the values that have no sensible reading when zero or out of range.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("access_token_ttl_secs", self.access_token_ttl_secs),
            ("refresh_token_ttl_secs", self.refresh_token_ttl_secs),
            ("refresh_family_ttl_secs", self.refresh_family_ttl_secs),
            ("user_check_secs", self.user_check_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("channels.web.{key} must be at least 1"));
            }
        }
        if self.sign_ins_in_flight_per_address == 0 {
            return Err("channels.web.sign_ins_in_flight_per_address must be at least 1".into());
        }
        Ok(())
    }
}

/// Is `listen` (`host:port`) a loopback address? A name other than `localhost` is not.
pub fn listen_is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().to_canonical().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

/// `[channels.web.external]`: an external identity provider's tokens. Exactly one of
/// `jwks_file` (RS256/ES256/EdDSA public keys, each with a `kid`) or `shared_secret_file`
/// (HS256) must be set. Tokens need `iss`, `aud`, `exp`, `iat` and `sub`; the tenant comes from
/// the `tid` claim, else `tenant`. A local user of that name that is disabled is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub shared_secret_file: Option<PathBuf>,
    /// Tenant of tokens without a `tid` claim. Default `default`.
    #[serde(default = "TenantId::default_tenant")]
    pub tenant: TenantId,
}
