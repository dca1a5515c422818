//! What a reply looks like when sent: the agent's `<internal>…</internal>` blocks are its own
//! notes and never reach a chat. The router, task runs and the `send_message` host tool all
//! clean replies here.

/// Removes every `<internal>…</internal>` block (non-greedy, across lines) and trims.
pub fn strip_internal_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<internal>") {
        let after = &rest[start + "<internal>".len()..];
        match after.find("</internal>") {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &after[end + "</internal>".len()..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// What a reply looks like when sent: internal blocks removed; empty means "send nothing".
pub fn format_outbound(text: &str) -> String {
    strip_internal_tags(text)
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
