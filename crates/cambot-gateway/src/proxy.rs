//! The model proxy: forwards a run's model request to the configured upstream, adding the
//! credential on the way, and streams the answer back unchanged (status, body, the retry and
//! rate-limit headers the runner's provider code needs).

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::Response;
use futures::TryStreamExt;

use crate::gateway::Gateway;
use crate::response::error_response;
use crate::upstream::ModelUpstream;
use crate::upstream::is_local_url;

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

fn auth_headers(upstream: &ModelUpstream, headers: &mut HeaderMap) {
    let Some(key) = &upstream.api_key else {
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

/// One model request as the run sent it.
pub(crate) struct ModelCall<'a> {
    pub(crate) run: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) rest: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: Method,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Bytes,
}

impl Gateway {
    pub(crate) async fn proxy_model(&self, call: ModelCall<'_>) -> Response {
        let ModelCall {
            run,
            provider,
            rest,
            query,
            method,
            headers,
            body,
        } = call;
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
        let mut out = HeaderMap::new();
        for name in PASS_REQUEST {
            if let Some(v) = headers.get(*name) {
                out.insert(*name, v.clone());
            }
        }
        if upstream.dialect == "anthropic" && !out.contains_key("anthropic-version") {
            out.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        auth_headers(upstream, &mut out);
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
                .map(|resp| {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let stream = resp.bytes_stream().map_err(std::io::Error::other);
                    (status, headers, Body::from_stream(stream))
                })
                .map_err(UpstreamError::Http)
        };
        match result {
            Ok((status, up_headers, body)) => {
                let mut response = Response::new(body);
                *response.status_mut() = status;
                for (name, value) in &up_headers {
                    let n = name.as_str();
                    if PASS_RESPONSE.contains(&n)
                        || n.starts_with("anthropic-ratelimit-")
                        || n.starts_with("x-ratelimit-")
                    {
                        response.headers_mut().insert(name.clone(), value.clone());
                    }
                }
                response
            }
            Err(reason) => {
                tracing::warn!(run, provider, error = %reason, "model upstream unreachable");
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    &format!("model upstream unreachable: {reason}"),
                )
            }
        }
    }
}

/// One HTTP/1.1 request over a Unix socket (a local model server in its own sandbox).
async fn unix_request(
    socket: &str,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Body), UpstreamError> {
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
    Ok((parts.status, parts.headers, Body::new(incoming)))
}
