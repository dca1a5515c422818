//! # cambot-runner
//!
//! The program that runs inside every cambot sandbox. It reads the run's `start` line (and later
//! `message` / `close` lines) as JSON Lines on stdin, runs the agent loop (model call → tool
//! calls → tool results → … → final text) and streams [`RunnerToHost`] events as JSON Lines on
//! stdout. Logs go to stderr. See `docs/PROTOCOL.md` for both channels.
//!
//! - [`io`]: the stdin line reader (size-capped, precise parse errors) and the stdout writer.
//! - [`driver`]: one run: turns, follow-up messages queued as the next turn, `close`.
//! - [`agent`]: the agent loop of one turn, generic over [`cambot_providers::Provider`], with
//!   the stop rules (final text, max iterations, token budget, wall clock).
//! - [`tools`]: the tool table (one JSON Schema per tool, one source of truth), the sandbox
//!   tools confined to the workspace, and the host tools over the host socket.
//! - [`session`]: the JSONL transcript per session under `/workspace/session`.
//! - [`compact`]: summarising older turns and archiving them under `conversations/`.
//! - [`memory`]: the system prompt with the group's and the tenant's `CLAUDE.md`.
//! - [`documents`]: document extraction (`cambot-runner extract`), in the sandbox only.
//! - [`confine`]: Landlock, applied by the runner to itself (and by `cambot-sandbox-init`).
//!
//! The runner never holds a provider credential: every model call goes to the host gateway on
//! the run's socket (`/v1/model/<provider>/...`), which adds the key.
//!
//! [`RunnerToHost`]: cambot_protocol::RunnerToHost
#![forbid(unsafe_code)]

pub mod agent;
pub mod compact;
pub mod confine;
pub mod documents;
pub mod driver;
pub mod env;
pub mod error;
pub mod io;
pub mod memory;
pub mod session;
pub mod tools;

#[cfg(test)]
mod testing;

pub use agent::Agent;
pub use agent::TurnEnd;
pub use driver::run;
pub use env::RunnerEnv;
pub use error::RunnerError;

/// Capacity of the event channel to the stdout writer and of the input channel from stdin.
pub const CHANNEL_CAPACITY: usize = 256;
