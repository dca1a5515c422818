//! The typing indicator: changes applied one at a time by one task, skipping no-ops.

use std::collections::HashMap;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;

use super::Router;

/// Typing changes waiting for the typing task.
pub(super) const TYPING_QUEUE: usize = 1024;

/// Applies typing changes one at a time, skipping ones that change nothing. Ends with the
/// router.
pub(super) async fn typing_loop(
    router: std::sync::Weak<Router>,
    mut rx: tokio::sync::mpsc::Receiver<(TenantId, ChatJid, bool)>,
) {
    let mut shown: HashMap<(TenantId, ChatJid), bool> = HashMap::new();
    while let Some((tenant, jid, on)) = rx.recv().await {
        let chat = (tenant, jid);
        if shown.get(&chat) == Some(&on) {
            continue;
        }
        let (tenant, jid) = &chat;
        let Some(channel) = router.upgrade().and_then(|r| r.find_channel(tenant, jid)) else {
            continue;
        };
        if let Err(e) = channel.set_typing(tenant, jid, on).await {
            tracing::debug!(tenant = %tenant, chat = %jid, error = %e, "typing indicator failed");
        }
        if on {
            shown.insert(chat, true);
        } else {
            shown.remove(&chat);
        }
    }
}
