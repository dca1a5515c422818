//! The vault's sealed rows: kept per tenant, a replaced secret keeps its creation time, a data
//! key is added only under the check it was wrapped for, and a key replacement is refused
//! whole when the vault changed since it was read.

use cambot_core::TenantStore;
use cambot_core::VaultDekRow;
use cambot_core::VaultKeyChange;
use cambot_core::VaultSecretRow;
use cambot_core::VaultStore;

use super::*;

fn t(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn dek(tenant: &str, wrapped: &[u8]) -> VaultDekRow {
    VaultDekRow {
        tenant: t(tenant),
        nonce: vec![1; 24],
        wrapped: wrapped.to_vec(),
        created_ms: 5,
    }
}

fn secret(tenant: &str, name: &str, ct: &[u8], at: i64) -> VaultSecretRow {
    VaultSecretRow {
        tenant: t(tenant),
        name: name.into(),
        nonce: vec![2; 24],
        ciphertext: ct.to_vec(),
        created_ms: at,
        updated_ms: at,
        expires_ms: None,
    }
}

#[tokio::test]
async fn secrets_are_kept_per_tenant_and_a_replacement_keeps_its_creation_time() {
    let s = store();
    s.put_vault_secret(secret("acme", "anthropic", b"a1", 10))
        .await
        .unwrap();
    s.put_vault_secret(secret("beta", "anthropic", b"b1", 11))
        .await
        .unwrap();
    let mut again = secret("acme", "anthropic", b"a2", 20);
    again.expires_ms = Some(99);
    s.put_vault_secret(again).await.unwrap();

    let row = s
        .vault_secret(&t("acme"), "anthropic")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.ciphertext.as_slice(), row.created_ms, row.updated_ms),
        (&b"a2"[..], 10, 20)
    );
    assert_eq!(row.expires_ms, Some(99));
    assert_eq!(s.vault_secrets(Some(&t("beta"))).await.unwrap().len(), 1);
    assert_eq!(s.vault_secrets(None).await.unwrap().len(), 2);
    assert!(
        s.vault_secret(&t("gamma"), "anthropic")
            .await
            .unwrap()
            .is_none()
    );

    assert!(
        s.delete_vault_secret(&t("acme"), "anthropic")
            .await
            .unwrap()
    );
    assert!(
        !s.delete_vault_secret(&t("acme"), "anthropic")
            .await
            .unwrap()
    );
    assert_eq!(
        s.vault_secret(&t("beta"), "anthropic")
            .await
            .unwrap()
            .unwrap()
            .ciphertext,
        b"b1"
    );
}

#[tokio::test]
async fn a_data_key_is_added_once_and_only_under_the_current_check() {
    let s = store();
    assert_eq!(s.vault_check().await.unwrap(), None);
    assert_eq!(s.init_vault_check(b"c1".to_vec()).await.unwrap(), b"c1");
    // The first check stays: a second process racing to initialise gets the stored one.
    assert_eq!(s.init_vault_check(b"c2".to_vec()).await.unwrap(), b"c1");

    let first = s
        .insert_vault_dek(dek("acme", b"k1"), b"c1".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.wrapped, b"k1");
    let kept = s
        .insert_vault_dek(dek("acme", b"k2"), b"c1".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.wrapped, b"k1", "the stored key wins");
    assert!(
        s.insert_vault_dek(dek("beta", b"k3"), b"stale".to_vec())
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.vault_dek(&t("beta")).await.unwrap().is_none());
}

#[tokio::test]
async fn key_replacement_is_whole_or_nothing() {
    let s = store();
    s.init_vault_check(b"c1".to_vec()).await.unwrap();
    for (tenant, k) in [("acme", b"a1"), ("beta", b"b1")] {
        s.insert_vault_dek(dek(tenant, k), b"c1".to_vec())
            .await
            .unwrap();
    }
    // A tenant missing from the new set (added after the rotation read the keys): refused.
    let partial = vec![dek("acme", b"a2")];
    assert_eq!(
        s.replace_vault_keys(b"c1".to_vec(), b"c2".to_vec(), partial)
            .await
            .unwrap(),
        VaultKeyChange::Changed
    );
    // A stale check: refused.
    let full = vec![dek("acme", b"a2"), dek("beta", b"b2")];
    assert_eq!(
        s.replace_vault_keys(b"old".to_vec(), b"c2".to_vec(), full.clone())
            .await
            .unwrap(),
        VaultKeyChange::Changed
    );
    assert_eq!(
        s.vault_dek(&t("acme")).await.unwrap().unwrap().wrapped,
        b"a1"
    );
    assert_eq!(s.vault_check().await.unwrap().unwrap(), b"c1");

    assert_eq!(
        s.replace_vault_keys(b"c1".to_vec(), b"c2".to_vec(), full)
            .await
            .unwrap(),
        VaultKeyChange::Replaced
    );
    let wrapped: Vec<Vec<u8>> = s
        .vault_deks()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.wrapped)
        .collect();
    assert_eq!(wrapped, vec![b"a2".to_vec(), b"b2".to_vec()]);
    assert_eq!(s.vault_check().await.unwrap().unwrap(), b"c2");
}

#[tokio::test]
async fn purging_a_tenant_deletes_its_vault_rows_only() {
    let s = store();
    s.add_tenant(&t("acme"), "").await.unwrap();
    s.init_vault_check(b"c1".to_vec()).await.unwrap();
    for tenant in ["acme", "beta"] {
        s.insert_vault_dek(dek(tenant, b"k"), b"c1".to_vec())
            .await
            .unwrap();
        s.put_vault_secret(secret(tenant, "x", b"ct", 1))
            .await
            .unwrap();
    }
    s.purge_tenant(&t("acme")).await.unwrap().unwrap();
    assert!(s.vault_dek(&t("acme")).await.unwrap().is_none());
    assert!(s.vault_secrets(Some(&t("acme"))).await.unwrap().is_empty());
    assert!(s.vault_dek(&t("beta")).await.unwrap().is_some());
    assert_eq!(s.vault_secrets(None).await.unwrap().len(), 1);
}
