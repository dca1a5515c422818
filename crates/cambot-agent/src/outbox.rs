//! Delivers committed replies through their channels, in order per chat, retrying what a
//! channel refused. Replies are already durable (see `cambot_core` outbox), so delivery can be
//! retried after a crash; each carries its outbox id as an idempotency key.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use cambot_channels::Channel;
use cambot_channels::Outbound;
use cambot_core::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most rows read per delivery pass.
const BATCH: usize = 256;

/// Wakes the delivery task. Cheap to clone.
#[derive(Clone, Default)]
pub struct Outbox {
    notify: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// New replies are committed: deliver them now.
    pub fn kick(&self) {
        self.notify.notify_one();
    }

    /// The delivery loop: runs until `cancel`, delivering on every kick and retrying refused
    /// replies every `retry_every`. Delivers what is pending once more before returning.
    pub async fn run(
        self,
        store: Arc<dyn Store>,
        channels: Arc<RwLock<Vec<Arc<dyn Channel>>>>,
        retry_every: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            let stuck = deliver_pending(store.as_ref(), &channels).await;
            let wait = async {
                if stuck {
                    tokio::time::sleep(retry_every).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.notify.notified() => {}
                () = wait => {}
            }
        }
        deliver_pending(store.as_ref(), &channels).await;
    }
}

/// One or more delivery passes until nothing deliverable is left. Returns true when some
/// reply stays pending (a channel refused or none owns the chat).
pub async fn deliver_pending(store: &dyn Store, channels: &RwLock<Vec<Arc<dyn Channel>>>) -> bool {
    loop {
        let rows = match store.pending_outbox(BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return true;
            }
        };
        if rows.is_empty() {
            return false;
        }
        let full = rows.len() == BATCH;
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut delivered = 0usize;
        for row in &rows {
            let chat = (row.tenant.to_string(), row.chat_jid.to_string());
            if blocked.contains(&chat) {
                continue;
            }
            let channel = crate::locks::read("channels", channels)
                .iter()
                .find(|c| c.owns_jid(&row.tenant, &row.chat_jid))
                .cloned();
            let result = match channel {
                Some(channel) => channel
                    .send_message(Outbound {
                        delivery_id: row.id,
                        tenant: &row.tenant,
                        chat_jid: &row.chat_jid,
                        text: &row.text,
                    })
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "no channel owns {} for tenant {}",
                    row.chat_jid, row.tenant
                )),
            };
            match result {
                Ok(()) => {
                    delivered += 1;
                    if let Err(e) = store.mark_delivered(row.id).await {
                        tracing::error!(outbox_id = row.id, error = %e, "marking a reply delivered failed");
                    }
                }
                Err(reason) => {
                    // Later replies to this chat wait, so the order people see never changes.
                    if row.attempts == 0 || row.attempts % 10 == 0 {
                        tracing::warn!(outbox_id = row.id, tenant = %row.tenant, chat = %row.chat_jid, error = %reason, "reply not delivered yet; will retry");
                    }
                    if let Err(e) = store.mark_delivery_failed(row.id, &reason).await {
                        tracing::error!(outbox_id = row.id, error = %e, "recording a failed delivery failed");
                    }
                    blocked.insert(chat);
                }
            }
        }
        if !blocked.is_empty() && (delivered == 0 || !full) {
            return true;
        }
        if delivered == 0 {
            return false;
        }
    }
}
