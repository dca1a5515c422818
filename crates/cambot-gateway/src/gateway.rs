//! What every run's server shares: the host tools, the model upstreams, the policy, one HTTP
//! client and the connection counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use cambot_protocol::TenantId;

use crate::fetch::FetchCredential;
use crate::fetch::FetchPolicy;
use crate::fetch::FetchResolver;
use crate::fetch::SystemResolver;
use crate::ipc::IpcService;
use crate::listener::SocketLimits;
use crate::secrets::NoSecrets;
use crate::secrets::TenantSecrets;
use crate::upstream::ModelUpstream;
use crate::upstream::is_local_url;

/// Gateway-wide policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayPolicy {
    /// Connection, head and tool-body limits of every run's socket.
    pub socket: SocketLimits,
    /// Refuse every non-local upstream and every fetch.
    pub air_gapped: bool,
    /// What the fetch route may reach (scheme + host + port), its body cap and deadline.
    pub fetch: FetchPolicy,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
}

impl GatewayPolicy {
    /// No air gap, no fetch (2 MiB, 20 s once allowed), 8 MiB model request bodies, the default
    /// [`SocketLimits`].
    pub fn standard() -> Self {
        Self {
            socket: SocketLimits::default(),
            air_gapped: false,
            fetch: FetchPolicy::default(),
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Connection counters, for tests and `doctor`.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Outbound connections the gateway opened to non-loopback addresses.
    pub non_local_upstream_requests: AtomicU64,
    /// Requests refused by policy (air gap, fetch allowlist).
    pub refused_by_policy: AtomicU64,
    /// Requests refused for a missing or wrong run token.
    pub bad_token: AtomicU64,
    /// Model calls refused because the run's budget was spent.
    pub refused_by_budget: AtomicU64,
    /// Model calls and fetches refused because the run's tenant lacks the secret they need.
    pub missing_secret: AtomicU64,
    /// Model calls and fetches refused because the vault could not be read.
    pub vault_errors: AtomicU64,
    /// Secret values replaced by `[REDACTED]` in answers going back to a sandbox.
    pub redacted: AtomicU64,
    /// OAuth refreshes of fetch credentials sent to a token endpoint.
    pub oauth_refreshes: AtomicU64,
}

impl GatewayStats {
    pub fn non_local(&self) -> u64 {
        self.non_local_upstream_requests.load(Ordering::Relaxed)
    }
}

/// Held while one (tenant, rule) token is refreshed.
pub(crate) type RefreshLock = Arc<tokio::sync::Mutex<()>>;

/// What every run's server shares.
pub struct Gateway {
    pub(crate) ipc: Arc<IpcService>,
    pub(crate) upstreams: HashMap<String, ModelUpstream>,
    pub(crate) policy: GatewayPolicy,
    pub(crate) http: reqwest::Client,
    pub(crate) stats: Arc<GatewayStats>,
    pub(crate) resolver: Arc<dyn FetchResolver>,
    pub(crate) secrets: Arc<dyn TenantSecrets>,
    pub(crate) fetch_credentials: HashMap<TenantId, Vec<FetchCredential>>,
    /// One lock per (tenant, access-token secret): concurrent refreshes collapse into one.
    pub(crate) refresh_locks: Mutex<HashMap<(TenantId, String), RefreshLock>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("air-gapped mode refuses provider {name}: its upstream {url} is not a local address")]
    NonLocalUpstream { name: String, url: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("tenant {tenant}: {reason}")]
    FetchCredential { tenant: TenantId, reason: String },
    #[error("cannot create the run socket {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds a [`Gateway`]: [`Gateway::builder`], then the optional parts, then
/// [`GatewayBuilder::build`].
pub struct GatewayBuilder {
    ipc: Arc<IpcService>,
    upstreams: Vec<ModelUpstream>,
    policy: GatewayPolicy,
    resolver: Arc<dyn FetchResolver>,
    secrets: Arc<dyn TenantSecrets>,
    fetch_credentials: HashMap<TenantId, Vec<FetchCredential>>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// Fetches resolve names through `resolver` (default: the system's).
    pub fn resolver(mut self, resolver: Arc<dyn FetchResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Where tenants' credentials are read (default: [`NoSecrets`], so only the default
    /// tenant's legacy keys work).
    pub fn secrets(mut self, secrets: Arc<dyn TenantSecrets>) -> Self {
        self.secrets = secrets;
        self
    }

    /// `tenant`'s fetch credentials (`[[tenants.<id>.fetch_credentials]]`), added to any
    /// given before. Only that tenant's runs send them.
    pub fn fetch_credentials(mut self, tenant: TenantId, rules: Vec<FetchCredential>) -> Self {
        self.fetch_credentials
            .entry(tenant)
            .or_default()
            .extend(rules);
        self
    }

    pub fn build(self) -> Result<Arc<Gateway>, GatewayError> {
        let Self {
            ipc,
            upstreams,
            policy,
            resolver,
            secrets,
            fetch_credentials,
        } = self;
        if policy.air_gapped
            && let Some(bad) = upstreams.iter().find(|u| !is_local_url(&u.base_url))
        {
            return Err(GatewayError::NonLocalUpstream {
                name: bad.name.clone(),
                url: bad.base_url.clone(),
            });
        }
        for (tenant, rules) in &fetch_credentials {
            for (i, rule) in rules.iter().enumerate() {
                if rules[..i].iter().any(|r| r.same_target(rule)) {
                    return Err(GatewayError::FetchCredential {
                        tenant: tenant.clone(),
                        reason: format!(
                            "two fetch credentials set header {} for {}",
                            rule.header(),
                            rule.origin()
                        ),
                    });
                }
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // An upstream's redirect is answered, never followed (the proxy turns it into 502).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(GatewayError::Client)?;
        Ok(Arc::new(Gateway {
            ipc,
            upstreams: upstreams.into_iter().map(|u| (u.name.clone(), u)).collect(),
            policy,
            http,
            stats: Arc::new(GatewayStats::default()),
            resolver,
            secrets,
            fetch_credentials,
            refresh_locks: Mutex::new(HashMap::new()),
        }))
    }
}

impl Gateway {
    /// A gateway without a vault ([`NoSecrets`]) and the system resolver; see
    /// [`Gateway::builder`] for the rest.
    pub fn new(
        ipc: Arc<IpcService>,
        upstreams: Vec<ModelUpstream>,
        policy: GatewayPolicy,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::builder(ipc, upstreams, policy).build()
    }

    /// [`Gateway::new`] with the fetch route resolving names through `resolver`.
    pub fn with_resolver(
        ipc: Arc<IpcService>,
        upstreams: Vec<ModelUpstream>,
        policy: GatewayPolicy,
        resolver: Arc<dyn FetchResolver>,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::builder(ipc, upstreams, policy)
            .resolver(resolver)
            .build()
    }

    pub fn builder(
        ipc: Arc<IpcService>,
        upstreams: Vec<ModelUpstream>,
        policy: GatewayPolicy,
    ) -> GatewayBuilder {
        GatewayBuilder {
            ipc,
            upstreams,
            policy,
            resolver: Arc::new(SystemResolver),
            secrets: Arc::new(NoSecrets),
            fetch_credentials: HashMap::new(),
        }
    }

    pub fn stats(&self) -> &Arc<GatewayStats> {
        &self.stats
    }

    pub fn ipc(&self) -> &Arc<IpcService> {
        &self.ipc
    }
}
