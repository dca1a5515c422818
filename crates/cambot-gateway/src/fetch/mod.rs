//! The agent's outbound fetch: one GET, checked hop by hop against the allowlist (scheme,
//! host, port) and the address classes, with the name resolved once and the connection pinned
//! to the checked addresses (no second lookup for a rebinding name to answer differently).
//! Redirects are followed here, at most [`MAX_REDIRECTS`], each hop checked like the first;
//! the body is capped and the whole fetch has one deadline.
//!
//! A hop whose scheme + host + port is exactly one of the run tenant's [`FetchCredential`]
//! origins carries that rule's header (its value from the tenant's vault, refreshed by OAuth
//! when configured); no other hop does. The agent sends no headers of its own, and what comes
//! back (body and shown headers) has the tenant's secret values redacted.

mod addr;
mod allow;
mod credential;
mod oauth;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use cambot_protocol::TenantId;
use cambot_protocol::ipc::FetchResponse;
use futures::future::BoxFuture;
use url::Host;
use url::Url;

pub use allow::FetchAllow;
pub use allow::FetchAllowError;
pub use credential::FetchCredential;
pub use credential::FetchCredentialError;
pub use credential::FetchCredentialSpec;
pub use credential::OAuthSpec;

use crate::credential::CredentialError;
use crate::gateway::Gateway;
use crate::ipc::HostToolError;
use crate::redact::Redactor;
use crate::redact::StreamRedactor;
use crate::secrets::SecretsError;
use crate::secrets::missing_message;
use addr::classify;
use allow::host_ip;
use allow::non_canonical;

/// Redirects followed before the fetch is refused.
pub const MAX_REDIRECTS: usize = 5;

/// Response headers the agent sees; every other one (cookies, auth challenges, internal
/// headers of the far side) stays on the host.
const SHOWN_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "content-language",
    "last-modified",
    "etag",
];

/// What the fetch route may reach and how much of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Allowed scheme + host + port triples. Empty: every fetch is refused.
    pub allow: Vec<FetchAllow>,
    /// Largest body returned to the agent; the rest is cut and the answer marked truncated.
    pub max_bytes: usize,
    /// Deadline of a whole fetch: resolution, connections, redirects and body.
    pub timeout: Duration,
}

impl Default for FetchPolicy {
    /// Nothing allowed, 2 MiB, 20 s.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_bytes: 2 * 1024 * 1024,
            timeout: Duration::from_secs(20),
        }
    }
}

/// Name resolution for fetches; swapped in tests to play a rebinding name.
pub trait FetchResolver: Send + Sync + 'static {
    /// Every address `host` resolves to, with `port` set.
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl FetchResolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Why a fetch gave no answer. A refusal is decided before any connection is opened.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Policy: the one line the agent is told.
    #[error("fetch refused: {0}")]
    Refused(String),
    #[error("not a URL: {0:?}")]
    BadUrl(String),
    #[error("fetch failed: cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetch failed: {url}: {}", chain(.source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("fetch failed: no complete answer within {} s (fetch_timeout_secs)", .0.as_secs_f64())]
    Deadline(Duration),
    /// The run's tenant lacks the secret a credential rule of this hop needs.
    #[error("fetch refused: {}", missing_message(.tenant, .name))]
    MissingSecret { tenant: TenantId, name: String },
    #[error("fetch failed: {0}")]
    Vault(#[source] SecretsError),
    /// Refreshing an OAuth access token failed; the message names the rule and the answer.
    #[error("fetch failed: {0}")]
    OAuth(String),
}

impl From<CredentialError> for FetchError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Missing { tenant, name } => Self::MissingSecret { tenant, name },
            CredentialError::Vault(e) => Self::Vault(e),
        }
    }
}

impl From<FetchError> for HostToolError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Refused(_) | FetchError::MissingSecret { .. } => {
                Self::Forbidden(e.to_string())
            }
            FetchError::BadUrl(_) => Self::BadRequest(e.to_string()),
            other => Self::Fetch(other),
        }
    }
}

/// An error with its causes, on one line (reqwest's own text omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// One checked hop: where to go and the only addresses the connection may use.
#[derive(Debug)]
struct Target {
    url: Url,
    /// The domain pinned to `addrs`; `None` for an address literal.
    domain: Option<String>,
    addrs: Vec<SocketAddr>,
}

