//! `fetch_allow_hosts` entries (scheme + host + port) and the check that an address in a URL
//! is written the one canonical way.

use std::net::IpAddr;

use url::Host;
use url::Url;

use super::addr::Class;
use super::addr::classify;

/// One `fetch_allow_hosts` entry: `host`, `host:port` or `scheme://host[:port]`. A bare host
/// means `https` on 443. An entry naming an address literally (`http://10.1.2.3:8080`) is the
/// operator's opt-in for exactly that address and port, even a private or loopback one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct FetchAllow {
    scheme: String,
    host: Host<String>,
    port: u16,
}

/// A `fetch_allow_hosts` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fetch_allow_hosts entry {entry:?}: {reason}")]
pub struct FetchAllowError {
    entry: String,
    reason: String,
}

impl FetchAllow {
    pub fn parse(entry: &str) -> Result<Self, FetchAllowError> {
        let fail = |reason: String| FetchAllowError {
            entry: entry.to_owned(),
            reason,
        };
        if entry.is_empty() || entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("an entry is a host without spaces".into()));
        }
        let text = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("https://{entry}")
        };
        let url = Url::parse(&text)
            .map_err(|e| fail(format!("{e}: write host, host:port or scheme://host:port")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!(
                "only http and https can be fetched, not {}",
                url.scheme()
            )));
        }
        let after = written_authority(&text)
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        if !url.username().is_empty() || url.password().is_some() || !matches!(after, "" | "/") {
            return Err(fail(
                "an entry names scheme, host and port only (no user, path or query)".into(),
            ));
        }
        let Some(host) = url.host() else {
            return Err(fail("no host".into()));
        };
        non_canonical(&text, &url).map_or(Ok(()), |why| Err(fail(why)))?;
        if let Some(ip) = host_ip(&host)
            && let Some(
                class
                @ (Class::Unspecified | Class::Multicast | Class::Broadcast | Class::Reserved),
            ) = classify(ip)
        {
            return Err(fail(format!("{ip} is {class}: no fetch can reach it")));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| fail("no port".into()))?;
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// The scheme + host + port of `url` (an operator's OAuth token endpoint).
    pub(crate) fn of_url(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    /// Whether this entry allows `url` (canonical): same scheme, host and port.
    pub(crate) fn allows(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host().is_some_and(|h| h.to_owned() == self.host)
            && url.port_or_known_default() == Some(self.port)
    }

    /// Same host, another scheme or port: worth naming in the refusal.
    pub(crate) fn same_host(&self, url: &Url) -> bool {
        url.host().is_some_and(|h| h.to_owned() == self.host)
    }
}

impl std::fmt::Display for FetchAllow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl TryFrom<String> for FetchAllow {
    type Error = FetchAllowError;
    fn try_from(entry: String) -> Result<Self, Self::Error> {
        Self::parse(&entry)
    }
}

impl std::str::FromStr for FetchAllow {
    type Err = FetchAllowError;
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        Self::parse(entry)
    }
}

pub(crate) fn host_ip(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        Host::Domain(_) => None,
    }
}

/// The authority as written in `input` (an absolute or scheme-relative URL) and what follows
/// it; `None` for a relative reference, which keeps its base's (already checked) host.
fn written_authority(input: &str) -> Option<(&str, &str)> {
    let scheme_end = input.find(':').filter(|&i| {
        input
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && input[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let rest = scheme_end.map_or(input, |i| &input[i + 1..]);
    // The WHATWG parser skips any run of slashes and backslashes after a special scheme.
    let trimmed = rest.trim_start_matches(['/', '\\']);
    if scheme_end.is_none() && rest.len() - trimmed.len() < 2 {
        return None;
    }
    let end = trimmed.find(['/', '\\', '?', '#']).unwrap_or(trimmed.len());
    Some((&trimmed[..end], &trimmed[end..]))
}

/// Why the host of `input` (which parsed as `url`) is not written canonically, when it is an
/// address: `http://2130706433/`, `http://0x7f.1/` and `http://[::ffff:127.0.0.1]/` reach an
/// address that their text does not name, so no allowlist entry or reader can judge them.
pub(crate) fn non_canonical(input: &str, url: &Url) -> Option<String> {
    let (authority, _) = written_authority(input)?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let written = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port, |i| &host_port[..=i])
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let canonical = url.host_str()?;
    let is_address = url.host().as_ref().and_then(host_ip).is_some();
    (is_address && !written.eq_ignore_ascii_case(canonical))
        .then(|| format!("{written} is a non-canonical spelling of the address {canonical}"))
}
