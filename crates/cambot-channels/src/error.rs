//! Channel errors.

use std::sync::Arc;

use cambot_core::StoreError;

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {channel} is not connected")]
    NotConnected { channel: String },
    #[error("channel {channel}: I/O error: {source}")]
    Io {
        channel: String,
        #[source]
        source: std::io::Error,
    },
    #[error("channel {channel} cannot deliver to {jid}: {reason}")]
    Delivery {
        channel: String,
        jid: String,
        reason: String,
    },
    #[error("channel configuration: {0}")]
    Config(String),
    /// A configuration file or value that could not be used; the cause is boxed so that the
    /// parsers' types stay out of this shared enum.
    #[error("channel configuration: {context}: {source}")]
    ConfigSource {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("channel configuration: {0}")]
    InvalidId(#[source] cambot_protocol::IdError),
    #[error(
        "no channels configured: enable at least one under [channels] (for example `[channels.cli] enabled = true`), or use `cambot chat`"
    )]
    NoChannels,
    #[error("cambot refused the request: {0}")]
    Host(#[from] HostError),
}

/// An error cambot reports back to a channel.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A chat, tenant or folder id the channel passed is not valid.
    #[error("invalid input: {0}")]
    InvalidId(#[source] cambot_protocol::IdError),
    #[error("cambot is shutting down")]
    ShuttingDown,
    /// A directory cambot needs could not be created; shared so that the error stays `Clone`.
    #[error("storage failed: creating {path}: {source}")]
    Directory {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The store failed; shared so that the error stays `Clone` and keeps its cause.
    #[error("storage failed: {0}")]
    Store(#[source] Arc<StoreError>),
    /// An attachment over a size or quota limit; the message is for the sender.
    #[error("{0}")]
    TooLarge(String),
    #[error("not found")]
    NotFound,
    /// Key material could not be sealed or opened (the message names no key or value).
    #[error("sealing key material: {0}")]
    Sealing(String),
    #[error("forbidden")]
    Forbidden,
}

impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}