impl Gateway {
    /// The fetch route for a run of `tenant`: checks, fetches and shapes the answer; counts
    /// refusals.
    pub(crate) async fn fetch(
        &self,
        tenant: &TenantId,
        url: &str,
    ) -> Result<FetchResponse, FetchError> {
        let result = if self.policy.air_gapped {
            Err(FetchError::Refused(
                "air-gapped: outbound fetch is disabled".into(),
            ))
        } else {
            let timeout = self.policy.fetch.timeout;
            tokio::time::timeout(timeout, self.fetch_hops(tenant, url))
                .await
                .unwrap_or(Err(FetchError::Deadline(timeout)))
        };
        if let Err(FetchError::Refused(_)) = &result {
            self.stats.refused_by_policy.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn fetch_hops(&self, tenant: &TenantId, url: &str) -> Result<FetchResponse, FetchError> {
        // Read before anything is sent: a vault that cannot be read stops the fetch here.
        let redactor = self.redactor(tenant, None).await?;
        let mut target = self.check(url, None, None).await?;
        let mut hops = 0;
        loop {
            let resp = self.send_hop(tenant, &target).await?;
            let location = resp.headers().get(reqwest::header::LOCATION);
            let (true, Some(location)) = (is_redirect(resp.status()), location) else {
                return self.read(resp, &target.url, &redactor).await;
            };
            hops += 1;
            let location = location.to_str().map_err(|_| {
                FetchError::Refused(format!(
                    "redirect {hops} from {} has a Location that is not text",
                    target.url
                ))
            })?;
            // The far side wrote the Location: it is quoted shortened in the refusal.
            let shown: String = location.chars().take(200).collect();
            if hops > MAX_REDIRECTS {
                return Err(FetchError::Refused(format!(
                    "more than {MAX_REDIRECTS} redirects (the last to {shown})"
                )));
            }
            target = match self.check(location, Some(&target.url), None).await {
                Err(FetchError::Refused(why)) => {
                    return Err(FetchError::Refused(format!(
                        "redirect {hops} to {shown}: {why}"
                    )));
                }
                other => other?,
            };
        }
    }

    /// Checks one hop completely; `base` is the URL a redirect came from; `also` an origin the
    /// operator named elsewhere (an OAuth token endpoint), allowed like an allowlist entry.
    async fn check(
        &self,
        input: &str,
        base: Option<&Url>,
        also: Option<&FetchAllow>,
    ) -> Result<Target, FetchError> {
        let refuse = |why: String| Err(FetchError::Refused(why));
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace());
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return refuse("the URL contains spaces or control characters".into());
        }
        let parsed = match base {
            Some(b) => b.join(input),
            None => Url::parse(input),
        };
        let url = parsed.map_err(|_| FetchError::BadUrl(input.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return refuse(format!(
                "only http and https URLs are fetched, not {}:",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("URLs with a user or password are not fetched".into());
        }
        if let Some(why) = non_canonical(input, &url) {
            return refuse(why);
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return refuse(format!("{url} has no host"));
        };
        let allow = &self.policy.fetch.allow;
        let allowed = allow.iter().chain(also).any(|a| a.allows(&url));
        if let Some(ip) = host_ip(&host) {
            // An address literal: allowed by an entry naming exactly it, else by its class.
            if !allowed && let Some(class) = classify(ip) {
                return refuse(format!("{ip} is {class}{}", same_host(&url, allow)));
            }
            if !allowed {
                return refuse(not_listed(&url, port, allow));
            }
            return Ok(Target {
                addrs: vec![SocketAddr::new(ip, port)],
                domain: None,
                url,
            });
        }
        let Host::Domain(name) = host else {
            return refuse(format!("{url} has no host"));
        };
        if !allowed {
            return refuse(not_listed(&url, port, allow));
        }
        let addrs =
            self.resolver
                .lookup(name, port)
                .await
                .map_err(|source| FetchError::Resolve {
                    host: name.to_owned(),
                    source,
                })?;
        if addrs.is_empty() {
            return refuse(format!("{name} resolves to no address"));
        }
        // Every answer is checked: a rebinding name may mix a public address with a private one.
        for a in &addrs {
            if let Some(class) = classify(a.ip()) {
                return refuse(format!("{name} resolves to {}, {class}", a.ip()));
            }
        }
        let addrs = addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip(), port))
            .collect();
        Ok(Target {
            domain: Some(name.to_owned()),
            url,
            addrs,
        })
    }

    /// Reads at most `max_bytes` of the body (counted after redaction), then drops the
    /// connection.
    async fn read(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        redactor: &Redactor,
    ) -> Result<FetchResponse, FetchError> {
        let max = self.policy.fetch.max_bytes;
        let status = resp.status().as_u16();
        let mut headers = BTreeMap::new();
        for name in SHOWN_HEADERS {
            let values: Vec<&str> = resp
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                let joined = values.join(", ");
                let shown = match redactor.redact(joined.as_bytes()) {
                    Some(clean) => {
                        self.stats.redacted.fetch_add(1, Ordering::Relaxed);
                        String::from_utf8_lossy(&clean).into_owned()
                    }
                    None => joined,
                };
                headers.insert(name.to_owned(), shown);
            }
        }
        let mut scan = StreamRedactor::new(redactor.clone());
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            let chunk = resp.chunk().await.map_err(|source| FetchError::Request {
                url: url.to_string(),
                source,
            })?;
            // Bytes held back (a possible start of a value) are dropped with a cut body.
            let (clean, last) = match chunk {
                Some(chunk) => (scan.push(chunk), false),
                None => (scan.finish(), true),
            };
            let room = max - body.len();
            if clean.len() > room {
                body.extend_from_slice(&clean[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&clean);
            if last {
                break;
            }
        }
        if scan.found > 0 {
            self.stats.redacted.fetch_add(scan.found, Ordering::Relaxed);
        }
        Ok(FetchResponse {
            status,
            content_type: headers.get("content-type").cloned(),
            body: text_of(&body),
            truncated,
            headers,
        })
    }

    /// Sends one checked hop; counts connections leaving the machine.
    async fn send(
        &self,
        target: &Target,
        extra: Outbound,
    ) -> Result<reqwest::Response, FetchError> {
        if target.addrs.iter().any(|a| !a.ip().is_loopback()) {
            self.stats
                .non_local_upstream_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        send(target, extra).await
    }
}

/// What a hop sends besides the request line: the credential headers, and for an OAuth
/// refresh a form body (which makes it a POST).
#[derive(Default)]
struct Outbound {
    headers: HeaderMap,
    form: Option<zeroize::Zeroizing<String>>,
}

/// One GET (a POST with a form) on a client pinned to the target's checked addresses (it never
/// resolves the name again), without proxies or redirects of its own.
async fn send(target: &Target, extra: Outbound) -> Result<reqwest::Response, FetchError> {
    let request_err = |source| FetchError::Request {
        url: target.url.to_string(),
        source,
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("cambot-fetch/", env!("CARGO_PKG_VERSION")));
    if let Some(domain) = &target.domain {
        builder = builder.resolve_to_addrs(domain, &target.addrs);
    }
    let client = builder.build().map_err(request_err)?;
    let request = match extra.form {
        Some(form) => client
            .post(target.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(Bytes::copy_from_slice(form.as_bytes())),
        None => client.get(target.url.clone()),
    };
    request
        .headers(extra.headers)
        .send()
        .await
        .map_err(request_err)
}

fn is_redirect(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The body as text for the model; control characters (other than line breaks and tabs)
/// become U+FFFD so the JSON answer stays at most three times the body's size.
fn text_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn not_listed(url: &Url, port: u16, allow: &[FetchAllow]) -> String {
    format!(
        "{}://{}:{port} is not in fetch_allow_hosts{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        same_host(url, allow)
    )
}

/// Names the entries for the same host with another scheme or port, if any.
fn same_host(url: &Url, allow: &[FetchAllow]) -> String {
    let same: Vec<String> = allow
        .iter()
        .filter(|a| a.same_host(url))
        .map(ToString::to_string)
        .collect();
    if same.is_empty() {
        String::new()
    } else {
        format!(" (allowed for this host: {})", same.join(", "))
    }
}

#[cfg(test)]
#[path = "addr_tests.rs"]
mod addr_tests;

#[cfg(test)]
#[path = "allow_tests.rs"]
mod allow_tests;

#[cfg(test)]
#[path = "pin_tests.rs"]
mod pin_tests;
