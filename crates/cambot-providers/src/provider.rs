//! The [`Provider`] trait and its one implementation over HTTP, [`HttpProvider`], which turns a
//! [`ProviderConfig`] (data) and an [`HttpTransport`] (the seam) into typed events, with
//! retries and timeouts.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::HeaderName;
use http::HeaderValue;
use http::Method;

use crate::auth;
use crate::collect;
use crate::config::Dialect;
use crate::config::ProviderConfig;
use crate::dialect;
use crate::dialect::Decoder;
use crate::error::ProviderError;
use crate::framing::Framer;
use crate::retry::RetryPolicy;
use crate::transport::BodyStream;
use crate::transport::HttpRequest;
use crate::transport::HttpTransport;
use crate::transport::HyperTransport;
use crate::types::AssistantMessage;
use crate::types::ModelRequest;
use crate::types::StreamEvent;

/// The events of one model call. Dropping it cancels the call (the connection closes).
pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// A model endpoint. The orchestrator and the runner only ever hold `Arc<dyn Provider>`;
/// which wire format is spoken is the provider's business.
///
/// Implementer contract: `stream` returns immediately (no I/O until polled); the stream
/// yields events per the [`StreamEvent`] contract and ends after `Stop`, or yields exactly one
/// `Err` and ends. Transient failures before any output event are retried inside; once an
/// output event was yielded, a failure is surfaced, never retried.
pub trait Provider: Send + Sync {
    /// The configured entry name.
    fn name(&self) -> &str;
    fn dialect(&self) -> Dialect;
    /// Starts a call.
    fn stream(&self, request: ModelRequest) -> EventStream;
}

/// Conveniences on every provider.
pub trait ProviderExt: Provider {
    /// Runs a call to completion and returns the whole assistant message.
    fn complete(
        &self,
        request: ModelRequest,
    ) -> impl Future<Output = Result<AssistantMessage, ProviderError>> + Send {
        collect::collect(self.stream(request))
    }
}

impl<P: Provider + ?Sized> ProviderExt for P {}

/// A provider reached over HTTP through transport `T`.
pub struct HttpProvider<T: HttpTransport = HyperTransport> {
    inner: Arc<Inner<T>>,
}

impl<T: HttpTransport> Clone for HttpProvider<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<T> {
    config: ProviderConfig,
    transport: T,
    /// Credential headers, only for direct connections (through the gateway the host adds
    /// them).
    auth_headers: Vec<(HeaderName, HeaderValue)>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl<T: HttpTransport> std::fmt::Debug for HttpProvider<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("name", &self.inner.config.name)
            .field("dialect", &self.inner.config.dialect)
            .field("authenticated", &!self.inner.auth_headers.is_empty())
            .finish_non_exhaustive()
    }
}

impl HttpProvider<HyperTransport> {
    /// The runner's provider: every call goes to the host gateway on `socket`
    /// (`/v1/model/<config.name>/<dialect path>` with the run token); no key here.
    pub fn via_gateway(
        config: ProviderConfig,
        socket: impl AsRef<Path>,
        run_token: &str,
    ) -> Result<Self, ProviderError> {
        let transport = HyperTransport::gateway(socket.as_ref(), &config.name, run_token)?
            .with_connect_timeout(config.connect_timeout());
        Self::new(config, transport)
    }

    /// A provider that talks to `config.base_url()` itself over plain HTTP (local model
    /// servers, stand-ins), sending `api_key` the dialect's way when given.
    pub fn direct(config: ProviderConfig, api_key: Option<&str>) -> Result<Self, ProviderError> {
        let transport = HyperTransport::from_base_url(config.base_url())?
            .with_connect_timeout(config.connect_timeout());
        let provider = Self::new(config, transport)?;
        match api_key {
            Some(key) => provider.with_api_key(key),
            None => Ok(provider),
        }
    }
}

