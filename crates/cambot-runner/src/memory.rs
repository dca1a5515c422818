//! The system prompt: who the agent is, where it lives, its memory files (the tenant's global
//! `CLAUDE.md`, read-only, and the group's own `CLAUDE.md`, which it may edit) and the summary
//! of compacted turns. Read afresh for every model call, so an edit shows up at once.

use std::path::Path;

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

/// The current time in the run's zone, for the prompt.
fn now_in(zone: &str) -> String {
    let now = chrono::Utc::now();
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now
            .with_timezone(&tz)
            .format("%A %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => now.format("%A %Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// Builds the system prompt.
pub fn system_prompt(start: &StartInput, env: &RunnerEnv, summary: Option<&str>) -> String {
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
        now = now_in(&start.timezone),
        tz = start.timezone,
        mem = MEMORY_FILE,
    );
    if start.is_main {
        s.push_str(
            "\nThis is the main group: you may manage tasks of every group of this tenant and \
             register new groups.",
        );
    }
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
