//! The model proxy: forwards a run's model request to the configured upstream, adding the run
//! tenant's credential on the way, and streams the answer back (status, body, the retry and
//! rate-limit headers the runner's provider code needs) with the tenant's secret values
//! redacted.
//!
//! What a run may ask is narrow: only the methods and paths its provider's dialect uses
//! ([`ALLOWED`], spelled exactly: no percent-encoding, no `.`/`..` or empty segments), only the
//! headers of [`PASS_REQUEST`] (never the run token, a client credential or a cookie), within
//! the run's [`RunBudget`](crate::RunBudget). An upstream's redirect is never followed: it
//! becomes a 502, so a compromised or misconfigured upstream cannot bounce the host's
//! credential-bearing request elsewhere. A tenant without the key its upstream needs gets a
//! clear, non-retryable refusal and nothing leaves the host.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use http_body_util::BodyExt;

use cambot_protocol::TenantId;

use crate::budget::RunMeter;
use crate::credential::credential_refusal;
use crate::gateway::Gateway;
use crate::redact::Redacted;
use crate::redact::Redactor;
use crate::response::error_response;
use crate::upstream::ModelUpstream;
use crate::upstream::Secret;
use crate::upstream::is_local_url;
use crate::usage::Metered;
use crate::usage::UsageScanner;

/// Where model routes start on a run's socket: `/v1/model/<provider>/<path>`.
pub(crate) const MODEL_PREFIX: &str = "/v1/model/";

/// `(dialect, method, path)` a run may reach, the path relative to the upstream's base URL
/// (an `openai` base URL usually ends in `/v1`, so its chat path is `chat/completions`).
/// The chat routes are the ones `cambot-providers` calls; the model lists are read-only.
const ALLOWED: &[(&str, &str, &str)] = &[
    ("anthropic", "POST", "v1/messages"),
    ("anthropic", "GET", "v1/models"),
    ("openai", "POST", "chat/completions"),
    ("openai", "GET", "models"),
    ("ollama", "POST", "api/chat"),
    ("ollama", "GET", "api/tags"),
];

/// Whether `method` on `path` (as the run spelled it, relative to the upstream's base URL) is
/// a route `dialect` uses; the refusal says why.
pub(crate) fn allowed_route(dialect: &str, method: &Method, path: &str) -> Result<(), String> {
    if path.contains('%') || path.contains('\\') {
        return Err("percent-encoded or backslashed paths are refused".to_owned());
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("empty, `.` and `..` path segments are refused".to_owned());
    }
    if ALLOWED
        .iter()
        .any(|(d, m, p)| *d == dialect && *m == method.as_str() && *p == path)
    {
        return Ok(());
    }
    Err(format!("not a route of the {dialect} dialect"))
}

/// Request headers a runner may pass through to the upstream.
const PASS_REQUEST: &[&str] = &[
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
];

/// Response headers passed back to the runner.
const PASS_RESPONSE: &[&str] = &[
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "request-id",
    "x-request-id",
];

fn auth_headers(upstream: &ModelUpstream, key: Option<&Secret>, headers: &mut HeaderMap) {
    let Some(key) = key else {
        return;
    };
    let value = match upstream.dialect.as_str() {
        "anthropic" => HeaderValue::from_str(key.expose()).map(|v| ("x-api-key", v)),
        "openai" => {
            HeaderValue::from_str(&format!("Bearer {}", key.expose())).map(|v| ("authorization", v))
        }
        _ => return,
    };
    if let Ok((name, mut v)) = value {
        v.set_sensitive(true);
        headers.insert(name, v);
    }
}