impl<T: HttpTransport> HttpProvider<T> {
    pub fn new(config: ProviderConfig, transport: T) -> Result<Self, ProviderError> {
        config.validate()?;
        let mut extra_headers = Vec::new();
        for (k, v) in &config.headers {
            let header = |e: http::Error| ProviderError::Header {
                name: k.clone(),
                source: e,
            };
            let name = HeaderName::try_from(k.as_str()).map_err(|e| header(e.into()))?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| header(e.into()))?;
            extra_headers.push((name, value));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                auth_headers: Vec::new(),
                extra_headers,
            }),
        })
    }

    /// Sends `key` on every request, the configured auth style's way. Call it before the
    /// provider is cloned.
    pub fn with_api_key(mut self, key: &str) -> Result<Self, ProviderError> {
        let headers = auth::auth_headers(
            self.inner.config.dialect,
            self.inner.config.auth_style(),
            key,
        )?;
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(|| {
            ProviderError::Config("with_api_key on a provider that was already cloned".into())
        })?;
        inner.auth_headers = headers;
        Ok(self)
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    fn retry_policy(&self) -> RetryPolicy {
        let c = &self.inner.config;
        RetryPolicy {
            max_retries: c.max_retries(),
            initial_backoff: Duration::from_millis(c.initial_backoff_ms),
            max_backoff: Duration::from_millis(c.max_backoff_ms.max(c.initial_backoff_ms)),
        }
    }
}

impl<T: HttpTransport> Provider for HttpProvider<T> {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn dialect(&self) -> Dialect {
        self.inner.config.dialect
    }

    fn stream(&self, request: ModelRequest) -> EventStream {
        let call = Call {
            inner: Arc::clone(&self.inner),
            policy: self.retry_policy(),
            request,
            body: None,
            attempt: 0,
            phase: Phase::Start,
            ready: VecDeque::new(),
            held: Vec::new(),
            output_seen: false,
        };
        futures::stream::unfold(call, |mut call| async move {
            let item = call.next().await?;
            Some((item, call))
        })
        .boxed()
    }
}

// One `Phase` lives per call and is moved rarely: boxing the streaming state would cost an
// allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
enum Phase {
    Start,
    Streaming {
        body: BodyStream,
        framer: Framer,
        decoder: Decoder,
    },
    Done,
}

/// The state of one call across attempts.
struct Call<T> {
    inner: Arc<Inner<T>>,
    policy: RetryPolicy,
    request: ModelRequest,
    /// The encoded body, built on the first attempt and reused.
    body: Option<Bytes>,
    /// Attempts made so far.
    attempt: u32,
    phase: Phase,
    ready: VecDeque<Result<StreamEvent, ProviderError>>,
    /// Metadata events held back until the first output event, so a retry never repeats them.
    held: Vec<StreamEvent>,
    output_seen: bool,
}

