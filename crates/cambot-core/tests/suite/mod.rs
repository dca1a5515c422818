mod arrivals;
mod db_seed;
mod defects;
mod durability;
mod migrations;
mod routing_seed;
mod tasks;

use cambot_core::Store;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;

/// Each chat's acknowledged seqs, in the order they were acknowledged.
pub(crate) type Acked = std::sync::Arc<std::sync::Mutex<Vec<Vec<i64>>>>;

/// A thread that stores `total` messages round-robin into `chats` through `store` (blocking
/// calls) and records each acknowledged seq per chat, for readers racing it. With
/// `pause_every`, it sleeps 1 ms after every that many messages, so reads interleave with
/// commits.
pub(crate) fn spawn_acked_writer(
    store: &Store,
    chats: &[String],
    total: usize,
    pause_every: Option<usize>,
) -> (std::thread::JoinHandle<()>, Acked) {
    let acked: Acked = std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::new(); chats.len()]));
    let (s, recorded, chats) = (store.clone(), std::sync::Arc::clone(&acked), chats.to_vec());
    let thread = std::thread::spawn(move || {
        for n in 0..total {
            let c = n % chats.len();
            let seq = s
                .store_message(&msg(
                    &chats[c],
                    &format!("m{n}"),
                    "x",
                    "2024-01-01T00:00:01.000Z",
                ))
                .unwrap();
            recorded.lock().unwrap()[c].push(seq);
            if pause_every.is_some_and(|every| n % every == 0) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
    (thread, acked)
}

pub(crate) fn store() -> Store {
    Store::open_in_memory().unwrap()
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
mod web;
