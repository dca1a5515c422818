//! Tenant mount roots: kept per tenant, refused for an unknown tenant, removed on request.

use cambot_core::GroupRegistration;
use cambot_core::MountRootStore;
use cambot_protocol::GroupFolder;

use super::*;

async fn with_tenant(s: &SqliteStore, id: &str) -> TenantId {
    let t = TenantId::new(id).unwrap();
    s.register_group(GroupRegistration {
        tenant: t.clone(),
        jid: jid(&format!("{id}@g.us")),
        name: id.into(),
        folder: GroupFolder::new("g1").unwrap(),
        trigger: "@Andy".into(),
        requires_trigger: None,
        container_config: None,
    })
    .await
    .unwrap();
    t
}

#[tokio::test]
async fn roots_are_kept_per_tenant_and_an_unknown_tenant_is_refused() {
    let s = store();
    let acme = with_tenant(&s, "acme").await;
    let beta = with_tenant(&s, "beta").await;
    s.set_mount_root(&acme, "/srv/acme", false).await.unwrap();
    s.set_mount_root(&beta, "/srv/beta", true).await.unwrap();
    // Setting again changes the flag, not the row count.
    let again = s.set_mount_root(&acme, "/srv/acme", true).await.unwrap();
    assert!(again.rw);

    let acme_roots = s.mount_roots(Some(&acme)).await.unwrap();
    assert_eq!(acme_roots.len(), 1);
    assert_eq!(acme_roots[0].path, "/srv/acme");
    assert!(acme_roots[0].rw);
    assert_eq!(s.mount_roots(None).await.unwrap().len(), 2);

    let ghost = TenantId::new("ghost").unwrap();
    let err = s.set_mount_root(&ghost, "/srv/x", false).await.unwrap_err();
    assert!(err.to_string().contains("unknown tenant ghost"), "{err}");

    assert!(s.remove_mount_root(&acme, "/srv/acme").await.unwrap());
    assert!(!s.remove_mount_root(&acme, "/srv/acme").await.unwrap());
    assert!(s.mount_roots(Some(&acme)).await.unwrap().is_empty());
    assert_eq!(s.mount_roots(Some(&beta)).await.unwrap().len(), 1);
}