/// Largest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl<T: HttpTransport> Call<T> {
    async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            match &mut self.phase {
                Phase::Done => return None,
                Phase::Start => match self.open().await {
                    Ok(body) => {
                        let dialect = self.inner.config.dialect;
                        self.phase = Phase::Streaming {
                            body,
                            framer: Framer::new(dialect::framing(dialect)),
                            decoder: Decoder::new(dialect),
                        };
                    }
                    Err(e) => self.fail(e).await,
                },
                Phase::Streaming {
                    body,
                    framer,
                    decoder,
                } => {
                    let idle = self.inner.config.idle_timeout();
                    let mut events = Vec::new();
                    let step = match tokio::time::timeout(idle, body.next()).await {
                        Err(_) => Err(ProviderError::Timeout(idle)),
                        Ok(Some(Err(e))) => Err(e),
                        Ok(Some(Ok(chunk))) => decode_chunk(framer, decoder, &chunk, &mut events),
                        Ok(None) => decode_end(framer, decoder, &mut events),
                    };
                    let finished = decoder.is_done();
                    self.accept(events);
                    match step {
                        Err(e) => self.fail(e).await,
                        Ok(()) if finished => {
                            self.ready.extend(self.held.drain(..).map(Ok));
                            self.phase = Phase::Done;
                        }
                        Ok(()) => {}
                    }
                }
            }
        }
    }

    /// Queues decoded events, holding metadata back until output starts.
    fn accept(&mut self, events: Vec<StreamEvent>) {
        for ev in events {
            if self.output_seen {
                self.ready.push_back(Ok(ev));
            } else if ev.is_output() {
                self.output_seen = true;
                self.ready.extend(self.held.drain(..).map(Ok));
                self.ready.push_back(Ok(ev));
            } else {
                self.held.push(ev);
            }
        }
    }

    /// Either schedules another attempt (after the right delay) or ends the stream with `e`.
    async fn fail(&mut self, e: ProviderError) {
        let retry = !self.output_seen && e.retryable() && self.attempt <= self.policy.max_retries;
        if retry {
            let delay = self.policy.delay(self.attempt - 1, e.retry_after());
            tracing::warn!(
                provider = %self.inner.config.name,
                attempt = self.attempt,
                delay_ms = delay.as_millis() as u64,
                error = %e,
                "model call failed; retrying"
            );
            self.held.clear();
            self.phase = Phase::Start;
            tokio::time::sleep(delay).await;
        } else {
            tracing::debug!(provider = %self.inner.config.name, error = %e, "model call failed");
            self.ready.push_back(Err(e));
            self.phase = Phase::Done;
        }
    }

    /// One attempt: send, check the status, hand back the body of a 2xx stream.
    async fn open(&mut self) -> Result<BodyStream, ProviderError> {
        self.attempt += 1;
        let config = &self.inner.config;
        let body = match &self.body {
            Some(b) => b.clone(),
            None => {
                let json = dialect::encode(config, &self.request)?;
                let bytes = Bytes::from(serde_json::to_vec(&json).map_err(ProviderError::Encode)?);
                self.body = Some(bytes.clone());
                bytes
            }
        };
        let mut headers = dialect::request_headers(config.dialect);
        for (k, v) in self
            .inner
            .extra_headers
            .iter()
            .chain(&self.inner.auth_headers)
        {
            headers.insert(k.clone(), v.clone());
        }
        let request = HttpRequest {
            method: Method::POST,
            path: auth::chat_path(config.dialect).to_owned(),
            headers,
            body,
        };
        let idle = config.idle_timeout();
        let response = tokio::time::timeout(idle, self.inner.transport.send(request))
            .await
            .map_err(|_| ProviderError::Timeout(idle))??;
        let status = response.status.as_u16();
        if !response.status.is_success() {
            let body = read_capped(response.body, idle).await;
            return Err(
                dialect::api_error(config.dialect, status, &response.headers, &body).into(),
            );
        }
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !dialect::accepts_content_type(config.dialect, content_type) {
            let ct = content_type.unwrap_or_default().to_owned();
            let body = read_capped(response.body, idle).await;
            let snippet: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(ProviderError::Decode(format!(
                "expected a stream, got content-type {ct:?}: {snippet}"
            )));
        }
        Ok(response.body)
    }
}

pub(crate) fn decode_chunk(
    framer: &mut Framer,
    decoder: &mut Decoder,
    chunk: &[u8],
    events: &mut Vec<StreamEvent>,
) -> Result<(), ProviderError> {
    let mut frames = Vec::new();
    // Frames completed before a bad line are decoded first, and bytes after the end-of-message
    // marker are ignored, so what a call yields never depends on where the network split it.
    let framed = framer.push(chunk, &mut frames);
    feed(decoder, &frames, events)?;
    if decoder.is_done() {
        return Ok(());
    }
    framed
}

/// The body ended: flushes the framer and tells the decoder.
pub(crate) fn decode_end(
    framer: &mut Framer,
    decoder: &mut Decoder,
    events: &mut Vec<StreamEvent>,
) -> Result<(), ProviderError> {
    let mut frames = Vec::new();
    framer.finish(&mut frames)?;
    feed(decoder, &frames, events)?;
    decoder.finish(events)
}

fn feed(
    decoder: &mut Decoder,
    frames: &[crate::framing::Frame],
    events: &mut Vec<StreamEvent>,
) -> Result<(), ProviderError> {
    for f in frames {
        decoder.frame(f, events)?;
    }
    Ok(())
}

/// Reads up to [`MAX_ERROR_BODY`] bytes of an error response; a broken or slow body just
/// ends the read.
async fn read_capped(mut body: BodyStream, idle: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    out.truncate(MAX_ERROR_BODY);
    out
}
