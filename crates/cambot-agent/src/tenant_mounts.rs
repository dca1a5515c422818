//! Where the daemon and the admin CLI get what an extra mount is checked against: the
//! operator's allowlist file (read fresh each time) with the paths no mount may touch, and
//! every tenant's mount roots from the store. Both the run start and `cambot groups update`
//! validate with these, so a mount accepted by the CLI is the mount a run gets.

use std::path::Path;
use std::path::PathBuf;

use cambot_core::MountRootStore;
use cambot_core::StoreError;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::TenantMounts;
use cambot_sandbox::TenantRoot;

/// The operator allowlist, protecting the data dir and the config file (the allowlist file
/// and the cambot binary are added by [`MountAllowlist::load`]).
pub fn operator_allowlist(
    sandbox: &SandboxConfig,
    layout: &DataLayout,
    config_file: Option<&Path>,
) -> MountAllowlist {
    let mut protected = vec![layout.root()];
    protected.extend(config_file);
    MountAllowlist::load(&sandbox.allowlist_path(), &protected)
}

/// Every tenant's stored roots.
pub async fn all_roots(store: &dyn MountRootStore) -> Result<Vec<TenantRoot>, StoreError> {
    Ok(store
        .mount_roots(None)
        .await?
        .into_iter()
        .map(|r| TenantRoot {
            tenant: r.tenant,
            path: PathBuf::from(r.path),
            rw: r.rw,
        })
        .collect())
}

/// The roots that bind `tenant`'s extra mounts.
pub async fn tenant_mounts(
    store: &dyn MountRootStore,
    tenant: &TenantId,
) -> Result<TenantMounts, StoreError> {
    Ok(TenantMounts::for_tenant(tenant, all_roots(store).await?))
}
