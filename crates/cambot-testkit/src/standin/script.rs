//! What a stand-in answers: one [`Script`] per request, written once and rendered in the wire
//! dialect of whichever route the request hit.

use std::time::Duration;

use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) kind: Kind,
    /// Extra response headers.
    pub(crate) headers: Vec<(String, String)>,
    /// Delay before every rendered event (not before the response head).
    pub(crate) event_delay: Duration,
    /// Delay before the response head.
    pub(crate) head_delay: Duration,
    /// Re-chunk the body into pieces of this many bytes (tests framing across splits).
    pub(crate) byte_chunks: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Message(MessageScript),
    Error(ErrorScript),
    /// Exact bytes: status, content type, body pieces.
    Raw {
        status: u16,
        content_type: String,
        chunks: Vec<Vec<u8>>,
    },
    /// A short text derived from the request (`echo: <last user text>`), for load tests.
    Echo,
    /// Answers with `quote: <the last tool result's text>` (at most this many characters).
    QuoteToolResult(usize),
}

/// A streamed assistant message.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessageScript {
    pub(crate) blocks: Vec<Block>,
    /// Canonical (Anthropic) spelling; mapped per dialect. `None`: `tool_use` when the message
    /// has tool calls, else `end_turn`.
    pub(crate) stop_reason: Option<String>,
    pub(crate) stop_sequence: Option<String>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) model: Option<String>,
    pub(crate) interrupt: Option<Interrupt>,
    /// OpenAI: interleave the fragments of parallel tool calls round-robin by index.
    pub(crate) interleave_tools: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Block {
    Text(Vec<String>),
    Thinking {
        chunks: Vec<String>,
        signature: String,
    },
    RedactedThinking(String),
    Tool(ToolCall),
}

/// How a stream is cut short after `after` rendered events (message_start counts as one).
#[derive(Debug, Clone)]
pub(crate) struct Interrupt {
    pub(crate) after: usize,
    pub(crate) how: InterruptKind,
}

#[derive(Debug, Clone)]
pub(crate) enum InterruptKind {
    /// An in-stream error event in the dialect's shape.
    Error { error_type: String, message: String },
    /// The connection is cut without finishing the chunked body.
    Drop,
    /// Nothing more is ever sent (timeouts, cancellation).
    Stall,
    /// The body ends cleanly but without the end-of-message marker.
    End,
}

/// One tool call the model makes.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    /// The argument text as fragments; concatenated they are the full argument JSON (or
    /// deliberately invalid text).
    pub(crate) fragments: Vec<String>,
    /// The parsed arguments when they are valid JSON (Ollama sends objects).
    pub(crate) input: Option<Value>,
}

impl ToolCall {
    /// A call with `input` as arguments, streamed in three fragments split mid-token.
    pub fn new(name: impl Into<String>, input: Value) -> Self {
        let text = input.to_string();
        Self {
            id: None,
            name: name.into(),
            fragments: split_in(&text, 3),
            input: Some(input),
        }
    }

    /// A call whose argument text is exactly `raw` (e.g. invalid JSON), in two fragments.
    pub fn raw(name: impl Into<String>, raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let input = serde_json::from_str(&raw).ok();
        Self {
            id: None,
            name: name.into(),
            fragments: split_in(&raw, 2),
            input,
        }
    }

    /// The call id (default: `toolu_standin_<n>` / `call_standin_<n>`; none for Ollama).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sends the argument text in exactly these fragments.
    pub fn fragments<S: Into<String>>(mut self, fragments: impl IntoIterator<Item = S>) -> Self {
        self.fragments = fragments.into_iter().map(Into::into).collect();
        self.input = serde_json::from_str(&self.fragments.concat()).ok();
        self
    }
}

/// An error response.
#[derive(Debug, Clone)]
pub(crate) struct ErrorScript {
    pub(crate) class: ErrorClass,
    pub(crate) message: String,
}

/// Error classes, rendered with each dialect's own status, type and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimited,
    /// OpenAI `insufficient_quota`, Anthropic spend cap (429 `enforced_spend_limit_reached`).
    QuotaExceeded,
    /// Anthropic 529 `overloaded_error`; OpenAI and Ollama 503.
    Overloaded,
    Server,
    /// Status and type verbatim in every dialect.
    Custom {
        status: u16,
        error_type: String,
    },
}

