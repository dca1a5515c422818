//! The internal, dialect-neutral form of a model conversation: messages and their content
//! blocks, tool definitions, the request, the streamed events and the final assistant message.
//!
//! Every dialect codec translates to and from these types; the orchestrator and the runner never
//! see a wire format. The serde form mirrors Anthropic's block shapes (`{"type":"tool_use",...}`)
//! so transcripts stored by the runner stay readable.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// Who said a message. System text is not a message: it lives in [`ModelRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message holding one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// An assistant message holding one text block (also usable as a prefill when it is the
    /// last message of a request).
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// A user message carrying tool results, in the order given.
    pub fn tool_results(results: impl IntoIterator<Item = ToolResult>) -> Self {
        Self {
            role: Role::User,
            content: results.into_iter().map(ContentBlock::ToolResult).collect(),
        }
    }

    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls in this message, in the order the model made them.
    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUse> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse(t) => Some(t),
            _ => None,
        })
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// An inline image, base64-encoded.
    Image {
        media_type: String,
        data: String,
    },
    /// The model asks for a tool call (assistant messages only).
    ToolUse(ToolUse),
    /// The answer to a tool call (user messages only).
    ToolResult(ToolResult),
    /// Extended thinking. Must be passed back unchanged, signature included, in tool loops.
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Thinking the provider encrypted; passed back unchanged.
    RedactedThinking {
        data: String,
    },
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    /// Provider-assigned call id (`toolu_…`, `call_…`; synthesised for Ollama when absent).
    pub id: String,
    pub name: String,
    /// The arguments, always a JSON value (an object when the model behaved).
    pub input: Value,
    /// Set when the model sent arguments that are not valid JSON: `input` is then `{}` and the
    /// call must be answered with [`ToolUse::invalid_input_result`] instead of being run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_input: Option<InvalidToolInput>,
}

/// Arguments the model produced that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidToolInput {
    /// The raw argument text, as streamed (sent back verbatim in the history).
    pub raw: String,
    /// Why it was rejected.
    pub error: String,
}

impl ToolUse {
    /// The error tool result that answers a call whose arguments were not valid JSON, or
    /// `None` when the arguments were fine.
    pub fn invalid_input_result(&self) -> Option<ToolResult> {
        self.invalid_input.as_ref().map(|bad| {
            ToolResult::error(
                self.id.clone(),
                format!(
                    "The arguments of {} were not valid JSON ({}); nothing was run. Call the tool again with a JSON object.",
                    self.name, bad.error
                ),
            )
        })
    }
}

/// The answer to one [`ToolUse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    pub tool_use_id: String,
    pub content: String,
    #[serde(default)]
    pub is_error: bool,
}

impl ToolResult {
    pub fn ok(tool_use_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_use_id: tool_use_id.into(),
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(tool_use_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_use_id: tool_use_id.into(),
            content: content.into(),
            is_error: true,
        }
    }
}

/// A tool the model may call. `input_schema` is a JSON Schema object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// How the model must use the tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must call some tool (Anthropic `any`, OpenAI `required`).
    Any,
    /// The model must call this tool.
    Tool { name: String },
    /// No tool calls.
    None,
}

/// Extended thinking (Anthropic); ignored by dialects without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingConfig {
    pub budget_tokens: u32,
}

/// One model call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelRequest {
    /// Overrides the provider's configured model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `false` asks for at most one tool call per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Overrides the provider's configured `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
}

/// Why the model stopped. Unknown values are kept verbatim in [`StopReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Natural end (Anthropic `end_turn`, OpenAI `stop`, Ollama `stop`).
    EndTurn,
    /// Output token limit (`max_tokens`, `length`).
    MaxTokens,
    StopSequence,
    /// The model wants tool results (`tool_use`, `tool_calls`, or Ollama tool calls present).
    ToolUse,
    /// Anthropic paused a long server-side turn; send the response back to continue.
    PauseTurn,
    Refusal,
    /// OpenAI `content_filter`.
    ContentFilter,
    /// Anything else, verbatim.
    Other(String),
}

impl StopReason {
    /// The canonical name (Anthropic's spelling for the known ones).
    pub fn as_str(&self) -> &str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::ToolUse => "tool_use",
            Self::PauseTurn => "pause_turn",
            Self::Refusal => "refusal",
            Self::ContentFilter => "content_filter",
            Self::Other(s) => s,
        }
    }

    /// Parses the canonical names; anything else becomes [`StopReason::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "end_turn" => Self::EndTurn,
            "max_tokens" => Self::MaxTokens,
            "stop_sequence" => Self::StopSequence,
            "tool_use" => Self::ToolUse,
            "pause_turn" => Self::PauseTurn,
            "refusal" => Self::Refusal,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from_name(&s))
    }
}

/// Token counts of one call. Each [`StreamEvent::Usage`] is a cumulative snapshot: replace,
/// never add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// One event of a streamed response, in arrival order.
///
/// Contract of every dialect: content events of one tool call are
/// `ToolCallStart` → `ToolArgsDelta`* → `ToolCallEnd` (calls of one turn may interleave,
/// keyed by id); thinking is `ThinkingDelta`* → `ThinkingEnd`; a successful stream ends with
/// exactly one `Stop`, after the last `Usage`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The provider's message id and model name, when it sends them (first event).
    MessageStart {
        id: Option<String>,
        model: Option<String>,
    },
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    /// The current thinking block is complete.
    ThinkingEnd {
        signature: Option<String>,
    },
    /// A whole redacted thinking block.
    RedactedThinking {
        data: String,
    },
    ToolCallStart {
        id: String,
        name: String,
    },
    /// A raw fragment of the call's JSON arguments (not valid JSON on its own).
    ToolArgsDelta {
        id: String,
        fragment: String,
    },
    /// The call is complete; `input` is the parsed arguments.
    ToolCallEnd {
        id: String,
        input: Value,
        /// Set (and `input` = `{}`) when the arguments were not valid JSON.
        invalid_input: Option<InvalidToolInput>,
    },
    /// Cumulative usage so far.
    Usage(Usage),
    Stop {
        reason: StopReason,
        /// The stop sequence that matched, when the provider says.
        stop_sequence: Option<String>,
    },
}

impl StreamEvent {
    /// Whether this event is model output (as opposed to metadata). Once output has been
    /// yielded, a failed call is never retried.
    pub fn is_output(&self) -> bool {
        !matches!(self, Self::MessageStart { .. } | Self::Usage(_))
    }
}

/// A complete assistant turn, as collected from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AssistantMessage {
    pub id: Option<String>,
    pub model: Option<String>,
    /// Role is always assistant.
    pub message: Message,
    pub stop_reason: StopReason,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

impl AssistantMessage {
    pub fn text(&self) -> String {
        self.message.text()
    }

    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUse> {
        self.message.tool_uses()
    }
}
