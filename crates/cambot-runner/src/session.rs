//! The session transcript: one JSONL file per session, `<session dir>/<id>.jsonl`. Each line is
//! a [`Record`]: an optional compaction summary first, then the messages in order. Messages are
//! appended as they happen; compaction and rollback rewrite the file atomically.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use cambot_providers::ContentBlock;
use cambot_providers::Message;
use cambot_providers::Role;
use cambot_providers::ToolResult;
use serde::Deserialize;
use serde::Serialize;

use crate::error::RunnerError;

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// What older, compacted turns said; goes into the system prompt.
    Summary {
        text: String,
        /// Where the full text of the compacted turns was archived (as the agent sees it).
        archive: Option<String>,
        at: String,
    },
    Message {
        at: String,
        message: Message,
    },
}

/// A live session: its id, file and the conversation as the model sees it.
#[derive(Debug)]
pub struct Session {
    id: String,
    path: PathBuf,
    summary: Option<(String, Option<String>)>,
    messages: Vec<Message>,
    /// The session existed before this run.
    resumed: bool,
}

/// Whether `id` is usable as a session id (and so as a file name).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !id.starts_with('-')
}

/// A fresh random session id.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Session {
    /// Opens session `requested` in `dir` when it is a valid id (resuming its transcript if
    /// the file exists), or starts a new session.
    pub fn open(dir: &Path, requested: Option<&str>) -> Result<Self, RunnerError> {
        let id = match requested {
            Some(id) if valid_id(id) => id.to_owned(),
            Some(bad) => {
                tracing::warn!(session = bad, "unusable session id; starting a new session");
                new_id()
            }
            None => new_id(),
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| RunnerError::io(format!("create {}", dir.display()), e))?;
        let path = dir.join(format!("{id}.jsonl"));
        let mut session = Self {
            id,
            path,
            summary: None,
            messages: Vec::new(),
            resumed: false,
        };
        match std::fs::read_to_string(&session.path) {
            Ok(text) => {
                session.resumed = true;
                session.load(&text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if requested.is_some() {
                    tracing::info!(session = %session.id, "no transcript for this session yet; starting it");
                }
            }
            Err(e) => return Err(session.err(e)),
        }
        Ok(session)
    }

    fn load(&mut self, text: &str) {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(Record::Summary { text, archive, .. }) => {
                    self.summary = Some((text, archive));
                    self.messages.clear();
                }
                Ok(Record::Message { message, .. }) => self.messages.push(message),
                // A torn last line (the run was killed mid-write) or a foreign line: skip it.
                Err(e) => {
                    tracing::warn!(session = %self.id, line = i + 1, error = %e, "skipping an unreadable transcript line")
                }
            }
        }
        self.messages = repair(std::mem::take(&mut self.messages));
    }

    fn err(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> RunnerError {
        RunnerError::Session {
            path: self.path.display().to_string(),
            source: e.into(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn resumed(&self) -> bool {
        self.resumed
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The compaction summary text, if older turns were compacted.
    pub fn summary(&self) -> Option<&str> {
        self.summary.as_ref().map(|(t, _)| t.as_str())
    }

    /// Appends a message, to memory and to the file.
    pub fn push(&mut self, message: Message) -> Result<(), RunnerError> {
        let line = serde_json::to_string(&Record::Message {
            at: now(),
            message: message.clone(),
        })
        .map_err(|e| self.err(e))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| self.err(e))?;
        self.messages.push(message);
        Ok(())
    }

    /// Drops every message after the first `len` (a failed turn leaves no trace).
    pub fn truncate(&mut self, len: usize) -> Result<(), RunnerError> {
        if len >= self.messages.len() {
            return Ok(());
        }
        self.messages.truncate(len);
        self.rewrite()
    }

    /// Replaces the history with a summary of what was dropped and the kept messages.
    pub fn compact(
        &mut self,
        summary: String,
        archive: Option<String>,
        kept: Vec<Message>,
    ) -> Result<(), RunnerError> {
        self.summary = Some((summary, archive));
        self.messages = kept;
        self.rewrite()
    }

    fn rewrite(&self) -> Result<(), RunnerError> {
        let at = now();
        let mut out = String::new();
        let mut records = Vec::new();
        if let Some((text, archive)) = &self.summary {
            records.push(Record::Summary {
                text: text.clone(),
                archive: archive.clone(),
                at: at.clone(),
            });
        }
        records.extend(self.messages.iter().map(|m| Record::Message {
            at: at.clone(),
            message: m.clone(),
        }));
        for r in &records {
            out.push_str(&serde_json::to_string(r).map_err(|e| self.err(e))?);
            out.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, out).map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }
}

/// Makes a loaded history valid for any provider: a trailing assistant tool call without
/// results (the run died mid-turn) gets error results, and consecutive messages of one role
/// are merged (tool results first, as Anthropic requires).
pub fn repair(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for m in messages {
        if m.content.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == m.role => last.content.extend(m.content),
            _ => out.push(m),
        }
    }
    let dangling: Vec<ToolResult> = match out.last() {
        Some(last) if last.role == Role::Assistant => last
            .tool_uses()
            .map(|t| ToolResult::error(&t.id, "not run: the run ended before this call"))
            .collect(),
        _ => Vec::new(),
    };
    if !dangling.is_empty() {
        out.push(Message::tool_results(dangling));
    }
    // Providers want the conversation to open with the user.
    while out.first().is_some_and(|m| m.role != Role::User) {
        out.remove(0);
    }
    out
}

/// Whether `m` opens a turn: a user message with text and no tool results.
pub fn starts_turn(m: &Message) -> bool {
    m.role == Role::User
        && m.content
            .iter()
            .all(|b| !matches!(b, ContentBlock::ToolResult(_)))
}

/// A rough token estimate (4 bytes a token) of messages as serialised.
pub fn estimate_tokens(messages: &[Message]) -> u64 {
    let bytes: usize = messages
        .iter()
        .map(|m| serde_json::to_string(m).map_or(0, |s| s.len()))
        .sum();
    (bytes / 4) as u64
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
