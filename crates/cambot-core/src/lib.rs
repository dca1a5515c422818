//! # cambot-core
//!
//! cambot's persistence: one SQLite database (bundled SQLite, WAL, foreign keys, busy timeout),
//! versioned migrations, and repository methods on [`Store`] for chats and messages, registered
//! groups, sessions, router cursors and the reply outbox, scheduled tasks and their run log.
//!
//! Every key includes the tenant. Messages carry a monotonic arrival `seq`, and the router's
//! cursor is a seq, so no two messages can hide each other by sharing a timestamp.
//!
//! The daemon opens its store with [`Store::open_owning_messages`]: it acknowledges a message once
//! it is appended to an ingest journal, and moves messages into SQLite in batches beside the
//! router; reads merge the messages not moved yet (`docs/ingest-journal.md`).
//!
//! This crate knows nothing about channels, sandboxes or models; it stores and returns rows.
//! The orchestrator talks to it through [`Store`]'s methods only, which is the seam for another
//! backend later.

mod backstop;
mod batch;
mod checkpoint;
mod cursors;
mod db;
mod error;
mod groups;
mod held;
mod ingest;
mod ingest_loop;
mod journal;
mod journal_lock;
mod known_ids;
mod message_writer;
mod messages;
mod mover;
mod overlay;
mod priority;
mod run_state;
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
