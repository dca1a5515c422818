//! Scripted stand-ins for model APIs, speaking the exact wire formats of
//! `shared/reference/llm-wire.md`: Anthropic Messages (SSE with `event:` lines), OpenAI Chat
//! Completions (data-only SSE ending in `[DONE]`) and Ollama `/api/chat` (NDJSON).
//!
//! One server answers every dialect's route (`…/v1/messages`, `…/chat/completions`,
//! `…/api/chat`, matched by suffix so gateway prefixes and `?beta=true` do not matter); each
//! request takes the next [`Script`] from the queue and renders it in the dialect of the route
//! it hit. Every request is recorded (method, path, headers, JSON body).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use cambot_testkit::standin::{Script, Standin, ToolCall};
//! use serde_json::json;
//! let server = Standin::anthropic()
//!     .reply(Script::tool_use("bash", json!({"command": "ls"})))
//!     .reply(Script::rate_limited(2))
//!     .reply(Script::text("done"))
//!     .start_tcp()
//!     .await?;
//! // point a client at server.base_url() ...
//! let first = &server.requests()[0];
//! assert_eq!(first.header("x-api-key"), Some("sk-test"));
//! # Ok(()) }
//! ```
//!
//! When the queue is empty the fallback answers (default: a 500 error saying the script ran
//! out, so an unexpected extra call fails loudly); [`Standin::fast_echo`] makes every request
//! answer at once with `echo: <last user text>`, for load tests.

pub mod llama;
mod render;
mod script;
mod server;
mod whole;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

pub use script::Script;
pub use script::ToolCall;
use tokio::sync::watch;

