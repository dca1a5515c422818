//! The accept loop of a run's socket: hyper's HTTP/1.1 server with the limits a run may not
//! exceed, however it behaves.
//!
//! At most [`SocketLimits::max_connections`] connections are served at once; a further
//! connection is not refused but waits, unaccepted, in the socket's backlog until one ends
//! (a burst of honest calls slows down instead of failing). A connection that sends no
//! complete request head within [`SocketLimits::header_read_timeout`] (an idle keep-alive, a
//! slow writer) is closed, so waiting is bounded. Request heads over
//! [`SocketLimits::max_header_bytes`] get 431 and the connection is closed; bodies are capped
//! per route by the router (413).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits of every run's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// Largest request head (request line + headers), bytes; at least 8 KiB.
    pub max_header_bytes: usize,
    /// Largest request body of a host tool (`/v1/ipc/*`, `/v1/fetch`), bytes.
    pub max_ipc_body_bytes: usize,
    /// Time a connection may take to send a complete request head, idle keep-alive included.
    pub header_read_timeout: Duration,
}

impl Default for SocketLimits {
    /// 8 connections, 16 KiB heads, 256 KiB tool bodies, 30 s to send a head.
    fn default() -> Self {
        Self {
            max_connections: 8,
            max_header_bytes: 16 * 1024,
            max_ipc_body_bytes: 256 * 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// hyper refuses a read buffer under 8 KiB; a head limit must fit in it.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Serves `app` on `listener` until `stop` fires, then lets open connections finish.
pub(crate) async fn serve(
    listener: UnixListener,
    app: Router,
    limits: SocketLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        // A slot first: while every slot is taken, new connections stay in the backlog.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "run socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES) * 2)
                .max_header_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "run socket connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}
