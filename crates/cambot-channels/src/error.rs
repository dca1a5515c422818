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
    #[error("cambot is shutting down")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Storage(String),
    /// The store failed; shared so that the error stays `Clone` and keeps its cause.
    #[error("storage failed: {0}")]
    Store(#[source] Arc<StoreError>),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
}

impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}
