//! What every run's server shares: the host tools, the model upstreams, the policy, one HTTP
//! client and the connection counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use crate::fetch::FetchPolicy;
use crate::fetch::FetchResolver;
use crate::fetch::SystemResolver;
use crate::ipc::IpcService;
use crate::listener::SocketLimits;
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
}

impl GatewayStats {
    pub fn non_local(&self) -> u64 {
        self.non_local_upstream_requests.load(Ordering::Relaxed)
    }
}

/// What every run's server shares.
pub struct Gateway {
    pub(crate) ipc: Arc<IpcService>,
    pub(crate) upstreams: HashMap<String, ModelUpstream>,
    pub(crate) policy: GatewayPolicy,
    pub(crate) http: reqwest::Client,
    pub(crate) stats: Arc<GatewayStats>,
    pub(crate) resolver: Arc<dyn FetchResolver>,
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
    #[error("cannot create the run socket {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Gateway {
    pub fn new(
        ipc: Arc<IpcService>,
        upstreams: Vec<ModelUpstream>,
        policy: GatewayPolicy,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::with_resolver(ipc, upstreams, policy, Arc::new(SystemResolver))
    }

    /// [`Gateway::new`] with the fetch route resolving names through `resolver`.
    pub fn with_resolver(
        ipc: Arc<IpcService>,
        upstreams: Vec<ModelUpstream>,
        policy: GatewayPolicy,
        resolver: Arc<dyn FetchResolver>,
    ) -> Result<Arc<Self>, GatewayError> {
        if policy.air_gapped
            && let Some(bad) = upstreams.iter().find(|u| !is_local_url(&u.base_url))
        {
            return Err(GatewayError::NonLocalUpstream {
                name: bad.name.clone(),
                url: bad.base_url.clone(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // An upstream's redirect is answered, never followed (the proxy turns it into 502).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(GatewayError::Client)?;
        Ok(Arc::new(Self {
            ipc,
            upstreams: upstreams.into_iter().map(|u| (u.name.clone(), u)).collect(),
            policy,
            http,
            stats: Arc::new(GatewayStats::default()),
            resolver,
        }))
    }

    pub fn stats(&self) -> &Arc<GatewayStats> {
        &self.stats
    }

    pub fn ipc(&self) -> &Arc<IpcService> {
        &self.ipc
    }
}
