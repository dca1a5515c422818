mod arrivals;
mod db_seed;
mod defects;
mod journal;
mod migrations;
mod routing_seed;
mod run_state;
mod tasks;

use cambot_core::Store;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;

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
