use super::*;

fn message(seq: i64, at: &str) -> ChatHistoryMessage {
    ChatHistoryMessage {
        seq,
        id: format!("m{seq}"),
        sender: "web:alice".into(),
        content: format!("text {seq}"),
        timestamp: at.into(),
    }
}

fn reply(id: i64, at: &str) -> ChatReply {
    ChatReply {
        id,
        text: format!("reply {id}"),
        created_at: at.into(),
    }
}

fn ids(items: &[HistoryItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            HistoryItem::User { id, .. } => id.clone(),
            HistoryItem::Assistant { id, .. } => format!("r{id}"),
        })
        .collect()
}

#[test]
fn messages_and_replies_merge_in_time_order() {
    let merged = merge(
        vec![
            message(1, "2024-01-01T00:00:00Z"),
            message(2, "2024-01-01T00:00:02Z"),
        ],
        vec![
            reply(7, "2024-01-01T00:00:01+00:00"),
            reply(8, "2024-01-01T00:00:02Z"),
        ],
    );
    assert_eq!(ids(&merged), ["m1", "r7", "m2", "r8"]);
    let json = serde_json::to_value(&merged[1]).unwrap_or_default();
    assert_eq!(json["role"], "assistant");
    assert_eq!(json["id"], 7);
}
