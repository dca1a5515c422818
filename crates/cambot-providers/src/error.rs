//! Errors of a model call, classified so callers can decide whether to retry.

use std::time::Duration;

/// What went wrong, independent of the dialect's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or unsupported. Not retried.
    InvalidRequest,
    /// 401: bad or missing key. Not retried.
    Authentication,
    /// 403. Not retried.
    Permission,
    /// 404: unknown model or path. Not retried.
    NotFound,
    /// 413. Not retried.
    RequestTooLarge,
    /// 429 rate limit. Retried, honouring `retry-after`.
    RateLimited,
    /// A spending cap or exhausted quota (Anthropic `enforced_spend_limit_reached`, OpenAI
    /// `insufficient_quota`). Retrying cannot help; never retried.
    QuotaExceeded,
    /// 529 / `overloaded_error`. Retried with backoff.
    Overloaded,
    /// 500 and other 5xx. Retried.
    Server,
    /// 408 request timeout. Retried.
    RequestTimeout,
    /// 409 conflict. Retried (as the official SDKs do).
    Conflict,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kind a bare status implies.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 422 => Self::InvalidRequest,
            401 => Self::Authentication,
            403 => Self::Permission,
            404 => Self::NotFound,
            408 => Self::RequestTimeout,
            409 => Self::Conflict,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimited,
            529 => Self::Overloaded,
            s if s >= 500 => Self::Server,
            _ => Self::Other,
        }
    }

    /// Whether this class of error is worth another attempt.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Overloaded
                | Self::Server
                | Self::RequestTimeout
                | Self::Conflict
        )
    }
}

/// An error the provider reported, either as a non-2xx response or as an error event inside a
/// stream that had started with 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status; `None` for an error event inside a 200 stream.
    pub status: Option<u16>,
    pub kind: ErrorKind,
    /// The provider's own error type (`overloaded_error`, `insufficient_quota`…), when given.
    pub error_type: Option<String>,
    pub message: String,
    /// Delay the provider asked for (`retry-after-ms`, `retry-after`).
    pub retry_after: Option<Duration>,
    /// `x-should-retry: true|false`, which overrides the kind.
    pub should_retry: Option<bool>,
    /// `request-id` / `x-request-id`.
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn retryable(&self) -> bool {
        if self.kind == ErrorKind::QuotaExceeded {
            return false;
        }
        self.should_retry.unwrap_or_else(|| self.kind.retryable())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}")?,
            None => f.write_str("stream error")?,
        }
        if let Some(t) = &self.error_type {
            write!(f, " {t}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

/// A cause whose type belongs to the transport, not to this API (another [`crate::HttpTransport`]
/// has other error types).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every failure of a model call.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error. Retryable per [`ApiError::retryable`].
    #[error("provider error: {0}")]
    Api(Box<ApiError>),
    /// No connection could be made (socket missing, refused). Retryable.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection was not made in time. Retryable.
    #[error("cannot connect to {endpoint}: timed out after {after:?}")]
    ConnectTimeout { endpoint: String, after: Duration },
    /// The connection broke while sending the request or reading the response. Retryable
    /// (only while no output has been yielded).
    #[error("connection lost: {0}")]
    Connection(#[source] BoxError),
    /// No byte arrived within the idle timeout. Retryable (only while no output has been
    /// yielded).
    #[error("no data from the provider for {0:?}")]
    Timeout(Duration),
    /// The body ended before the dialect's end-of-message marker. Retryable (only while no
    /// output has been yielded).
    #[error("the response stream ended before the message was complete")]
    IncompleteStream,
    /// The provider sent something that is not its wire format. Not retried.
    #[error("malformed response: {0}")]
    Decode(String),
    /// A response line that is not UTF-8. Not retried.
    #[error("malformed response: response line is not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A response event that is not JSON; `snippet` is its start. Not retried.
    #[error("malformed response: {source} in {snippet:?}")]
    DecodeJson {
        snippet: String,
        #[source]
        source: serde_json::Error,
    },
    /// The request cannot be expressed in this dialect. Not retried.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request body cannot be encoded. Not retried.
    #[error("invalid request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The HTTP request cannot be built. Not retried.
    #[error("invalid request: {0}")]
    Request(#[source] http::Error),
    /// Bad provider configuration. Not retried.
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// A configured extra header that is not a valid HTTP header. Not retried.
    #[error("invalid provider configuration: header {name:?}: {source}")]
    Header {
        name: String,
        #[source]
        source: http::Error,
    },
}

impl ProviderError {
    /// Whether another attempt of the same call may succeed. The provider's own retry loop
    /// additionally never retries once output has been yielded.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Api(e) => e.retryable(),
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Connection(_)
            | Self::Timeout(_)
            | Self::IncompleteStream => true,
            Self::Decode(_)
            | Self::NotUtf8(_)
            | Self::DecodeJson { .. }
            | Self::InvalidRequest(_)
            | Self::Encode(_)
            | Self::Request(_)
            | Self::Config(_)
            | Self::Header { .. } => false,
        }
    }

    /// The delay the provider asked for before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            _ => None,
        }
    }

    /// The classified kind of an API error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Api(e) => Some(e.kind),
            _ => None,
        }
    }

    /// The API error details, when the provider reported one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ApiError> for ProviderError {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;
