//! Disabled tenants. Their messages are stored as usual but start no run; when a tenant is
//! enabled again (by the admin CLI, in another process) the daemon notices the commit, and the
//! router re-queues every group with pending messages, so what waited is answered.

use std::collections::HashSet;
use std::sync::RwLock;

use cambot_core::Store;
use cambot_core::TenantState;
use cambot_protocol::TenantId;

use super::Router;
use super::RouterError;
use crate::locks;

/// The daemon's copy of which tenants are disabled, refreshed with the registrations. Inbound
/// routing reads it (no query per message); a run start asks the store itself.
#[derive(Debug, Default)]
pub(super) struct DisabledTenants(RwLock<HashSet<TenantId>>);

impl DisabledTenants {
    pub(super) async fn load(store: &dyn Store) -> Result<Self, RouterError> {
        Ok(Self(RwLock::new(read(store).await?)))
    }

    pub(super) fn contains(&self, tenant: &TenantId) -> bool {
        locks::read("disabled tenants", &self.0).contains(tenant)
    }

    /// Records a tenant found disabled at a run start before the copy knew it, so that its
    /// enabling is noticed as such even if the next refresh never saw it disabled.
    fn insert(&self, tenant: &TenantId) {
        locks::write("disabled tenants", &self.0).insert(tenant.clone());
    }

    /// Replaces the set; returns whether a tenant that was disabled no longer is.
    fn replace(&self, fresh: HashSet<TenantId>) -> bool {
        let mut set = locks::write("disabled tenants", &self.0);
        let enabled = set.iter().any(|t| !fresh.contains(t));
        *set = fresh;
        enabled
    }
}

async fn read(store: &dyn Store) -> Result<HashSet<TenantId>, RouterError> {
    Ok(store.disabled_tenants().await?.into_iter().collect())
}

impl Router {
    /// Re-reads which tenants are disabled; a tenant enabled meanwhile gets its pending
    /// messages queued at once.
    pub(super) async fn refresh_disabled_tenants(&self) -> Result<(), RouterError> {
        let fresh = read(self.store.as_ref()).await?;
        if self.disabled.replace(fresh) {
            let queued = self.recover_pending().await?;
            tracing::info!(
                groups = queued,
                "a tenant was enabled: its pending messages are queued"
            );
        }
        Ok(())
    }

    /// Whether a run may start for `tenant` now: asked of the store, so a tenant disabled by
    /// another process a moment ago starts nothing even before the copy is refreshed.
    pub(super) async fn tenant_serves(&self, tenant: &TenantId) -> Result<bool, RouterError> {
        let serves = match self.store.tenant(tenant).await? {
            Some(row) => row.state == TenantState::Active,
            // Rows written before tenants were administered: served as before.
            None => true,
        };
        if !serves {
            self.disabled.insert(tenant);
        }
        Ok(serves)
    }
}
