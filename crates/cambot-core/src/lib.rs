//! # cambot-core
//!
//! cambot's persistence: one SQLite database (bundled SQLite, WAL, foreign keys, busy timeout),
//! versioned migrations, and repository methods on [`Store`] for chats and messages, registered
//! groups, sessions, router cursors and the reply outbox, scheduled tasks and their run log.
//!
//! Every key includes the tenant. Messages carry a monotonic arrival `seq`, and the router's
//! cursor is a seq, so no two messages can hide each other by sharing a timestamp.
//!
//! Writes on the hot paths (messages, cursor moves, replies, sessions) go through one
//! group-commit writer thread: each batch is one transaction, and each caller is answered after
//! the commit. SQLite's WAL is the only journal.
//!
//! This crate knows nothing about channels, sandboxes or models; it stores and returns rows.
//! The orchestrator talks to it through [`Store`]'s methods only, which is the seam for another
//! backend later.

mod batch;
mod cursors;
mod db;
mod error;
mod groups;
mod legacy_journal;
mod message_writer;
mod messages;
mod sessions;
mod task_claims;
mod tasks;
pub mod time;
mod web;

pub use cursors::CursorMove;
pub use cursors::OutboxEntry;
pub use db::Store;
pub use db::supported_schema_version;
pub use error::Result;
pub use error::StoreError;
pub use groups::GroupRegistration;
pub use messages::Arrival;
pub use messages::AvailableGroup;
pub use messages::GROUP_SYNC_JID;
pub use messages::StoredMessage;
pub use task_claims::Claim;
pub use task_claims::DueRow;
pub use task_claims::RunOutcomeRecord;
pub use tasks::ContextMode;
pub use tasks::MissedRunPolicy;
pub use tasks::ScheduledTask;
pub use tasks::TaskRun;
pub use tasks::TaskStatus;
pub use web::ChatHistoryMessage;
pub use web::ChatReply;
pub use web::RefreshRotation;
pub use web::RefreshTokenRow;
pub use web::SigningKeyRow;
pub use web::WebSessionRow;
pub use web::WebUserRow;
