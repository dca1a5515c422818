mod arrivals;
mod db_seed;
mod defects;
mod durability;
mod migrations;
mod mount_roots;
mod routing_seed;
mod tasks;
mod tenants;
mod vault;
mod web;
mod workflows;

pub(crate) use cambot_core::GroupStore;
pub(crate) use cambot_core::MessageStore;
pub(crate) use cambot_core::SessionStore;
pub(crate) use cambot_core::SqliteStore;
pub(crate) use cambot_core::Store;
pub(crate) use cambot_core::TaskStore;
pub(crate) use cambot_core::UserStore;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;

/// Each chat's acknowledged seqs, in the order they were acknowledged.
pub(crate) type Acked = std::sync::Arc<std::sync::Mutex<Vec<Vec<i64>>>>;

/// A tokio task that stores `total` messages round-robin into `chats` through `store`, one
/// after the other, and records each acknowledged seq per chat, for readers racing it. With
/// `pause_every`, it sleeps 1 ms after every that many messages, so reads interleave with
/// commits. Run it on a multi-thread runtime so that it runs beside the readers.
pub(crate) fn spawn_acked_writer(
    store: &SqliteStore,
    chats: &[String],
    total: usize,
    pause_every: Option<usize>,
) -> (tokio::task::JoinHandle<()>, Acked) {
    let acked: Acked = std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::new(); chats.len()]));
    let (s, recorded, chats) = (store.clone(), std::sync::Arc::clone(&acked), chats.to_vec());
    let task = tokio::spawn(async move {
        for n in 0..total {
            let c = n % chats.len();
            let seq = stored_seq(
                &s,
                msg(&chats[c], &format!("m{n}"), "x", "2024-01-01T00:00:01.000Z"),
            )
            .await;
            recorded.lock().unwrap()[c].push(seq);
            if pause_every.is_some_and(|every| n % every == 0) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });
    (task, acked)
}

pub(crate) fn store() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap()
}

/// Stores `m` and returns its seq (what the old synchronous `store_message` returned).
pub(crate) async fn stored_seq(s: &SqliteStore, m: InboundMessage) -> i64 {
    s.store_message(m).await.unwrap().message.seq
}

pub(crate) fn tenant() -> TenantId {
    TenantId::default_tenant()
}

pub(crate) fn jid(s: &str) -> ChatJid {
    ChatJid::new(s).unwrap()
}

pub(crate) fn msg(chat: &str, id: &str, content: &str, ts: &str) -> InboundMessage {
    InboundMessage {
        tenant: tenant(),
        chat_jid: jid(chat),
        id: id.into(),
        sender: "123@s.whatsapp.net".into(),
        sender_name: "Alice".into(),
        content: content.into(),
        timestamp: ts.into(),
        is_from_me: false,
        is_bot_message: false,
        attachments: Vec::new(),
    }
}

pub(crate) fn meta(
    chat: &str,
    ts: &str,
    name: Option<&str>,
    is_group: Option<bool>,
) -> ChatMetadata {
    ChatMetadata {
        tenant: tenant(),
        chat_jid: jid(chat),
        timestamp: ts.into(),
        name: name.map(str::to_owned),
        channel: None,
        is_group,
    }
}
