//! The HTTP/1.1 server behind a stand-in: hyper, one task per connection, all owned by the
//! accept task (aborting it closes every connection).

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use http_body_util::StreamBody;
use hyper::Request;
use hyper::Response;
use hyper::body::Bytes;
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use serde_json::json;
use tokio::task::JoinSet;

use super::Dialect;
use super::RecordedRequest;
use super::State;
use super::render;
use super::render::Piece;
use super::render::RequestInfo;
use super::script::Script;

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

pub(crate) async fn serve_tcp(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, Arc::clone(&state)));
                }
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

pub(crate) async fn serve_unix(listener: tokio::net::UnixListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, Arc::clone(&state)));
                }
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection<S>(stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(req, state).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn route(method: &hyper::Method, path: &str) -> Option<Dialect> {
    if method != hyper::Method::POST {
        return None;
    }
    if path.ends_with("/messages") {
        Some(Dialect::Anthropic)
    } else if path.ends_with("/chat/completions") {
        Some(Dialect::OpenAi)
    } else if path.ends_with("/api/chat") {
        Some(Dialect::Ollama)
    } else {
        None
    }
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let raw_body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    let dialect = route(&parts.method, &path);
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: body.clone(),
        raw_body,
        dialect,
        at: tokio::time::Instant::now(),
    };
    let Some(dialect) = dialect else {
        let seq = state.record(recorded);
        return other_route(&parts.method, &path, &body, seq);
    };
    let (seq, script) = state.take(recorded);
    let script = script.unwrap_or_else(|| {
        Script::error(
            500,
            "api_error",
            "stand-in: no scripted reply left for this request",
        )
    });
    let rendered = render::render(dialect, &script, &RequestInfo { body: &body, seq });
    if !rendered.head_delay.is_zero() {
        tokio::time::sleep(rendered.head_delay).await;
    }
    respond(rendered.status, &rendered.headers, rendered.pieces)
}

/// Health, model lists and token counting; anything else is a 404.
fn other_route(method: &hyper::Method, path: &str, body: &Value, seq: usize) -> Response<Body> {
    let (status, json) = match (method.as_str(), path) {
        ("GET", "/health") => (200, json!({"status": "ok"})),
        ("GET", p) if p.ends_with("/models") => (
            200,
            json!({"object": "list", "data": [{"id": "standin-model", "object": "model",
                "created": 1_764_547_200, "owned_by": "standin"}]}),
        ),
        ("GET", "/api/tags") => (
            200,
            json!({"models": [{"name": "standin-model", "model": "standin-model"}]}),
        ),
        ("POST", p) if p.ends_with("/messages/count_tokens") => {
            (200, json!({"input_tokens": body.to_string().len() / 4}))
        }
        _ => (
            404,
            json!({"type": "error", "error": {"type": "not_found_error",
                "message": format!("stand-in: no route {method} {path}")},
                "request_id": format!("req_standin_{seq}")}),
        ),
    };
    respond(
        status,
        &[("content-type".to_owned(), "application/json".to_owned())],
        vec![Piece::Data(Bytes::from(json.to_string()))],
    )
}

fn respond(status: u16, headers: &[(String, String)], pieces: Vec<Piece>) -> Response<Body> {
    let stream = futures::stream::unfold(pieces.into_iter(), |mut it| async move {
        loop {
            match it.next()? {
                Piece::Data(d) => return Some((Ok(Frame::data(d)), it)),
                Piece::Delay(d) => tokio::time::sleep(d).await,
                Piece::Drop => {
                    // Returning Pending first lets hyper flush what was written so far; then
                    // an error from the body makes it abort the connection mid-chunk.
                    tokio::task::yield_now().await;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let err = std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "stand-in dropped the stream",
                    );
                    return Some((Err(err), it));
                }
                Piece::Stall => futures::future::pending::<()>().await,
            }
        }
    });
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = StreamBody::new(stream.boxed());
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(StreamBody::new(futures::stream::empty().boxed()));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