/// Why the upstream could not be reached. The message names the cause: it is logged and
/// returned to the run as is.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    #[error("connect {socket}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Handshake(#[source] hyper::Error),
    #[error("{0}")]
    Request(#[source] axum::http::Error),
    #[error("{0}")]
    Send(#[source] hyper::Error),
}

/// An upstream's answer whose head arrived; the body streams.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// One model request as the run sent it.
pub(crate) struct ModelCall<'a> {
    pub(crate) run: &'a str,
    pub(crate) tenant: &'a TenantId,
    /// The request's path as received (`/v1/model/<provider>/<path>`, still percent-encoded).
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: Method,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) meter: &'a Arc<RunMeter>,
    /// The one provider the run may use ([`crate::RunIdentity::model_provider`]).
    pub(crate) allowed_provider: Option<&'a str>,
}

impl Gateway {
    pub(crate) async fn proxy_model(&self, call: ModelCall<'_>) -> Response {
        let ModelCall {
            run,
            tenant,
            path: full_path,
            query,
            method,
            headers,
            body,
            meter,
            allowed_provider,
        } = call;
        let (provider, rest) = full_path
            .strip_prefix(MODEL_PREFIX)
            .and_then(|r| r.split_once('/'))
            .unwrap_or_default();
        if allowed_provider.is_some_and(|allowed| allowed != provider) {
            self.stats.refused_by_policy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(run, %tenant, provider, "model call to another provider than the run's refused");
            return error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("this run may call only its own provider, not {provider:?}"),
            );
        }
        let Some(upstream) = self.upstreams.get(provider) else {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no model provider named {provider:?}"),
            );
        };
        let local = is_local_url(&upstream.base_url);
        if self.policy.air_gapped && !local {
            self.stats.refused_by_policy.fetch_add(1, Ordering::Relaxed);
            return error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                "air-gapped: non-local upstream refused",
            );
        }
        if let Err(why) = allowed_route(&upstream.dialect, &method, rest) {
            self.stats.refused_by_policy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(run, provider, %method, path = %full_path, reason = %why, "model route refused");
            return error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("{method} {full_path} refused: {why}"),
            );
        }
        // Before the budget: a refused call costs the run nothing.
        let (key, redactor) = match self.model_key_and_redactor(tenant, upstream).await {
            Ok(found) => found,
            Err(e) => return credential_refusal(&e),
        };
        if let Err(spent) = meter.admit() {
            self.stats.refused_by_budget.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(run, provider, budget = %spent, "model call refused: budget exhausted");
            let mut resp = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exhausted",
                &format!("model budget exhausted: {spent}"),
            );
            // Waiting does not refill a run's budget: tell the provider code not to retry.
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
            return resp;
        }
        let mut out = HeaderMap::new();
        for name in PASS_REQUEST {
            if let Some(v) = headers.get(*name) {
                out.insert(*name, v.clone());
            }
        }
        if upstream.dialect == "anthropic" && !out.contains_key("anthropic-version") {
            out.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        auth_headers(upstream, key.as_ref(), &mut out);
        drop(key);
        let path = match query {
            Some(q) if !q.is_empty() => format!("/{rest}?{q}"),
            _ => format!("/{rest}"),
        };
        tracing::debug!(run, provider, path = %path, "model request");
        let result = if let Some(socket) = upstream.base_url.strip_prefix("unix:") {
            unix_request(socket, method, &path, out, body).await
        } else {
            if !local {
                self.stats
                    .non_local_upstream_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            let url = format!("{}{path}", upstream.base_url.trim_end_matches('/'));
            self.http
                .request(method, url)
                .headers(out)
                .body(body)
                .send()
                .await
                .map(|resp| Upstream {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: resp.bytes_stream().map_err(std::io::Error::other).boxed(),
                })
                .map_err(UpstreamError::Http)
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::warn!(run, provider, error = %reason, "model upstream unreachable");
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    &format!("model upstream unreachable: {reason}"),
                );
            }
        };
        if answer.status.is_redirection() {
            tracing::warn!(
                run,
                provider,
                status = answer.status.as_u16(),
                "model upstream redirected; not followed"
            );
            return error_response(
                StatusCode::BAD_GATEWAY,
                "upstream",
                &format!(
                    "model upstream answered {} (a redirect); the gateway never follows redirects",
                    answer.status.as_u16()
                ),
            );
        }
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        let scanner = UsageScanner::new(content_type);
        // Metered first: the usage reports are read from the upstream's own bytes.
        let body = Metered::new(answer.body, scanner, Arc::clone(meter));
        let body = Redacted::new(body, redactor.clone(), Arc::clone(&self.stats));
        let mut response = Response::new(Body::from_stream(body));
        *response.status_mut() = answer.status;
        for (name, value) in &answer.headers {
            let n = name.as_str();
            if PASS_RESPONSE.contains(&n)
                || n.starts_with("anthropic-ratelimit-")
                || n.starts_with("x-ratelimit-")
            {
                let value = self.redact_header(&redactor, value);
                response.headers_mut().insert(name.clone(), value);
            }
        }
        response
    }
}

