//! The runner's error type.

use cambot_providers::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The model call failed (after the provider's own retries).
    #[error("model call failed: {0}")]
    Provider(#[from] ProviderError),
    /// The transcript could not be read or written (an I/O or an encoding error).
    #[error("session {path}: {source}")]
    Session {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A protocol violation that ends the run (no `start`, stdout gone).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The host socket's address is not usable.
    #[error("protocol: {0}")]
    HostSocket(#[source] ProviderError),
    /// Anything else on the filesystem.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunnerError {
    /// Whether the host may retry the run's inputs in a new run.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Provider(e) => e.retryable(),
            Self::Session { .. } | Self::Io { .. } => true,
            Self::Protocol(_) | Self::HostSocket(_) => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
