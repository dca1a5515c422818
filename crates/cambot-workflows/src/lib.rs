//! # cambot-workflows
//!
//! Workflows: named, multi-step jobs a tenant defines in TOML and runs by hand or on a
//! schedule. This crate holds the definition format and its checks ([`Definition`]), the
//! templates (`{{ inputs.NAME }}`, `{{ steps.ID.output }}`; [`Template`]) and the durable run
//! state machine ([`Engine`]).
//!
//! ```toml
//! name = "daily-digest"
//! [inputs]
//! topic = { default = "our open issues" }
//! [trigger]
//! schedule = "0 8 * * 1-5"
//! [[steps]]
//! id = "summarize"
//! type = "agent"                    # agent | command | send
//! group = "team"
//! prompt = "Summarize {{ inputs.topic }} in five lines."
//! timeout_secs = 600
//! retries = 1
//! [[steps]]
//! id = "count"
//! type = "command"
//! group = "team"
//! command = "grep -c . summary.md"
//! [[steps]]
//! id = "post"
//! type = "send"
//! group = "team"
//! text = "{{ steps.summarize.output }}"
//! ```
//!
//! **Durability.** A run is rows in the store ([`cambot_core::WorkflowStore`]): the run, with
//! a copy of its definition and its inputs, and one row per step. A step is stored `running`
//! before it executes and `succeeded`/`failed`/`pending` (for a retry) after, each a
//! compare-and-set transaction. After a crash, [`Engine::drive`] continues each unfinished run
//! ([`Engine::unfinished`]) at its first unfinished step. A succeeded step is never re-run. A
//! step found `running` was interrupted mid-attempt: it runs again, and the interrupted attempt
//! counts against its `retries` (so `agent` and `command` steps are **at-least-once**). A `send`
//! step hands the sender an idempotency key (`workflow:<run>/<step>`) that is the same on every
//! attempt, and the sender queues one message per key, so its message is sent **exactly once**.
//!
//! **Isolation.** Every step names a group, which must be a group of the workflow's tenant:
//! checked on add and again before every attempt ([`GroupResolver`]). Inside a `command`,
//! every substituted value is one single-quoted shell word, and a reference where quoting
//! would not hold (inside quotes, a comment, backticks, a here-document) is refused on add, so
//! an agent's answer cannot inject shell syntax.
//!
//! **Not here.** Sandboxes, the group queue, models, channels and the outbox reach the engine
//! only through [`StepExecutor`]; the binary wires them. The `[trigger] schedule` is checked by
//! the scheduler's parser, handed in with [`Engine::with_schedule_check`] (this crate does not
//! link the scheduler).

#![forbid(unsafe_code)]

mod definition;
mod drive;
mod engine;
mod error;
mod executor;
mod template;

pub use definition::DEFAULT_RETRIES;
pub use definition::DEFAULT_TIMEOUT_SECS;
pub use definition::Definition;
pub use definition::SessionMode;
pub use definition::Step;
pub use definition::StepKind;
pub use drive::MAX_OUTPUT_BYTES;
pub use drive::idempotency_key;
pub use engine::Engine;
pub use engine::RunOutcome;
pub use engine::ScheduleCheck;
pub use error::DefinitionError;
pub use error::InvalidDefinition;
pub use error::Location;
pub use error::Problem;
pub use error::Result;
pub use error::WorkflowError;
pub use executor::GroupResolver;
pub use executor::StepAction;
pub use executor::StepCall;
pub use executor::StepExecutor;
pub use executor::StepFailure;
pub use executor::StepFuture;
pub use executor::StoreGroups;
pub use template::Reference;
pub use template::Template;
pub use template::TemplateError;
pub use template::Values;
pub use template::shell_quote;
