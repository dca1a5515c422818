//! The HTTP seam. A dialect builds an [`HttpRequest`] and reads an [`HttpResponse`]; how the
//! bytes travel is an [`HttpTransport`]. [`HyperTransport`] speaks plain HTTP/1.1 over a Unix
//! socket (the runner inside the sandbox, through the host gateway) or over TCP (local model
//! servers and test stand-ins). There is deliberately no TLS here: remote providers are reached
//! through the host gateway, which does TLS.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use http::HeaderMap;
use http::HeaderName;
use http::HeaderValue;
use http::Method;
use http::StatusCode;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use crate::error::ProviderError;

/// The body of a response, chunk by chunk as it arrives.
pub type BodyStream = BoxStream<'static, Result<Bytes, ProviderError>>;

/// One request, with its path relative to the transport's endpoint (e.g. `v1/messages`).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    /// Relative path, optionally with a query string; no leading `/` needed.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response whose head has arrived; the body streams.
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Moves one request to wherever the model is and returns the response as soon as its head
/// arrived.
///
/// Implementer contract: resolve with `Err` ([`ProviderError::Connect`] or
/// [`ProviderError::Connection`]) only when no response head was received; return every
/// status, 4xx/5xx included, as `Ok`; deliver the body incrementally (never buffer a stream);
/// when the returned body stream is dropped early, close the connection so the server stops
/// generating. Timeouts other than connecting are the caller's business.
pub trait HttpTransport: Send + Sync + 'static {
    fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, ProviderError>> + Send;
}

/// Where a [`HyperTransport`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` over TCP.
    Tcp { host: String, port: u16 },
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Plain HTTP/1.1 with hyper, one connection per request (cheap on loopback and Unix sockets;
/// dropping a stream closes exactly its own connection).
#[derive(Debug, Clone)]
pub struct HyperTransport {
    endpoint: Endpoint,
    /// Prepended to every request path; starts and ends without `/` (may be empty).
    prefix: String,
    /// Sent on every request (e.g. the run token).
    headers: HeaderMap,
    connect_timeout: Duration,
}

impl HyperTransport {
    /// A transport for `http://host[:port][/prefix]` or `unix:/path/to.sock`.
    /// `https://` is refused: TLS is the gateway's job.
    pub fn from_base_url(url: &str) -> Result<Self, ProviderError> {
        let (endpoint, prefix) = if let Some(path) = url.strip_prefix("unix:") {
            (Endpoint::Unix(PathBuf::from(path)), String::new())
        } else if let Some(rest) = url.strip_prefix("http://") {
            let (authority, prefix) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (host, port) = split_authority(authority)
                .ok_or_else(|| ProviderError::Config(format!("bad base URL {url:?}")))?;
            (
                Endpoint::Tcp { host, port },
                prefix.trim_matches('/').to_owned(),
            )
        } else if url.starts_with("https://") {
            return Err(ProviderError::Config(format!(
                "{url}: this transport speaks plain HTTP only; reach TLS upstreams through the host gateway"
            )));
        } else {
            return Err(ProviderError::Config(format!(
                "bad base URL {url:?}: expected http://host[:port][/prefix] or unix:/path"
            )));
        };
        Ok(Self {
            endpoint,
            prefix,
            headers: HeaderMap::new(),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// The runner's transport: the host gateway on `socket`, model route of `provider`
    /// (`/v1/model/<provider>/...`), carrying the per-run token in `x-cambot-run-token`.
    pub fn gateway(
        socket: impl Into<PathBuf>,
        provider: &str,
        run_token: &str,
    ) -> Result<Self, ProviderError> {
        let mut t = Self {
            endpoint: Endpoint::Unix(socket.into()),
            prefix: format!("v1/model/{provider}"),
            headers: HeaderMap::new(),
            connect_timeout: Duration::from_secs(10),
        };
        let mut token = HeaderValue::try_from(run_token)
            .map_err(|_| ProviderError::Config("run token is not a valid header value".into()))?;
        token.set_sensitive(true);
        t.headers.insert(
            HeaderName::from_static(cambot_protocol::RUN_TOKEN_HEADER),
            token,
        );
        Ok(t)
    }

    /// Adds a header sent on every request.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The absolute request target for a relative path.
    fn target(&self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        if self.prefix.is_empty() {
            format!("/{path}")
        } else {
            format!("/{}/{path}", self.prefix)
        }
    }

    async fn connect(&self) -> Result<Connection, ProviderError> {
        let connect_err = |source| ProviderError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        let fut = async {
            match &self.endpoint {
                Endpoint::Tcp { host, port } => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(connect_err)?;
                    // Small SSE chunks must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    handshake(stream).await
                }
                Endpoint::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(connect_err)?;
                    handshake(stream).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| ProviderError::ConnectTimeout {
                endpoint: self.endpoint.to_string(),
                after: self.connect_timeout,
            })?
    }
}

fn split_authority(authority: &str) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), 80)),
    }
}

/// A connected HTTP/1.1 client connection whose driver task is aborted on drop.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn handshake<S>(stream: S) -> Result<Connection, ProviderError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProviderError::Connection(e.into()))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "model connection ended with an error");
        }
    });
    Ok(Connection {
        sender,
        driver: AbortOnDrop(driver),
    })
}

impl HttpTransport for HyperTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderError> {
        let mut conn = self.connect().await?;
        let host = match &self.endpoint {
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
            Endpoint::Unix(_) => "localhost".to_owned(),
        };
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(self.target(&request.path))
            .header(http::header::HOST, host);
        if let Some(h) = builder.headers_mut() {
            h.extend(self.headers.clone());
            h.extend(request.headers);
        }
        let req = builder
            .body(Full::new(request.body))
            .map_err(ProviderError::Request)?;
        let response = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| ProviderError::Connection(e.into()))?;
        let (parts, body) = response.into_parts();
        let driver = conn.driver;
        let body = body
            .into_data_stream()
            .map_err(|e| ProviderError::Connection(e.into()))
            // The driver lives as long as the body: dropping the body closes the connection.
            .map(move |chunk| {
                let _keep = &driver;
                chunk
            })
            .boxed();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_into_endpoint_and_prefix() -> Result<(), ProviderError> {
        let t = HyperTransport::from_base_url("http://127.0.0.1:8081/v1/")?;
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 8081
            }
        );
        assert_eq!(t.target("chat/completions"), "/v1/chat/completions");
        let t = HyperTransport::from_base_url("http://localhost")?;
        assert_eq!(t.target("/api/chat"), "/api/chat");
        assert_eq!(t.endpoint.to_string(), "localhost:80");
        let t = HyperTransport::from_base_url("http://[::1]:9/x")?;
        assert_eq!(t.endpoint.to_string(), "::1:9");
        let t = HyperTransport::from_base_url("unix:/run/x.sock")?;
        assert_eq!(t.endpoint, Endpoint::Unix("/run/x.sock".into()));
        assert!(HyperTransport::from_base_url("https://api.openai.com/v1").is_err());
        assert!(HyperTransport::from_base_url("ftp://x").is_err());
        assert!(HyperTransport::from_base_url("http://h:notaport").is_err());
        Ok(())
    }

    #[test]
    fn the_gateway_transport_routes_by_provider_and_carries_the_token() -> Result<(), ProviderError>
    {
        let t = HyperTransport::gateway(cambot_protocol::HOST_SOCKET_PATH, "claude", "tok")?;
        assert_eq!(t.target("v1/messages"), "/v1/model/claude/v1/messages");
        assert_eq!(
            t.headers
                .get(cambot_protocol::RUN_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("tok")
        );
        Ok(())
    }
}
