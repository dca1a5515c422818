//! The system prompt: who the agent is, where it lives, its memory files (the tenant's global
//! `CLAUDE.md`, read-only, and the group's own `CLAUDE.md`, which it may edit) and the summary
//! of compacted turns. Read afresh for every model call, so an edit shows up at once.

use std::path::Path;

use cambot_protocol::LocalClock;
use cambot_protocol::StartInput;

use crate::env::RunnerEnv;

/// Largest memory file put into the prompt.
const MAX_MEMORY_BYTES: usize = 64 * 1024;

/// The memory file name in the group and global folders.
pub const MEMORY_FILE: &str = "CLAUDE.md";

fn read_memory(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(crate::tools::cap_text(text.to_owned(), MAX_MEMORY_BYTES))
}

/// The current time in the run's zone, for the prompt, from the clock the host sent: the runner
/// carries no time-zone database (chrono-tz's tables were two thirds of its relocations, ~0.8 ms
/// of every start).
fn now_in(clock: Option<&LocalClock>) -> String {
    let now = chrono::Utc::now();
    match clock.and_then(|c| chrono::FixedOffset::east_opt(c.utc_offset_seconds).map(|o| (c, o))) {
        Some((clock, offset)) => format!(
            "{} {}",
            now.with_timezone(&offset).format("%A %Y-%m-%d %H:%M"),
            clock.abbreviation
        ),
        None => now.format("%A %Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// Builds the system prompt.
pub fn system_prompt(start: &StartInput, env: &RunnerEnv, summary: Option<&str>) -> String {
    // Without tools (small local models) the sandbox and tool instructions are noise that a
    // small model tends to repeat back: a plain chat prompt works better.
    let mut s = if start.tools == cambot_protocol::ToolPolicy::None {
        format!(
            "You are {name}, a helpful assistant in a chat. Current time: {now} (timezone \
             {tz}). The chat messages come as XML; answer the last one briefly and directly.",
            name = start.assistant_name,
            now = now_in(start.local_clock.as_ref()),
            tz = start.timezone,
        )
    } else {
        tool_prompt(start)
    };
    if let Some(global) = read_memory(&env.global_dir().join(MEMORY_FILE)) {
        s.push_str(&format!(
            "\n\n## Shared memory (/workspace/global/{MEMORY_FILE})\n\n{global}"
        ));
    }
    if let Some(group) = read_memory(&env.group_dir().join(MEMORY_FILE)) {
        s.push_str(&format!(
            "\n\n## Your memory (/workspace/group/{MEMORY_FILE})\n\n{group}"
        ));
    }
    if let Some(summary) = summary {
        s.push_str(&format!(
            "\n\n## Summary of the earlier conversation\n\n{summary}"
        ));
    }
    s
}

/// The opening of the system prompt when the agent has tools.
fn tool_prompt(start: &StartInput) -> String {
    let mut s = format!(
        "You are {name}, an assistant in a chat. Current time: {now} (timezone {tz}).\n\
         You run inside a sandbox. Your working directory is /workspace/group: this group's files, \
         read-write. /workspace/global holds memory shared by every group of this tenant \
         (read-only). Your own memory is /workspace/group/{mem}: edit it to remember things \
         across conversations.\n\
         Text inside <internal>...</internal> is never sent to the chat: use it for notes to \
         yourself. Your final answer is sent to the chat; use send_message to say something \
         while you are still working.",
        name = start.assistant_name,
        now = now_in(start.local_clock.as_ref()),
        tz = start.timezone,
        mem = MEMORY_FILE,
    );
    if start.is_main {
        s.push_str(
            "\nThis is the main group: you may manage tasks of every group of this tenant and \
             register new groups.",
        );
    }
    s
}

/// The host's `<messages>` XML as plain chat lines, for models too small to read XML: one
/// message becomes its text, several become `sender: text` lines. Text that is not in that
/// form is returned unchanged.
pub fn plain_chat_text(prompt: &str) -> String {
    let mut lines = Vec::new();
    let mut rest = prompt;
    while let Some(open) = rest.find("<message ") {
        let after = &rest[open..];
        let Some(head_end) = after.find('>') else {
            break;
        };
        let head = &after[..head_end];
        let Some(close) = after.find("</message>") else {
            break;
        };
        if close < head_end {
            break;
        }
        let sender = head
            .split("sender=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(unescape_xml);
        let text = unescape_xml(&after[head_end + 1..close]);
        lines.push((sender, text));
        rest = &after[close + "</message>".len()..];
    }
    match lines.len() {
        0 => prompt.to_owned(),
        1 => lines.remove(0).1,
        _ => lines
            .into_iter()
            .map(|(sender, text)| match sender {
                Some(who) => format!("{who}: {text}"),
                None => text,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
