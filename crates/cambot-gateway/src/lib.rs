//! # cambot-gateway
//!
//! The host side of the per-run socket: one HTTP/1.1 server per run, on the run's own Unix
//! socket (`<data>/runs/<run-id>/host.sock`, seen inside the sandbox as
//! `/run/cambot/host.sock`).
//!
//! The socket a request arrives on IS the caller's identity ([`RunIdentity`]); every request
//! also carries the run's random token. Routes:
//!
//! - the host tools (`/v1/ipc/...`, [`IpcService`]): send a message, schedule / list / pause /
//!   resume / cancel tasks, register and list groups, under the seed's authorization made
//!   tenant-aware (a tenant's main group may act on its tenant's groups, every other group
//!   only on itself, nothing crosses tenants);
//! - the model proxy (`/v1/model/<provider>/<path>`): the host adds the run tenant's key
//!   ([`ModelCredential`]: a secret of the tenant's vault, [`TenantSecrets`]; the environment's
//!   legacy key for the `default` tenant only) and forwards to the [`ModelUpstream`], so the
//!   runner never holds a key; a tenant without the key gets "tenant T has no secret 'NAME'"
//!   and nothing is sent; only the dialect's own routes, never a redirect, and within the
//!   run's [`RunBudget`];
//! - a policy-checked outbound fetch (`/v1/fetch`, [`FetchPolicy`]): allowed only for the
//!   scheme + host + port triples of the allowlist, to public addresses (or an address an entry
//!   names literally), with the name resolved once and the connection pinned to the checked
//!   addresses, redirects re-checked hop by hop, a body cap and a deadline; always refused in
//!   air-gapped mode. A hop to exactly the origin of one of the run tenant's
//!   [`FetchCredential`]s carries its header (OAuth tokens refreshed on the host).
//!
//! What goes back to a sandbox (model streams, fetched bodies, the headers passed on) has every
//! secret value of the run's tenant (of 8 bytes or more) replaced by `[REDACTED]`, also when a
//! value straddles two chunks.
//!
//! Every socket is served within [`SocketLimits`] (connections at once, head and body sizes).
//!
//! What it does not own: reading the config file (the binary builds [`GatewayPolicy`] and the
//! upstreams), delivering replies (it only commits them and calls back), and the schedule rules
//! (`cambot-scheduler`).

#![forbid(unsafe_code)]

mod budget;
mod credential;
mod fetch;
mod gateway;
mod ipc;
mod listener;
mod proxy;
mod redact;
mod response;
mod secrets;
mod server;
mod upstream;
mod usage;

pub use budget::RunBudget;
pub use fetch::FetchAllow;
pub use fetch::FetchAllowError;
pub use fetch::FetchCredential;
pub use fetch::FetchCredentialError;
pub use fetch::FetchCredentialSpec;
pub use fetch::FetchError;
pub use fetch::FetchPolicy;
pub use fetch::FetchResolver;
pub use fetch::MAX_REDIRECTS;
pub use fetch::OAuthSpec;
pub use fetch::SystemResolver;
pub use gateway::Gateway;
pub use gateway::GatewayBuilder;
pub use gateway::GatewayError;
pub use gateway::GatewayPolicy;
pub use gateway::GatewayStats;
pub use ipc::HostToolError;
pub use ipc::IpcService;
pub use ipc::OnRegistered;
pub use ipc::OnReplyQueued;
pub use ipc::OnTasksChanged;
pub use ipc::RunIdentity;
pub use ipc::SendLimits;
pub use ipc::WorkflowHost;
pub use listener::SocketLimits;
pub use secrets::FoundSecret;
pub use secrets::NoSecrets;
pub use secrets::SECRET_PREFIX;
pub use secrets::SecretFuture;
pub use secrets::SecretRefError;
pub use secrets::SecretsError;
pub use secrets::TenantSecrets;
pub use secrets::parse_secret_ref;
pub use server::RunSocket;
#[doc(hidden)]
pub use server::parse as parse_ipc_body;
pub use upstream::ModelCredential;
pub use upstream::ModelUpstream;
pub use upstream::Secret;
pub use upstream::is_local_url;
