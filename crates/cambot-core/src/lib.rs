//! # cambot-core
//!
//! cambot's persistence. [`Store`] (with [`MessageStore`], [`GroupStore`], [`SessionStore`],
//! [`TaskStore`], [`UserStore`], [`VaultStore`] and [`WorkflowStore`]) is the async seam the
//! router, scheduler, host tools, web chat, workflows and admin CLI use; [`SqliteStore`]
//! implements it on one SQLite file in WAL mode.
//!
//! Every key includes the tenant. Messages carry a monotonic arrival `seq`, and the router's
//! cursor is a seq, so no two messages can hide each other by sharing a timestamp.
//!
//! Writes on the hot paths (messages, cursor moves, replies, sessions) go through one
//! group-commit writer thread: each batch is one transaction, and each caller is answered after
//! the commit. SQLite's WAL is the only journal. No SQL runs on a caller's runtime thread: the
//! connections are reachable only from the writer thread and the blocking pool.
//!
//! This crate knows nothing about channels, sandboxes or models; it stores and returns rows.

#![forbid(unsafe_code)]

mod error;
mod model;
mod sqlite;
mod store;
pub mod time;
mod vault_store;
mod workflow_store;

pub use error::BackendError;
pub use error::Result;
pub use error::StoreError;
pub use model::*;
pub use sqlite::SqliteStore;
pub use sqlite::supported_schema_version;
pub use store::GroupStore;
pub use store::MessageStore;
pub use store::MountRootStore;
pub use store::SessionStore;
pub use store::Store;
pub use store::StoreFuture;
pub use store::TaskStore;
pub use store::TenantStore;
pub use store::UserStore;
pub use vault_store::VaultDekRow;
pub use vault_store::VaultKeyChange;
pub use vault_store::VaultSecretRow;
pub use vault_store::VaultStore;
pub use workflow_store::OnceReply;
pub use workflow_store::WorkflowDefRow;
pub use workflow_store::WorkflowRunRow;
pub use workflow_store::WorkflowRunState;
pub use workflow_store::WorkflowStepChange;
pub use workflow_store::WorkflowStepRow;
pub use workflow_store::WorkflowStepState;
pub use workflow_store::WorkflowStore;
