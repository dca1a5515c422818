//! Compaction: when the transcript's estimated size passes `compact_after_tokens`, the older
//! turns are summarised by the model, their full text is archived under
//! `/workspace/group/conversations/<timestamp>.md`, and the transcript keeps the summary plus
//! the recent turns. A failed compaction is logged and the turn goes on uncompacted.

use std::path::PathBuf;

use cambot_protocol::RunnerToHost;
use cambot_providers::ContentBlock;
use cambot_providers::Message;
use cambot_providers::ModelRequest;
use cambot_providers::Provider;
use cambot_providers::Role;

use crate::agent::Agent;
use crate::error::RunnerError;
use crate::session;

/// Output tokens allowed for a summary.
const SUMMARY_MAX_TOKENS: u32 = 2048;

const SUMMARY_SYSTEM: &str = "You condense conversations. Summarise the conversation you are given so that an \
assistant continuing it knows every fact, decision, preference, open task, name, date and file path it \
will need. Plain text, no preamble.";

/// Where the older turns end: the first turn start from which the rest fits in half the
/// budget, or the last turn start. `None` when there is nothing older to compact.
pub fn split_point(messages: &[Message], limit: u64) -> Option<usize> {
    let starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(i, m)| *i > 0 && session::starts_turn(m))
        .map(|(i, _)| i)
        .collect();
    let fits = starts
        .iter()
        .copied()
        .find(|&s| session::estimate_tokens(&messages[s..]) <= limit / 2);
    fits.or_else(|| starts.last().copied())
}

/// The estimated size the budget is compared with.
pub fn estimate(summary: Option<&str>, messages: &[Message]) -> u64 {
    session::estimate_tokens(messages) + summary.map_or(0, |s| (s.len() / 4) as u64)
}

/// Compacts the agent's session when it is over budget. Returns whether it did.
pub async fn maybe_compact<P: Provider>(agent: &mut Agent<P>) -> bool {
    let limit = agent.start().limits.compact_after_tokens;
    let session = agent.session();
    if estimate(session.summary(), session.messages()) <= limit {
        return false;
    }
    let Some(split) = split_point(session.messages(), limit) else {
        return false;
    };
    match compact(agent, split).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "compaction failed; continuing with the full transcript");
            false
        }
    }
}

async fn compact<P: Provider>(agent: &mut Agent<P>, split: usize) -> Result<(), RunnerError> {
    let session = agent.session();
    let old = &session.messages()[..split];
    let rendered = render(old);
    let previous = session.summary().map(str::to_owned);
    let mut prompt = String::new();
    if let Some(p) = &previous {
        prompt.push_str(&format!("Summary of what came before:\n{p}\n\n"));
    }
    prompt.push_str("The conversation:\n\n");
    prompt.push_str(&rendered);
    let request = ModelRequest {
        model: Some(agent.start().model.model.clone()),
        system: Some(SUMMARY_SYSTEM.to_owned()),
        messages: vec![Message::user(prompt)],
        max_tokens: Some(SUMMARY_MAX_TOKENS.min(agent.start().model.max_tokens)),
        ..ModelRequest::default()
    };
    let summary = agent.stream(request, false).await?.text();
    let summary = summary.trim().to_owned();
    if summary.is_empty() {
        return Err(RunnerError::Protocol(
            "the model returned an empty summary".into(),
        ));
    }
    let archive = write_archive(agent, previous.as_deref(), &rendered)?;
    let shown = format!(
        "/workspace/group/conversations/{}",
        archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let kept = agent.session().messages()[split..].to_vec();
    agent
        .session_mut()
        .compact(summary, Some(shown.clone()), kept)?;
    tracing::info!(archive = %shown, messages = split, "compacted the transcript");
    agent
        .emit(RunnerToHost::Activity {
            kind: "compaction".into(),
            detail: Some(format!(
                "{split} older messages summarised; full text in {shown}"
            )),
        })
        .await;
    Ok(())
}

fn write_archive<P: Provider>(
    agent: &Agent<P>,
    previous: Option<&str>,
    rendered: &str,
) -> Result<PathBuf, RunnerError> {
    let dir = agent.env().group_dir().join("conversations");
    std::fs::create_dir_all(&dir)
        .map_err(|e| RunnerError::io(format!("create {}", dir.display()), e))?;
    let now = chrono::Utc::now();
    let stamp = now.format("%Y-%m-%dT%H-%M-%SZ").to_string();
    let mut path = dir.join(format!("{stamp}.md"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stamp}-{n}.md"));
        n += 1;
    }
    let mut text = format!(
        "# Conversation archived {}\n\nSession: {}\n\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        agent.session().id()
    );
    if let Some(p) = previous {
        text.push_str(&format!("## Summary of what came before\n\n{p}\n\n"));
    }
    text.push_str(rendered);
    std::fs::write(&path, text)
        .map_err(|e| RunnerError::io(format!("write {}", path.display()), e))?;
    Ok(path)
}

/// The full text of messages as Markdown.
pub fn render(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let who = match m.role {
            Role::User if session::starts_turn(m) => "User",
            Role::User => "Tool results",
            Role::Assistant => "Assistant",
        };
        out.push_str(&format!("### {who}\n\n"));
        for b in &m.content {
            match b {
                ContentBlock::Text { text } => out.push_str(&format!("{text}\n\n")),
                ContentBlock::ToolUse(t) => {
                    out.push_str(&format!("Tool call `{}`: `{}`\n\n", t.name, t.input));
                }
                ContentBlock::ToolResult(r) => out.push_str(&format!(
                    "Result{}:\n\n```\n{}\n```\n\n",
                    if r.is_error { " (error)" } else { "" },
                    r.content
                )),
                ContentBlock::Image { media_type, .. } => {
                    out.push_str(&format!("[image {media_type}]\n\n"));
                }
                ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            }
        }
    }
    out
}
