//! # cambot-providers
//!
//! One [`Provider`] trait for every model API cambot talks to, and the wire dialects behind
//! it: Anthropic Messages, OpenAI Chat Completions (and every compatible server), Ollama
//! `/api/chat`. A provider is data ([`ProviderConfig`]: dialect, base URL, auth style, model,
//! retries, timeouts); the dialect decides the codec, an [`HttpTransport`] moves the bytes.
//!
//! - [`types`]: the internal conversation form (messages, [`ToolUse`], [`ToolResult`],
//!   JSON-Schema tool definitions) and the streamed [`StreamEvent`]s.
//! - [`HttpProvider`]: retries (the official SDKs' policy), idle timeouts, no retry once
//!   output has streamed. [`HttpProvider::via_gateway`] is the runner's constructor (Unix
//!   socket, no key), [`HttpProvider::direct`] talks plain HTTP to a local server.
//! - [`models`]: the pinned SHA-256 manifest of local model files and their verification.
//! - [`auth`]: pure helpers for the host gateway (credential headers, upstream paths).
//!
//! Not here: TLS (the host gateway does it), keys (the gateway or the caller passes them),
//! the agent loop (the runner).
#![forbid(unsafe_code)]

pub mod auth;
mod collect;
pub mod config;
mod dialect;
mod error;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod models;
mod provider;
pub mod retry;
pub mod transport;
pub mod types;

pub use collect::MessageCollector;
pub use collect::collect;
pub use config::AuthStyle;
pub use config::Dialect;
pub use config::KeyRef;
pub use config::ProviderConfig;
pub use config::provider_from_env;
pub use error::ApiError;
pub use error::BoxError;
pub use error::ErrorKind;
pub use error::ProviderError;
pub use error::Result;
pub use provider::EventStream;
pub use provider::HttpProvider;
pub use provider::Provider;
pub use provider::ProviderExt;
pub use transport::HttpRequest;
pub use transport::HttpResponse;
pub use transport::HttpTransport;
pub use transport::HyperTransport;
pub use types::AssistantMessage;
pub use types::ContentBlock;
pub use types::InvalidToolInput;
pub use types::Message;
pub use types::ModelRequest;
pub use types::Role;
pub use types::StopReason;
pub use types::StreamEvent;
pub use types::ThinkingConfig;
pub use types::ToolChoice;
pub use types::ToolDefinition;
pub use types::ToolResult;
pub use types::ToolUse;
pub use types::Usage;