/// The wire dialects a stand-in speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `POST …/v1/messages` (and `/v1/messages/count_tokens`).
    Anthropic,
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST …/api/chat`.
    Ollama,
}

impl Dialect {
    /// The path prefix clients put in the base URL (`/v1` for OpenAI, nothing otherwise).
    pub fn base_path(self) -> &'static str {
        match self {
            Self::OpenAi => "/v1",
            Self::Anthropic | Self::Ollama => "",
        }
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    pub headers: hyper::HeaderMap,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: serde_json::Value,
    pub raw_body: hyper::body::Bytes,
    /// The dialect of the route, `None` for other routes.
    pub dialect: Option<Dialect>,
    /// When the request was complete (tokio time, so paused-time tests can measure the gap
    /// between a failed attempt and its retry).
    pub at: tokio::time::Instant,
}

impl RecordedRequest {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request's `messages` array (empty when absent).
    pub fn messages(&self) -> &[serde_json::Value] {
        self.body
            .get("messages")
            .and_then(serde_json::Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

pub(crate) struct State {
    queue: Mutex<VecDeque<Script>>,
    fallback: Mutex<Option<Script>>,
    requests: Mutex<Vec<RecordedRequest>>,
    record: bool,
    count: watch::Sender<usize>,
}

impl State {
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        // A panicking test thread must not hide the recorded requests from the others.
        crate::locks::lock("stand-in model server state", m)
    }

    /// Records a request; returns its 1-based sequence number.
    pub(crate) fn record(&self, request: RecordedRequest) -> usize {
        // Stored before the count moves: a waiter woken by the count must find the request.
        let mut requests = Self::lock(&self.requests);
        if self.record {
            requests.push(request);
        }
        let mut seq = 0;
        self.count.send_modify(|c| {
            *c += 1;
            seq = *c;
        });
        seq
    }

    /// Records a model call and picks the script that answers it.
    pub(crate) fn take(&self, request: RecordedRequest) -> (usize, Option<Script>) {
        let script = Self::lock(&self.queue)
            .pop_front()
            .or_else(|| Self::lock(&self.fallback).clone());
        (self.record(request), script)
    }
}

/// Builds a stand-in; see the module docs.
pub struct Standin {
    dialect: Dialect,
    queue: VecDeque<Script>,
    fallback: Option<Script>,
    record: bool,
}

impl Standin {
    /// A stand-in whose [`StandinHandle::base_url`] suits `dialect`'s clients.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            queue: VecDeque::new(),
            fallback: None,
            record: true,
        }
    }

    pub fn anthropic() -> Self {
        Self::new(Dialect::Anthropic)
    }

    pub fn openai() -> Self {
        Self::new(Dialect::OpenAi)
    }

    pub fn ollama() -> Self {
        Self::new(Dialect::Ollama)
    }

    /// Queues the answer to the next request.
    pub fn reply(mut self, script: Script) -> Self {
        self.queue.push_back(script);
        self
    }

    /// Answers every request once the queue is empty.
    pub fn fallback(mut self, script: Script) -> Self {
        self.fallback = Some(script);
        self
    }

    /// Every request without a queued script is answered at once with a short text.
    pub fn fast_echo(self) -> Self {
        self.fallback(Script::echo())
    }

    /// Does not keep requests (long load tests); counts still work.
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    fn state(self) -> (Dialect, Arc<State>) {
        let (count, _) = watch::channel(0);
        let state = State {
            queue: Mutex::new(self.queue),
            fallback: Mutex::new(self.fallback),
            requests: Mutex::new(Vec::new()),
            record: self.record,
            count,
        };
        (self.dialect, Arc::new(state))
    }

    /// Listens on `127.0.0.1:<random port>`.
    pub async fn start_tcp(self) -> std::io::Result<StandinHandle> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (dialect, state) = self.state();
        let task = tokio::spawn(server::serve_tcp(listener, Arc::clone(&state)));
        Ok(StandinHandle {
            dialect,
            listen: Listen::Tcp(addr),
            state,
            task,
        })
    }

    /// Listens on a Unix socket at `path` (removed again when the handle drops).
    pub async fn start_unix(self, path: impl AsRef<Path>) -> std::io::Result<StandinHandle> {
        let path = path.as_ref().to_path_buf();
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        let (dialect, state) = self.state();
        let task = tokio::spawn(server::serve_unix(listener, Arc::clone(&state)));
        Ok(StandinHandle {
            dialect,
            listen: Listen::Unix(path),
            state,
            task,
        })
    }
}

#[derive(Debug, Clone)]
enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running stand-in. Dropping it stops the server and closes its connections.
pub struct StandinHandle {
    dialect: Dialect,
    listen: Listen,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StandinHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandinHandle")
            .field("dialect", &self.dialect)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl StandinHandle {
    /// The base URL a client of the builder's dialect is configured with:
    /// `http://127.0.0.1:<port>` (+ `/v1` for OpenAI), or `unix:<path>` for a Unix socket
    /// (the server accepts OpenAI paths with and without `/v1`).
    pub fn base_url(&self) -> String {
        match &self.listen {
            Listen::Tcp(addr) => format!("http://{addr}{}", self.dialect.base_path()),
            Listen::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// `http://127.0.0.1:<port>` without any dialect path.
    pub fn root_url(&self) -> String {
        match &self.listen {
            Listen::Tcp(addr) => format!("http://{addr}"),
            Listen::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.listen {
            Listen::Tcp(a) => Some(*a),
            Listen::Unix(_) => None,
        }
    }

    pub fn socket_path(&self) -> Option<&Path> {
        match &self.listen {
            Listen::Tcp(_) => None,
            Listen::Unix(p) => Some(p),
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        State::lock(&self.state.requests).clone()
    }

    /// Request `n` (0-based), if it arrived.
    pub fn request(&self, n: usize) -> Option<RecordedRequest> {
        State::lock(&self.state.requests).get(n).cloned()
    }

    /// How many requests arrived (recorded or not).
    pub fn request_count(&self) -> usize {
        *self.state.count.borrow()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut rx = self.state.count.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Queues another answer.
    pub fn push(&self, script: Script) {
        State::lock(&self.state.queue).push_back(script);
    }

    /// Scripts not yet used.
    pub fn remaining(&self) -> usize {
        State::lock(&self.state.queue).len()
    }
}

impl Drop for StandinHandle {
    fn drop(&mut self) {
        self.task.abort();
        if let Listen::Unix(path) = &self.listen {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
#[path = "standin_tests.rs"]
mod tests;
