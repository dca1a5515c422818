//! The model upstreams the gateway forwards to, and where their credentials come from. Built
//! by the binary from its config; never sent into a sandbox.

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
    /// How the host authenticates to it; `None` for an upstream that takes no key (a local
    /// model, `auth = "none"`).
    pub credential: Option<ModelCredential>,
}

/// Where a model upstream's key comes from: the run tenant's vault, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCredential {
    /// The secret's name in the run tenant's vault (`api_key = "secret:NAME"`; by default the
    /// provider entry's name).
    pub secret: String,
    /// The operator's key from the environment (`ANTHROPIC_API_KEY`, ...). Used only for runs
    /// of the `default` tenant, and only while that tenant's vault has no `secret`; never for
    /// another tenant.
    pub legacy: Option<Secret>,
}

impl ModelCredential {
    /// The vault's secret `name`, with no environment fallback.
    pub fn vault(name: impl Into<String>) -> Self {
        Self {
            secret: name.into(),
            legacy: None,
        }
    }

    /// The vault's secret `name`, falling back to `legacy` for the default tenant only.
    pub fn with_legacy(name: impl Into<String>, legacy: Option<Secret>) -> Self {
        Self {
            secret: name.into(),
            legacy,
        }
    }
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
