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
    /// Largest upload request body (bytes), checked before cambot's own `[uploads]` limits
    /// (which give the sender a precise message). Default 27 262 976 (26 MiB).
    pub max_upload_bytes: usize,
    /// Longest chat message (characters). Default 16 000.
    pub max_message_chars: usize,
    /// Most open connections (HTTP and WebSocket). Default 4 096.
    pub max_connections: usize,
    /// Deprecated: one external issuer. Read as an entry of `issuers` (with a warning).
    pub external: Option<ExternalIssuer>,
    /// External identity providers whose access tokens are accepted, each for one tenant
    /// (`[[channels.web.issuers]]`). Default: none.
    pub issuers: Vec<IssuerConfig>,
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
            max_upload_bytes: 27_262_976,
            max_message_chars: 16_000,
            max_connections: 4_096,
            external: None,
            issuers: Vec::new(),
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
        let issuers = self.all_issuers();
        for (i, entry) in issuers.iter().enumerate() {
            entry
                .validate(&self.issuer)
                .map_err(|m| format!("channels.web.issuers[{i}] ({:?}): {m}", entry.issuer))?;
            if issuers[..i].iter().any(|e| e.issuer == entry.issuer) {
                return Err(format!(
                    "channels.web.issuers[{i}]: issuer {:?} is configured twice (one issuer \
                     serves one tenant)",
                    entry.issuer
                ));
            }
        }
        Ok(())
    }

    /// `issuers`, then the deprecated `external` read as one more entry.
    pub fn all_issuers(&self) -> Vec<IssuerConfig> {
        let mut all = self.issuers.clone();
        all.extend(self.external.as_ref().map(ExternalIssuer::to_issuer));
        all
    }

    /// Deprecations to show at start.
    pub fn warnings(&self) -> Vec<String> {
        self.external
            .as_ref()
            .map(|e| {
                format!(
                    "[channels.web.external] is deprecated: it is read as a \
                     [[channels.web.issuers]] entry for tenant {:?}, and the `tid` claim no \
                     longer chooses the tenant; move it to [[channels.web.issuers]]",
                    e.tenant.as_str()
                )
            })
            .into_iter()
            .collect()
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

/// Deprecated `[channels.web.external]`: one external issuer, read as an `issuers` entry for
/// `tenant` (its `tid` claim is ignored, as for every external token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub shared_secret_file: Option<PathBuf>,
    /// Tenant of the issuer's users. Default `default`.
    #[serde(default = "TenantId::default_tenant")]
    pub tenant: TenantId,
}

impl ExternalIssuer {
    fn to_issuer(&self) -> IssuerConfig {
        IssuerConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            tenant: self.tenant.clone(),
            jwks_url: None,
            jwks_file: self.jwks_file.clone(),
            key_file: None,
            shared_secret_file: self.shared_secret_file.clone(),
            secret: None,
            resolved_secret: None,
            // What `external` always accepted.
            algorithms: if self.shared_secret_file.is_some() {
                vec![jsonwebtoken::Algorithm::HS256]
            } else {
                vec![
                    jsonwebtoken::Algorithm::RS256,
                    jsonwebtoken::Algorithm::ES256,
                    jsonwebtoken::Algorithm::EdDSA,
                ]
            },
            jwks_min_refresh_secs: default_jwks_min_refresh_secs(),
            jwks_max_age_secs: default_jwks_max_age_secs(),
        }
    }
}

/// `[[channels.web.issuers]]`: an external identity provider whose access tokens are accepted
/// for one tenant. The tenant is the entry's, chosen by which issuer's key verified the token;
/// a `tid` claim is ignored. Tokens need `iss`, `aud`, `exp`, `iat` and `sub`; the user is
/// `<issuer>|<sub>`, which no local user name can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of the tokens (no `|`). One entry per issuer.
    pub issuer: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// The tenant of this issuer's users; it must exist when the daemon starts.
    pub tenant: TenantId,
    /// Keys from the issuer's JWKS endpoint (https, or http to a loopback address), fetched
    /// on first use, again when a token names an unknown `kid` (at most every
    /// `jwks_min_refresh_secs`) and when the copy is `jwks_max_age_secs` old.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Keys from a JWKS file read at start.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// One PEM public key (RSA or EC P-256/P-384, `BEGIN PUBLIC KEY`) read at start.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A shared HS256/HS384/HS512 secret (at least 32 bytes) read at start.
    #[serde(default)]
    pub shared_secret_file: Option<PathBuf>,
    /// `"secret:NAME"`: a shared HS256/HS384/HS512 secret (at least 32 bytes) kept in the vault
    /// of this issuer's tenant, looked up by the daemon at start ([`IssuerConfig::resolved_secret`]).
    #[serde(default)]
    pub secret: Option<String>,
    /// The value `secret` names, filled in by the daemon before the channel is built (never
    /// read from or written to the file).
    #[serde(skip)]
    pub resolved_secret: Option<SharedSecret>,
    /// Accepted `alg` values. Default `["RS256", "ES256"]` (`["HS256"]` with a shared secret).
    #[serde(default)]
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Least time between two JWKS fetches caused by unknown `kid`s (seconds). Default 60.
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// A fetched JWKS is fetched again once this old (seconds). Default 3600.
    #[serde(default = "default_jwks_max_age_secs")]
    pub jwks_max_age_secs: u64,
}

