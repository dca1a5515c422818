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
//! - the model proxy (`/v1/model/<provider>/<path>`): the host adds the credential
//!   ([`Secret`]) and forwards to the [`ModelUpstream`], so the runner never holds a key;
//! - a policy-checked outbound fetch (`/v1/fetch`), refused unless [`GatewayPolicy`] names the
//!   host, and always in air-gapped mode.
//!
//! What it does not own: reading the config file (the binary builds [`GatewayPolicy`] and the
//! upstreams), delivering replies (it only commits them and calls back), and the schedule rules
//! (`cambot-scheduler`).

#![forbid(unsafe_code)]

mod gateway;
mod ipc;
mod proxy;
mod response;
mod server;
mod upstream;

pub use gateway::Gateway;
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
pub use server::RunSocket;
#[doc(hidden)]
pub use server::parse as parse_ipc_body;
pub use upstream::ModelUpstream;
pub use upstream::Secret;
pub use upstream::is_local_url;