impl Gateway {
    /// `value` with the tenant's secret values redacted.
    fn redact_header(&self, redactor: &Redactor, value: &HeaderValue) -> HeaderValue {
        let Some(clean) = redactor.redact(value.as_bytes()) else {
            return value.clone();
        };
        self.stats.redacted.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static("[REDACTED]"))
    }
}

/// One HTTP/1.1 request over a Unix socket (a local model server in its own sandbox).
async fn unix_request(
    socket: &str,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Upstream, UpstreamError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| UpstreamError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "unix upstream connection ended");
        }
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in &headers {
        req = req.header(name, value);
    }
    let req = req
        .body(http_body_util::Full::new(body))
        .map_err(UpstreamError::Request)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(UpstreamError::Send)?;
    let (parts, incoming) = resp.into_parts();
    Ok(Upstream {
        status: parts.status,
        headers: parts.headers,
        body: incoming
            .into_data_stream()
            .map_err(std::io::Error::other)
            .boxed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_the_provider_code_calls_is_allowed() {
        for dialect in cambot_providers::Dialect::ALL {
            for path in cambot_providers::auth::upstream_paths(dialect) {
                assert_eq!(
                    allowed_route(dialect.as_str(), &Method::POST, path),
                    Ok(()),
                    "{dialect:?} {path}"
                );
            }
        }
    }

    #[test]
    fn only_the_dialects_own_routes_pass() {
        let post = Method::POST;
        assert_eq!(allowed_route("anthropic", &post, "v1/messages"), Ok(()));
        assert_eq!(
            allowed_route("anthropic", &Method::GET, "v1/models"),
            Ok(())
        );
        assert_eq!(allowed_route("openai", &post, "chat/completions"), Ok(()));
        assert_eq!(allowed_route("ollama", &post, "api/chat"), Ok(()));
        assert_eq!(allowed_route("ollama", &Method::GET, "api/tags"), Ok(()));
        for (dialect, method, path) in [
            ("anthropic", Method::GET, "v1/messages"),
            ("anthropic", Method::POST, "v1/files"),
            ("anthropic", Method::DELETE, "v1/models"),
            ("anthropic", Method::POST, "chat/completions"),
            ("openai", Method::POST, "v1/messages"),
            ("openai", Method::POST, "files"),
            ("ollama", Method::POST, "api/pull"),
            ("ollama", Method::DELETE, "api/delete"),
            ("anthropic", Method::POST, "v1/messages/"),
            ("anthropic", Method::POST, "v1//messages"),
            ("anthropic", Method::POST, "v1/./messages"),
            ("anthropic", Method::POST, "v1/x/../messages"),
            ("anthropic", Method::POST, "v1%2fmessages"),
            ("anthropic", Method::POST, "v1/%6dessages"),
            ("anthropic", Method::POST, "v1\\messages"),
            ("anthropic", Method::POST, ""),
        ] {
            assert!(
                allowed_route(dialect, &method, path).is_err(),
                "{dialect} {method} {path:?} must be refused"
            );
        }
    }
}
