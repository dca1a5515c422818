//! # cambot-protocol
//!
//! The wire types shared by the cambot host and `cambot-runner` (the binary inside every
//! sandbox), and the identifiers every other crate keys on.
//!
//! - [`ids`]: validated names ([`TenantId`], [`GroupFolder`], [`ChatJid`], [`RunId`], [`TaskId`]).
//!   Validation happens once, here; a constructed value is safe to use in a path.
//! - [`run`]: the stdin/stdout JSON Lines protocol ([`HostToRunner`], [`RunnerToHost`]).
//! - [`ipc`]: request and response bodies of the per-run host socket.
//! - [`message`]: chat records channels produce and the store keeps.
//! - [`layout`]: the data directory layout; every group-scoped path is computed there.
//! - [`documents`]: the contract of the sandboxed document extractor (arguments, status line,
//!   exit codes).
//! - [`reply`]: reply clean-up before a reply is sent (`<internal>` blocks removed).
//!
//! This crate does no I/O and has no async runtime: it is data and validation only.
#![forbid(unsafe_code)]

pub mod documents;
pub mod ids;
pub mod ipc;
pub mod layout;
pub mod message;
pub mod reply;
pub mod run;

pub use ids::ChatJid;
pub use ids::GroupFolder;
pub use ids::GroupKey;
pub use ids::IdError;
pub use ids::RunId;
pub use ids::TaskId;
pub use ids::TenantId;
pub use layout::DataLayout;
pub use message::AdditionalMount;
pub use message::Attachment;
pub use message::ChatMetadata;
pub use message::ContainerConfig;
pub use message::InboundMessage;
pub use message::RegisteredGroup;
pub use message::StoredAttachment;
pub use run::HOST_SOCKET_PATH;
pub use run::HostToRunner;
pub use run::LocalClock;
pub use run::ModelChoice;
pub use run::RUN_TOKEN_HEADER;
pub use run::RunLimits;
pub use run::RunnerToHost;
pub use run::StartInput;
pub use run::ToolPolicy;
