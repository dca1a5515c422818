//! A minimal HTTP/1.1 client over a Unix socket, for talking to a run's host socket in tests.

use std::path::Path;

use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Bytes;

/// One response: status and body parsed as JSON (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct UdsResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: serde_json::Value,
    pub raw: Bytes,
}

/// Sends one request and reads the whole response.
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> anyhow::Result<UdsResponse> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cambot")
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = match body {
        Some(v) => Bytes::from(serde_json::to_vec(v)?),
        None => Bytes::new(),
    };
    let resp = sender.send_request(req.body(Full::new(payload))?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    Ok(UdsResponse {
        status,
        headers,
        body,
        raw,
    })
}
