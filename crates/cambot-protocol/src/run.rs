//! The stdin/stdout protocol between the host and `cambot-runner`: JSON Lines, one object per
//! line, tagged by `type`. Nothing in here ever carries a secret: credentials stay on the host,
//! the runner reaches the model through its host socket. See `docs/PROTOCOL.md`.

use serde::Deserialize;
use serde::Serialize;

use crate::ids::ChatJid;
use crate::ids::GroupFolder;
use crate::ids::RunId;
use crate::ids::TenantId;

/// Where the runner finds its host socket inside every sandbox.
pub const HOST_SOCKET_PATH: &str = "/run/cambot/host.sock";
/// The header that carries the per-run token on every host-socket request.
pub const RUN_TOKEN_HEADER: &str = "x-cambot-run-token";
/// Largest single JSON line either side accepts (a line past this is a protocol error).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Host -> runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostToRunner {
    /// The first line of every run.
    Start(Box<StartInput>),
    /// A follow-up user message for the live conversation; it becomes the next turn.
    Message { text: String },
    /// Finish the current turn, then exit.
    Close,
}

/// Everything a run needs to begin. Never a credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartInput {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub group_folder: GroupFolder,
    pub chat_jid: ChatJid,
    pub is_main: bool,
    /// The formatted `<messages>` block (or a task prompt).
    pub prompt: String,
    /// The session to resume; `None` starts a new transcript.
    #[serde(default)]
    pub session_id: Option<String>,
    /// A scheduled task's prompt is marked as not coming from the user (seed-spec 3.4).
    #[serde(default)]
    pub is_scheduled_task: bool,
    pub assistant_name: String,
    /// IANA zone name the group lives in (cron, "now" in prompts).
    pub timezone: String,
    /// That zone's clock when the run started, so the runner can show local time without a
    /// time-zone database of its own (which was a third of its start-up). `None`: show UTC.
    #[serde(default)]
    pub local_clock: Option<LocalClock>,
    /// Capability token for the host socket, valid for this run only. It grants nothing beyond
    /// what the socket itself already identifies, and is not a provider credential.
    pub host_token: String,
    pub model: ModelChoice,
    #[serde(default)]
    pub tools: ToolPolicy,
    #[serde(default)]
    pub limits: RunLimits,
}

/// A zone's offset from UTC and its abbreviation (`CET`, `+0530`), as of the run's start: a run
/// that lives across a daylight-saving change shows the old offset until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalClock {
    pub utc_offset_seconds: i32,
    pub abbreviation: String,
}

/// Which provider entry (by name, resolved by the host gateway) and model a run talks to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelChoice {
    /// Name of the provider entry in the host config; the runner calls
    /// `/v1/model/<provider>/...` and never learns the upstream address or key.
    pub provider: String,
    /// Wire dialect of that provider (`anthropic`, `openai`, `ollama`).
    pub dialect: String,
    pub model: String,
    pub max_tokens: u32,
}

/// Which tools the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPolicy {
    /// Every sandbox tool plus the host tools the group is entitled to.
    #[default]
    Full,
    /// Read-only file tools plus `send_message`; no bash, no writes, no scheduling.
    Readonly,
    /// No tools at all: plain chat.
    None,
}

/// Stop rules inside the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLimits {
    /// Model calls per turn before the runner stops with an error.
    pub max_iterations: u32,
    /// Input + output tokens per turn before the runner stops with an error.
    pub token_budget: u64,
    /// Seconds one turn may take end to end.
    pub wall_clock_secs: u64,
    /// Seconds one `bash` tool call may take.
    pub bash_timeout_secs: u64,
    /// Bytes of tool output returned to the model per call.
    pub tool_output_bytes: usize,
    /// Transcript tokens past which older turns are summarised and archived.
    pub compact_after_tokens: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            max_iterations: 25,
            token_budget: 400_000,
            wall_clock_secs: 1_800,
            bash_timeout_secs: 30,
            tool_output_bytes: 100 * 1024,
            compact_after_tokens: 60_000,
        }
    }
}

/// Runner -> host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerToHost {
    /// The runner parsed `start` and is about to call the model.
    Ready,
    /// Something happened (model call, tool call); keeps the host's idle timers honest.
    Activity {
        kind: String,
        detail: Option<String>,
    },
    /// Streamed model text, as it arrives.
    TextDelta { text: String },
    /// A turn finished. `text` is `None` when the turn produced no reply text. `inputs` counts
    /// the host inputs this turn answered (the `start` prompt and every `message` coalesced into
    /// it), in order, so the host knows exactly which chat messages now have their reply.
    Result {
        text: Option<String>,
        session_id: Option<String>,
        #[serde(default = "one")]
        inputs: u32,
    },
    /// The run failed; the runner exits after sending it. Inputs not yet answered by a `result`
    /// stay unanswered.
    Error { message: String, retryable: bool },
    /// An input line the runner rejected and skipped (malformed, over the size cap, or out of
    /// order); the run goes on. Kept apart from `error` so that the host never takes a skipped
    /// line for a failed run.
    Warning { message: String },
    /// Token usage of the last model call.
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
}

impl RunnerToHost {
    /// Parses one stdout line. Errors name the problem; the host logs and skips such lines.
    pub fn parse_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\r', '\n']))
    }

    /// One JSON line, newline-terminated.
    pub fn to_line(&self) -> String {
        to_line(self)
    }
}

impl HostToRunner {
    pub fn parse_line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\r', '\n']))
    }

    pub fn to_line(&self) -> String {
        to_line(self)
    }
}

fn one() -> u32 {
    1
}

fn to_line<T: Serialize>(value: &T) -> String {
    // Serialising these enums cannot fail: they hold only strings, numbers and bools.
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| {
        format!(
            "{{\"type\":\"error\",\"message\":\"serialise: {}\",\"retryable\":false}}",
            e.to_string().replace('"', "'")
        )
    });
    s.push('\n');
    s
}

/// The fixed paragraph that marks a scheduled task's prompt (seed-spec 3.4).
pub const SCHEDULED_TASK_PREFIX: &str = "[SCHEDULED TASK - The following message was sent automatically by a scheduled task, not coming directly from the user or group.]";

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
