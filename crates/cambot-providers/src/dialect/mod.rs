//! One small codec per wire dialect: request encoding, stream decoding, error parsing.
//! Everything here is pure (no I/O), so it is tested with recorded wire bytes.

pub(crate) mod anthropic;
pub(crate) mod ollama;
pub(crate) mod openai;

use std::time::SystemTime;

use http::HeaderMap;
use http::HeaderValue;
use serde_json::Value;

use crate::config::Dialect;
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::error::ErrorKind;
use crate::error::ProviderError;
use crate::framing::Frame;
use crate::framing::Framing;
use crate::retry;
use crate::types::InvalidToolInput;
use crate::types::ModelRequest;
use crate::types::StreamEvent;

/// Encodes the JSON body of a streamed chat call.
pub(crate) fn encode(
    config: &ProviderConfig,
    request: &ModelRequest,
) -> Result<Value, ProviderError> {
    let model = request
        .model
        .as_deref()
        .or(config.model.as_deref())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ProviderError::InvalidRequest(format!(
                "provider {}: no model configured and none in the request",
                config.name
            ))
        })?;
    let max_tokens = request.max_tokens.unwrap_or(config.max_tokens);
    match config.dialect {
        Dialect::Anthropic => anthropic::encode(model, max_tokens, request),
        Dialect::OpenAi => openai::encode(model, max_tokens, request),
        Dialect::Ollama => ollama::encode(model, max_tokens, config.num_ctx, request),
    }
}

/// Headers a dialect always sends (besides credentials).
pub(crate) fn request_headers(dialect: Dialect) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match dialect {
        Dialect::Anthropic => {
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                "anthropic-version",
                HeaderValue::from_static(crate::auth::ANTHROPIC_VERSION),
            );
        }
        Dialect::OpenAi => {
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        Dialect::Ollama => {
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
    }
    h
}

pub(crate) fn framing(dialect: Dialect) -> Framing {
    match dialect {
        Dialect::Anthropic | Dialect::OpenAi => Framing::Sse,
        Dialect::Ollama => Framing::Ndjson,
    }
}

/// Whether a 2xx response's content type is one this dialect streams. A missing header is
/// accepted.
pub(crate) fn accepts_content_type(dialect: Dialect, content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let ct = ct.to_ascii_lowercase();
    match dialect {
        Dialect::Anthropic | Dialect::OpenAi => ct.starts_with("text/event-stream"),
        Dialect::Ollama => {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/json")
        }
    }
}

/// The incremental stream decoder of one call.
#[derive(Debug)]
pub(crate) enum Decoder {
    Anthropic(anthropic::StreamDecoder),
    OpenAi(openai::StreamDecoder),
    Ollama(ollama::StreamDecoder),
}

impl Decoder {
    pub(crate) fn new(dialect: Dialect) -> Self {
        match dialect {
            Dialect::Anthropic => Self::Anthropic(anthropic::StreamDecoder::default()),
            Dialect::OpenAi => Self::OpenAi(openai::StreamDecoder::default()),
            Dialect::Ollama => Self::Ollama(ollama::StreamDecoder::default()),
        }
    }

    /// Decodes one frame. `Err` is a stream-level failure (an error event, malformed data).
    pub(crate) fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ProviderError> {
        match self {
            Self::Anthropic(d) => d.frame(frame, out),
            Self::OpenAi(d) => d.frame(frame, out),
            Self::Ollama(d) => d.frame(frame, out),
        }
    }

    /// The body ended. `Err(IncompleteStream)` when the end-of-message marker never came.
    pub(crate) fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match self {
            Self::Anthropic(d) => d.finish(out),
            Self::OpenAi(d) => d.finish(out),
            Self::Ollama(d) => d.finish(out),
        }
    }

    /// Whether the end-of-message marker has been seen (later bytes are ignored).
    pub(crate) fn is_done(&self) -> bool {
        match self {
            Self::Anthropic(d) => d.done,
            Self::OpenAi(d) => d.done,
            Self::Ollama(d) => d.done,
        }
    }
}

/// Builds the [`ApiError`] of a non-2xx response.
pub(crate) fn api_error(
    dialect: Dialect,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let (error_type, message, kind) = match dialect {
        Dialect::Anthropic => anthropic::error_details(status, json.as_ref()),
        Dialect::OpenAi => openai::error_details(status, json.as_ref()),
        Dialect::Ollama => ollama::error_details(status, json.as_ref()),
    };
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status} with an empty body")
        } else {
            text.chars().take(500).collect()
        }
    });
    ApiError {
        status: Some(status),
        kind,
        error_type,
        message,
        retry_after: retry::retry_after(headers, SystemTime::now()),
        should_retry: retry::should_retry(headers),
        request_id: retry::request_id(headers),
    }
}

/// Maps a provider's error type string (Anthropic and OpenAI spellings) to a kind.
pub(crate) fn kind_from_type(error_type: &str) -> Option<ErrorKind> {
    Some(match error_type {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" | "invalid_api_key" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" | "model_not_found" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" | "rate_limit_exceeded" => ErrorKind::RateLimited,
        "insufficient_quota" | "billing_error" => ErrorKind::QuotaExceeded,
        "overloaded_error" => ErrorKind::Overloaded,
        "api_error" | "server_error" | "internal_error" => ErrorKind::Server,
        "timeout_error" => ErrorKind::RequestTimeout,
        _ => return None,
    })
}

/// Parses streamed tool arguments. Empty text is `{}`; anything that is not a JSON object is
/// reported as [`InvalidToolInput`] with `{}` as the input, never as a failure of the call.
pub(crate) fn parse_tool_args(raw: &str) -> (Value, Option<InvalidToolInput>) {
    if raw.trim().is_empty() {
        return (Value::Object(Default::default()), None);
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => (v, None),
        Ok(other) => (
            Value::Object(Default::default()),
            Some(InvalidToolInput {
                raw: raw.to_owned(),
                error: format!("expected a JSON object, got {}", json_type(&other)),
            }),
        ),
        Err(e) => (
            Value::Object(Default::default()),
            Some(InvalidToolInput {
                raw: raw.to_owned(),
                error: e.to_string(),
            }),
        ),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value as text for error messages and ids (`"x"` → `x`, `400` → `400`).
pub(crate) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

pub(crate) fn decode_json(data: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(data).map_err(|source| ProviderError::DecodeJson {
        snippet: data.chars().take(200).collect(),
        source,
    })
}