impl Script {
    fn of(kind: Kind) -> Self {
        Self {
            kind,
            headers: Vec::new(),
            event_delay: Duration::ZERO,
            head_delay: Duration::ZERO,
            byte_chunks: None,
        }
    }

    fn message_mut(&mut self) -> Option<&mut MessageScript> {
        match &mut self.kind {
            Kind::Message(m) => Some(m),
            _ => None,
        }
    }

    /// An empty assistant message; add blocks with [`Script::with_text`] and friends.
    pub fn message() -> Self {
        Self::of(Kind::Message(MessageScript {
            input_tokens: 25,
            ..MessageScript::default()
        }))
    }

    /// A text answer, streamed word by word.
    pub fn text(text: &str) -> Self {
        Self::message().with_text(text)
    }

    /// A text answer streamed in exactly these chunks.
    pub fn text_chunks<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self::message().with_text_chunks(chunks)
    }

    /// One tool call with `input` as arguments (fragmented), stop reason `tool_use`.
    pub fn tool_use(name: &str, input: Value) -> Self {
        Self::message().with_tool(ToolCall::new(name, input))
    }

    /// Several tool calls in one turn (parallel calls), in this order.
    pub fn tool_calls(calls: impl IntoIterator<Item = ToolCall>) -> Self {
        let mut s = Self::message();
        for c in calls {
            s = s.with_tool(c);
        }
        s
    }

    /// Answers with `echo: <the last user text>` (at most 40 characters of it).
    pub fn echo() -> Self {
        Self::of(Kind::Echo)
    }

    /// Answers with `quote: <the text of the last tool result in the request>`, at most
    /// `max_chars` of it: a model that read a tool's output and quotes it.
    pub fn quote_tool_result(max_chars: usize) -> Self {
        Self::of(Kind::QuoteToolResult(max_chars))
    }

    /// An error with an explicit status and error type, used verbatim by every dialect.
    pub fn error(status: u16, error_type: &str, message: &str) -> Self {
        Self::err(
            ErrorClass::Custom {
                status,
                error_type: error_type.to_owned(),
            },
            message,
        )
    }

    fn err(class: ErrorClass, message: &str) -> Self {
        Self::of(Kind::Error(ErrorScript {
            class,
            message: message.to_owned(),
        }))
    }

    /// 429 rate limit with `retry-after: <secs>` (Anthropic `rate_limit_error`, OpenAI
    /// `rate_limit_exceeded`).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::err(ErrorClass::RateLimited, "Rate limit exceeded").retry_after(retry_after_secs)
    }

    /// 429 that must not be retried: OpenAI `insufficient_quota`, Anthropic spend cap.
    pub fn insufficient_quota() -> Self {
        Self::err(
            ErrorClass::QuotaExceeded,
            "You exceeded your current quota, please check your plan and billing details.",
        )
    }

    /// Anthropic 529 `overloaded_error` (OpenAI and Ollama: 503).
    pub fn overloaded() -> Self {
        Self::err(ErrorClass::Overloaded, "Overloaded")
    }

    /// 500.
    pub fn server_error() -> Self {
        Self::err(ErrorClass::Server, "Internal server error")
    }

    /// 400.
    pub fn invalid_request(message: &str) -> Self {
        Self::err(ErrorClass::InvalidRequest, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::err(ErrorClass::Authentication, "invalid x-api-key")
    }

    /// 403.
    pub fn forbidden() -> Self {
        Self::err(ErrorClass::Permission, "permission denied")
    }

    /// 404 (model not found).
    pub fn not_found(message: &str) -> Self {
        Self::err(ErrorClass::NotFound, message)
    }

    /// Exactly these bytes, in these chunks, with this status and content type.
    pub fn raw<B: Into<Vec<u8>>>(
        status: u16,
        content_type: &str,
        chunks: impl IntoIterator<Item = B>,
    ) -> Self {
        Self::of(Kind::Raw {
            status,
            content_type: content_type.to_owned(),
            chunks: chunks.into_iter().map(Into::into).collect(),
        })
    }

    /// Appends a text block streamed word by word.
    pub fn with_text(self, text: &str) -> Self {
        self.with_text_chunks(split_words(text))
    }

    /// Appends a text block streamed in exactly these chunks.
    pub fn with_text_chunks<S: Into<String>>(
        mut self,
        chunks: impl IntoIterator<Item = S>,
    ) -> Self {
        let chunks = chunks.into_iter().map(Into::into).collect();
        if let Some(m) = self.message_mut() {
            m.blocks.push(Block::Text(chunks));
        }
        self
    }

    /// Appends a thinking block (streamed word by word) with its signature.
    pub fn with_thinking(mut self, thinking: &str, signature: &str) -> Self {
        if let Some(m) = self.message_mut() {
            m.blocks.push(Block::Thinking {
                chunks: split_words(thinking),
                signature: signature.to_owned(),
            });
        }
        self
    }

    /// Appends a redacted thinking block (Anthropic only; other dialects skip it).
    pub fn with_redacted_thinking(mut self, data: &str) -> Self {
        if let Some(m) = self.message_mut() {
            m.blocks.push(Block::RedactedThinking(data.to_owned()));
        }
        self
    }

    /// Appends a tool call.
    pub fn with_tool(mut self, call: ToolCall) -> Self {
        if let Some(m) = self.message_mut() {
            m.blocks.push(Block::Tool(call));
        }
        self
    }

    /// The stop reason in Anthropic's spelling (`end_turn`, `max_tokens`, `tool_use`,
    /// `stop_sequence`, or anything else, sent verbatim). OpenAI maps the known ones to
    /// `stop`/`length`/`tool_calls`; Ollama to `done_reason` `stop`/`length`.
    pub fn stop_reason(mut self, reason: &str) -> Self {
        if let Some(m) = self.message_mut() {
            m.stop_reason = Some(reason.to_owned());
        }
        self
    }

    /// The stop sequence reported (Anthropic only).
    pub fn stop_sequence(mut self, seq: &str) -> Self {
        if let Some(m) = self.message_mut() {
            m.stop_sequence = Some(seq.to_owned());
            m.stop_reason.get_or_insert_with(|| "stop_sequence".into());
        }
        self
    }

    /// Token counts reported (default 25 in, one per streamed chunk out).
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        if let Some(m) = self.message_mut() {
            m.input_tokens = input_tokens;
            m.output_tokens = output_tokens;
        }
        self
    }

    /// The model name reported (default: the request's `model`).
    pub fn model(mut self, model: &str) -> Self {
        if let Some(m) = self.message_mut() {
            m.model = Some(model.to_owned());
        }
        self
    }

    /// OpenAI: interleave the fragments of parallel tool calls by index.
    pub fn interleaved(mut self) -> Self {
        if let Some(m) = self.message_mut() {
            m.interleave_tools = true;
        }
        self
    }

    fn interrupt(mut self, after: usize, how: InterruptKind) -> Self {
        if let Some(m) = self.message_mut() {
            m.interrupt = Some(Interrupt { after, how });
        }
        self
    }

    /// After `after` events, an in-stream error event (`overloaded_error`, ...).
    pub fn error_after(self, after: usize, error_type: &str, message: &str) -> Self {
        self.interrupt(
            after,
            InterruptKind::Error {
                error_type: error_type.to_owned(),
                message: message.to_owned(),
            },
        )
    }

    /// After `after` events the connection is dropped mid-body.
    pub fn drop_after(self, after: usize) -> Self {
        self.interrupt(after, InterruptKind::Drop)
    }

    /// After `after` events nothing more is ever sent.
    pub fn stall_after(self, after: usize) -> Self {
        self.interrupt(after, InterruptKind::Stall)
    }

    /// After `after` events the body ends cleanly, without the end-of-message marker.
    pub fn end_after(self, after: usize) -> Self {
        self.interrupt(after, InterruptKind::End)
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds `retry-after: <secs>`.
    pub fn retry_after(self, secs: u64) -> Self {
        self.header("retry-after", &secs.to_string())
    }

    /// Waits this long before every event.
    pub fn event_delay(mut self, delay: Duration) -> Self {
        self.event_delay = delay;
        self
    }

    /// Waits this long before sending the response head.
    pub fn head_delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }

    /// Sends the body in pieces of `n` bytes, ignoring event boundaries.
    pub fn byte_chunks(mut self, n: usize) -> Self {
        self.byte_chunks = Some(n.max(1));
        self
    }
}

/// Words with their leading space kept (`"a b"` → `["a", " b"]`).
pub(crate) fn split_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(word.to_owned());
        } else {
            out.push(format!(" {word}"));
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

/// `text` in `n` roughly equal pieces on char boundaries (fewer if it is short).
pub(crate) fn split_in(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
