//! The model upstreams the gateway forwards to, and their credentials. Built by the binary
//! from its config; never sent into a sandbox.

/// A credential: never printed, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps a credential read by the host (from the environment or the vault).
    pub fn new(value: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(value.into()))
    }

    /// The value, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One model provider as the gateway reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUpstream {
    /// The provider entry's name (the `<provider>` in `/v1/model/<provider>/...`).
    pub name: String,
    /// `anthropic`, `openai` or `ollama`: decides how the credential is sent.
    pub dialect: String,
    /// `http(s)://host[:port][/prefix]`, or `unix:/path/to.sock` for a local model server.
    pub base_url: String,
    pub api_key: Option<Secret>,
}

/// Whether a URL points at this machine: loopback addresses, `localhost`, or a Unix socket.
pub fn is_local_url(url: &str) -> bool {
    if url.starts_with("unix:") {
        return true;
    }
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