fn default_jwks_min_refresh_secs() -> u64 {
    60
}

fn default_jwks_max_age_secs() -> u64 {
    3600
}

/// A shared signing secret looked up for an issuer. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Vec<u8>);

impl SharedSecret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// Longest `issuer` accepted (it is part of every external user name).
const MAX_ISSUER_LEN: usize = 256;

impl IssuerConfig {
    /// The accepted algorithms, defaults applied.
    pub fn accepted_algorithms(&self) -> Vec<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm;
        match (self.algorithms.is_empty(), self.uses_shared_secret()) {
            (false, _) => self.algorithms.clone(),
            (true, true) => vec![Algorithm::HS256],
            (true, false) => vec![Algorithm::RS256, Algorithm::ES256],
        }
    }

    /// Whether tokens are verified with a shared secret (a file, or a vault secret).
    pub fn uses_shared_secret(&self) -> bool {
        self.shared_secret_file.is_some() || self.secret.is_some()
    }

    /// The `NAME` of `secret = "secret:NAME"`.
    pub fn secret_name(&self) -> Option<&str> {
        self.secret
            .as_deref()
            .and_then(|s| s.strip_prefix("secret:"))
    }

    fn validate(&self, own_issuer: &str) -> Result<(), String> {
        use jsonwebtoken::Algorithm;
        if self.issuer.is_empty() || self.issuer.len() > MAX_ISSUER_LEN {
            return Err(format!("issuer must be 1-{MAX_ISSUER_LEN} bytes"));
        }
        if self.issuer.contains('|') || self.issuer.chars().any(char::is_control) {
            return Err("issuer must not contain `|` or control characters".into());
        }
        if self.issuer == own_issuer {
            return Err("issuer must differ from channels.web.issuer (cambot's own)".into());
        }
        if self.audience.is_empty() {
            return Err("audience must not be empty".into());
        }
        let sources = [
            self.jwks_url.is_some(),
            self.jwks_file.is_some(),
            self.key_file.is_some(),
            self.shared_secret_file.is_some(),
            self.secret.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(
                "set exactly one of jwks_url, jwks_file, key_file, shared_secret_file and secret"
                    .into(),
            );
        }
        if self.secret.is_some()
            && !self.secret_name().is_some_and(|n| {
                (1..=64).contains(&n.len())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            })
        {
            return Err(format!(
                "secret must be written \"secret:NAME\", naming a secret of tenant {}'s vault \
                 (store it with `cambot secrets set --tenant {} NAME`; the value given is not \
                 shown)",
                self.tenant, self.tenant
            ));
        }
        if let Some(url) = &self.jwks_url {
            check_jwks_url(url)?;
        }
        if self.jwks_min_refresh_secs == 0 || self.jwks_max_age_secs == 0 {
            return Err("jwks_min_refresh_secs and jwks_max_age_secs must be at least 1".into());
        }
        let hmac =
            |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let algorithms = self.accepted_algorithms();
        if self.uses_shared_secret() {
            if let Some(a) = algorithms.iter().find(|a| !hmac(a)) {
                return Err(format!(
                    "algorithm {a:?} needs a public key, not a shared secret"
                ));
            }
        } else if let Some(a) = algorithms.iter().find(|a| hmac(a)) {
            return Err(format!(
                "algorithm {a:?} needs shared_secret_file or secret"
            ));
        }
        Ok(())
    }
}

/// A JWKS URL must be https, or http to a loopback address (a local identity provider).
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("jwks_url {url:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "jwks_url {url:?} must be https, or http to a loopback address"
        )),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
