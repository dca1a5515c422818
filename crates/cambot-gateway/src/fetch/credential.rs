//! A tenant's fetch credentials (`[[tenants.<id>.fetch_credentials]]`): a header added to a
//! fetch hop whose scheme + host + port is exactly the rule's, its value built around one of
//! the tenant's secrets, optionally refreshed by OAuth. A rule allows nothing by itself: its
//! host must also be in `fetch_allow_hosts` (only its OAuth token endpoint is allowed by
//! being named, and only for the refresh).
//!
//! ```toml
//! [[tenants.acme.fetch_credentials]]
//! host = "api.github.com"
//! header = "authorization"
//! value = "Bearer secret:github"
//! # optional: refresh the access token `github` when it expires or the host answers 401
//! oauth = { token_url = "https://github.com/login/oauth/access_token", client_id = "Iv1.x",
//!           client_secret = "secret:github-client", refresh_token = "secret:github-refresh" }
//! ```

use axum::http::HeaderName;
use axum::http::HeaderValue;
use url::Url;

use super::allow::FetchAllow;
use super::allow::non_canonical;
use crate::secrets::SECRET_PREFIX;
use crate::secrets::check_secret_name;
use crate::secrets::is_name_byte;
use crate::secrets::parse_secret_ref;
use crate::upstream::Secret;

/// One `[[tenants.<id>.fetch_credentials]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchCredentialSpec {
    /// `host`, `host:port` or `scheme://host[:port]`, read like a `fetch_allow_hosts` entry.
    pub host: String,
    /// The request header to set (`authorization`, `x-api-key`, ...).
    pub header: String,
    /// The header's value: text around exactly one `secret:NAME` (`Bearer secret:github`).
    pub value: String,
    #[serde(default)]
    pub oauth: Option<OAuthSpec>,
}

/// How the access token (the value's `secret:NAME`) is refreshed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    /// Where `grant_type=refresh_token` is posted. Counts as allowed for the refresh only.
    pub token_url: String,
    pub client_id: String,
    /// `secret:NAME`, when the token endpoint wants a client secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `secret:NAME`: the refresh token, replaced when the endpoint returns a new one.
    pub refresh_token: String,
}

/// A checked fetch credential rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "FetchCredentialSpec")]
pub struct FetchCredential {
    origin: FetchAllow,
    header: HeaderName,
    prefix: String,
    secret: String,
    suffix: String,
    pub(crate) oauth: Option<OAuthRule>,
}

/// A checked [`OAuthSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthRule {
    pub(crate) token_url: Url,
    pub(crate) token_origin: FetchAllow,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<String>,
    pub(crate) refresh_token: String,
}

/// A fetch credential entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fetch credential for {host:?}: {reason}")]
pub struct FetchCredentialError {
    host: String,
    reason: String,
}

/// Headers a rule may not set: they frame the request or name its target.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

impl FetchCredential {
    pub fn parse(spec: &FetchCredentialSpec) -> Result<Self, FetchCredentialError> {
        let fail = |reason: String| FetchCredentialError {
            host: spec.host.clone(),
            reason,
        };
        let origin = FetchAllow::parse(&spec.host).map_err(|e| fail(e.to_string()))?;
        let header = HeaderName::from_bytes(spec.header.as_bytes())
            .map_err(|_| fail(format!("{:?} is not an HTTP header name", spec.header)))?;
        if RESERVED.contains(&header.as_str()) {
            return Err(fail(format!(
                "the header {header} cannot carry a credential"
            )));
        }
        let (prefix, secret, suffix) = split_template(&spec.value).map_err(fail)?;
        let oauth = spec
            .oauth
            .as_ref()
            .map(|o| parse_oauth(o).map_err(fail))
            .transpose()?;
        Ok(Self {
            origin,
            header,
            prefix: prefix.to_owned(),
            secret: secret.to_owned(),
            suffix: suffix.to_owned(),
            oauth,
        })
    }

    /// The scheme + host + port the header is sent to, and nowhere else.
    pub fn origin(&self) -> &FetchAllow {
        &self.origin
    }

    pub fn header(&self) -> &str {
        self.header.as_str()
    }

    /// The name of the tenant's secret the value is built around (the access token).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether both rules set the same header on the same origin.
    pub(crate) fn same_target(&self, other: &Self) -> bool {
        self.origin == other.origin && self.header == other.header
    }

    pub(crate) fn header_name(&self) -> &HeaderName {
        &self.header
    }

    /// The header value around `secret`; `None` when the secret cannot go in a header.
    pub(crate) fn header_value(&self, secret: &Secret) -> Option<HeaderValue> {
        let text =
            zeroize::Zeroizing::new(format!("{}{}{}", self.prefix, secret.expose(), self.suffix));
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl TryFrom<FetchCredentialSpec> for FetchCredential {
    type Error = FetchCredentialError;
    fn try_from(spec: FetchCredentialSpec) -> Result<Self, Self::Error> {
        Self::parse(&spec)
    }
}

/// `(before, NAME, after)` of a value holding exactly one `secret:NAME`.
fn split_template(value: &str) -> Result<(&str, &str, &str), String> {
    let count = value.matches(SECRET_PREFIX).count();
    if count != 1 {
        return Err(format!(
            "the value holds {count} `secret:NAME` references; write exactly one, as in \"Bearer secret:NAME\""
        ));
    }
    let Some(at) = value.find(SECRET_PREFIX) else {
        return Err("the value holds no `secret:NAME`".into());
    };
    let (prefix, rest) = value.split_at(at);
    let rest = &rest[SECRET_PREFIX.len()..];
    let end = rest
        .bytes()
        .position(|b| !is_name_byte(b))
        .unwrap_or(rest.len());
    let (name, suffix) = rest.split_at(end);
    check_secret_name(name)?;
    if (prefix.chars().chain(suffix.chars())).any(|c| !(c == ' ' || c.is_ascii_graphic())) {
        return Err("the text around secret:NAME must be printable ASCII".into());
    }
    Ok((prefix, name, suffix))
}

fn parse_oauth(spec: &OAuthSpec) -> Result<OAuthRule, String> {
    let url = Url::parse(&spec.token_url)
        .map_err(|e| format!("oauth.token_url {:?}: {e}", spec.token_url))?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "oauth.token_url {:?} must be an http(s) URL without user, password or fragment",
            spec.token_url
        ));
    }
    if let Some(why) = non_canonical(&spec.token_url, &url) {
        return Err(format!("oauth.token_url: {why}"));
    }
    let token_origin = FetchAllow::of_url(&url)
        .ok_or_else(|| format!("oauth.token_url {:?} has no host", spec.token_url))?;
    if spec.client_id.is_empty() || spec.client_id.chars().any(char::is_control) {
        return Err("oauth.client_id must be non-empty text".into());
    }
    let name_of = |field: &str, value: &str| {
        parse_secret_ref(value)
            .map(str::to_owned)
            .map_err(|e| format!("oauth.{field}: {e}"))
    };
    Ok(OAuthRule {
        token_origin,
        client_id: spec.client_id.clone(),
        client_secret: spec
            .client_secret
            .as_deref()
            .map(|v| name_of("client_secret", v))
            .transpose()?,
        refresh_token: name_of("refresh_token", &spec.refresh_token)?,
        token_url: url,
    })
}

#[cfg(test)]
#[path = "credential_tests.rs"]
mod tests;
