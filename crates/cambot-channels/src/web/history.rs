//! A session's history as the page shows it: the user's messages and the assistant's replies,
//! merged in time order.

use cambot_core::ChatHistoryMessage;
use cambot_core::ChatReply;
use serde::Serialize;

/// One entry of a chat's history, as serialized to the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub(crate) enum HistoryItem {
    /// A message the user sent (`id` is the channel message id).
    User {
        id: String,
        text: String,
        at: String,
    },
    /// A reply; `id` is its outbox id, the resume point of a reconnecting client.
    Assistant { id: i64, text: String, at: String },
}

/// Merges messages and replies by time; at the same millisecond the message comes first (a
/// reply cannot precede what it answers).
pub(crate) fn merge(
    messages: Vec<ChatHistoryMessage>,
    replies: Vec<ChatReply>,
) -> Vec<HistoryItem> {
    let mut items: Vec<(i64, u8, HistoryItem)> = messages
        .into_iter()
        .map(|m| {
            (
                rfc3339_ms(&m.timestamp),
                0,
                HistoryItem::User {
                    id: m.id,
                    text: m.content,
                    at: m.timestamp,
                },
            )
        })
        .chain(replies.into_iter().map(|r| {
            (
                rfc3339_ms(&r.created_at),
                1,
                HistoryItem::Assistant {
                    id: r.id,
                    text: r.text,
                    at: r.created_at,
                },
            )
        }))
        .collect();
    // Stable: entries of one kind keep the store's order at equal times.
    items.sort_by_key(|(at, kind, _)| (*at, *kind));
    items.into_iter().map(|(_, _, item)| item).collect()
}

/// An unreadable time sorts first rather than failing the whole history.
fn rfc3339_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
