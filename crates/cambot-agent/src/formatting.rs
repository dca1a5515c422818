//! Prompt formatting and the trigger gate (seed-spec section 1). Reply clean-up is
//! `cambot_protocol::reply`.

use regex::Regex;

/// Escapes `&`, `<`, `>` and `"` (the apostrophe is left alone, as in the seed).
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// One message as the prompt shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptMessage<'a> {
    pub sender_name: &'a str,
    pub timestamp: &'a str,
    pub content: &'a str,
}

/// `<messages>\n<message sender="NAME" time="TS">CONTENT</message>…\n</messages>`, with NAME and
/// CONTENT escaped and TS inserted as stored.
pub fn format_messages<'a>(messages: impl IntoIterator<Item = PromptMessage<'a>>) -> String {
    let lines: Vec<String> = messages
        .into_iter()
        .map(|m| {
            format!(
                "<message sender=\"{}\" time=\"{}\">{}</message>",
                escape_xml(m.sender_name),
                m.timestamp,
                escape_xml(m.content)
            )
        })
        .collect();
    format!("<messages>\n{}\n</messages>", lines.join("\n"))
}

/// Matches `@<Name>` at the start of a trimmed message, case-insensitively, as a whole word.
#[derive(Debug, Clone)]
pub struct Trigger {
    regex: Regex,
}

impl Trigger {
    pub fn for_name(assistant_name: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            regex: Regex::new(&format!(r"(?i)^@{}\b", regex::escape(assistant_name)))?,
        })
    }

    pub fn matches(&self, content: &str) -> bool {
        self.regex.is_match(content.trim())
    }
}

/// Whether a group's messages need the trigger: never in the main group; otherwise unless the
/// group says `requires_trigger = false`.
pub fn requires_trigger(is_main: bool, requires_trigger: Option<bool>) -> bool {
    !is_main && requires_trigger != Some(false)
}

/// The trigger gate over a batch: processed when no trigger is needed or any message has it.
pub fn passes_gate<'a>(
    trigger: &Trigger,
    is_main: bool,
    group_requires: Option<bool>,
    mut contents: impl Iterator<Item = &'a str>,
) -> bool {
    !requires_trigger(is_main, group_requires) || contents.any(|c| trigger.matches(c))
}

#[cfg(test)]
#[path = "formatting_tests.rs"]
mod tests;
