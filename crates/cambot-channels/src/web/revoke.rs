//! Ends the WebSockets of disabled users.
//!
//! A change made through the daemon's own store is announced at once
//! ([`cambot_core::UserStore::user_changes`]); a change made by another process (`cambot users
//! disable`) is found by polling the users changed lately every `user_check_secs`. Either way
//! each disabled user is announced on [`App::revoked`], and every socket of that user closes.

use std::sync::Arc;
use std::time::Duration;

use crate::web::app::App;
use crate::web::tokens::now_ms;

/// Users changed this long before the newest change seen are read again: a write of another
/// process may commit after a later-stamped one (re-announcing a disabled user is harmless).
const OVERLAP_MS: i64 = 5_000;

pub(crate) async fn watch_users(app: Arc<App>) {
    let mut changes = app.users.user_changes();
    let mut ticker = tokio::time::interval(Duration::from_secs(app.config.user_check_secs));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = now_ms();
    let mut announcements = true;
    loop {
        tokio::select! {
            () = app.cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = changes.changed(), if announcements => {
                // The store was dropped: polling alone still works.
                announcements = changed.is_ok();
            }
        }
        let since = cursor.saturating_sub(OVERLAP_MS);
        cursor = cursor.max(now_ms());
        let users = match app.users.users_updated_since(since).await {
            Ok(users) => users,
            Err(e) => {
                tracing::error!(error = %e, "web: reading changed users failed");
                continue;
            }
        };
        for user in users {
            cursor = cursor.max(user.updated_ms);
            if user.disabled && app.revoked.receiver_count() > 0 {
                tracing::debug!(tenant = %user.tenant, user = %user.id, "web: user disabled; closing their sockets");
                let _ = app.revoked.send(Arc::new((user.tenant, user.id)));
            }
        }
    }
}
