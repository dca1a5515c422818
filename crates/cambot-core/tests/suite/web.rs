//! Web chat records: users, refresh-token rotation with replay detection, owner-keyed sessions,
//! signing keys.

use cambot_core::RefreshRotation;
use cambot_core::RefreshTokenRow;
use cambot_core::SigningKeyRow;
use cambot_core::WebSessionRow;
use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

/// A family lifetime longer than any test's clock.
const LIFETIME: i64 = 1_000_000;

fn refresh(hash: &str, family: &str, expires_ms: i64) -> RefreshTokenRow {
    RefreshTokenRow {
        hash: hash.into(),
        family: family.into(),
        tenant: tenant(),
        user_id: "alice".into(),
        expires_ms,
        family_created_ms: 0,
    }
}

#[tokio::test]
async fn users_are_unique_per_tenant_and_disabling_revokes_their_refresh_tokens() {
    let s = store();
    let acme = TenantId::new("acme").unwrap();
    assert!(s.add_user(&tenant(), "alice", "$argon2id$x").await.unwrap());
    assert!(!s.add_user(&tenant(), "alice", "$argon2id$y").await.unwrap());
    assert!(s.add_user(&acme, "alice", "$argon2id$z").await.unwrap());
    assert_eq!(s.users(None).await.unwrap().len(), 2);
    assert_eq!(
        s.users(Some(&acme)).await.unwrap()[0].password_hash,
        "$argon2id$z"
    );

    s.insert_refresh(&refresh("h1", "f1", i64::MAX))
        .await
        .unwrap();
    assert!(s.set_user_disabled(&tenant(), "alice", true).await.unwrap());
    assert!(s.user(&tenant(), "alice").await.unwrap().unwrap().disabled);
    assert!(!s.user(&acme, "alice").await.unwrap().unwrap().disabled);
    assert_eq!(
        s.rotate_refresh("h1", "h2", i64::MAX, LIFETIME, 1)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    assert!(
        !s.set_user_disabled(&tenant(), "nobody", true)
            .await
            .unwrap()
    );
}

/// A user change made through a handle is announced on it at once; changes of any handle (the
/// admin CLI's) are found by their `updated_ms`.
#[tokio::test]
async fn user_changes_are_announced_and_found_by_time() {
    let s = store();
    let mut changes = s.user_changes();
    let before = *changes.borrow_and_update();
    assert!(s.add_user(&tenant(), "alice", "$argon2id$x").await.unwrap());
    let t0 = s
        .user(&tenant(), "alice")
        .await
        .unwrap()
        .unwrap()
        .updated_ms;
    assert!(s.set_user_disabled(&tenant(), "alice", true).await.unwrap());
    assert!(changes.has_changed().unwrap());
    assert_ne!(*changes.borrow_and_update(), before);
    // An unknown user changes nothing and announces nothing.
    assert!(!s.set_user_disabled(&tenant(), "bob", true).await.unwrap());
    assert!(!changes.has_changed().unwrap());
    let changed = s.users_updated_since(t0).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].disabled);
    assert!(s.users_updated_since(i64::MAX).await.unwrap().is_empty());
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_a_replay_revokes_the_family() {
    let s = store();
    s.insert_refresh(&refresh("h1", "f1", 10_000))
        .await
        .unwrap();
    s.insert_refresh(&refresh("other", "f2", 10_000))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh("h1", "h2", 10_000, LIFETIME, 5)
            .await
            .unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into(),
            expires_ms: 10_000,
        }
    );
    assert_eq!(
        s.rotate_refresh("h1", "h3", 10_000, LIFETIME, 6)
            .await
            .unwrap(),
        RefreshRotation::Reused
    );
    // The successor is revoked with its family; another family is untouched.
    assert_eq!(
        s.rotate_refresh("h2", "h4", 10_000, LIFETIME, 7)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    assert!(matches!(
        s.rotate_refresh("other", "o2", 10_000, LIFETIME, 7)
            .await
            .unwrap(),
        RefreshRotation::Rotated { .. }
    ));
    // Expired and unknown tokens.
    s.insert_refresh(&refresh("old", "f3", 100)).await.unwrap();
    assert_eq!(
        s.rotate_refresh("old", "x", 10_000, LIFETIME, 100)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    assert_eq!(
        s.rotate_refresh("nope", "y", 10_000, LIFETIME, 1)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
}

/// Rotation never extends a family past its first issue plus the lifetime: a successor's
/// expiry is cut at the family's end, and past the end the family no longer rotates.
#[tokio::test]
async fn a_refresh_family_ends_at_its_absolute_lifetime_however_often_it_rotates() {
    let s = store();
    let start = 1_000;
    s.insert_refresh(&RefreshTokenRow {
        family_created_ms: start,
        ..refresh("a1", "fam", start + 100)
    })
    .await
    .unwrap();
    // Each rotation asks for 100 ms more; the family (lifetime 250) ends at 1 250.
    assert_eq!(
        s.rotate_refresh("a1", "a2", start + 150, 250, start + 50)
            .await
            .unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into(),
            expires_ms: start + 150,
        }
    );
    assert_eq!(
        s.rotate_refresh("a2", "a3", start + 240, 250, start + 140)
            .await
            .unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into(),
            expires_ms: start + 240,
        }
    );
    assert_eq!(
        s.rotate_refresh("a3", "a4", start + 330, 250, start + 230)
            .await
            .unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into(),
            expires_ms: start + 250,
        },
        "cut at the family's end"
    );
    assert_eq!(
        s.rotate_refresh("a4", "a5", start + 400, 250, start + 250)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
    // A token whose own expiry is far off is still refused once its family is over.
    s.insert_refresh(&RefreshTokenRow {
        family_created_ms: start,
        ..refresh("b1", "old-family", i64::MAX)
    })
    .await
    .unwrap();
    assert_eq!(
        s.rotate_refresh("b1", "b2", i64::MAX, 250, start + 300)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    );
}

#[tokio::test]
async fn sessions_are_found_only_by_their_owner() {
    let s = store();
    let row = WebSessionRow {
        tenant: tenant(),
        user_id: "alice".into(),
        id: "0123456789abcdef0123456789abcdef".into(),
        folder: GroupFolder::new("web-abc").unwrap(),
        chat_jid: jid("web:default:alice:0123456789abcdef0123456789abcdef"),
        title: String::new(),
        created_ms: 10,
        last_active_ms: 10,
    };
    s.insert_web_session(&row).await.unwrap();
    assert_eq!(
        s.web_session(&tenant(), "alice", &row.id).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        s.web_session(&tenant(), "bob", &row.id).await.unwrap(),
        None
    );
    assert_eq!(
        s.web_session(&TenantId::new("acme").unwrap(), "alice", &row.id)
            .await
            .unwrap(),
        None
    );
    assert!(s.web_sessions(&tenant(), "bob").await.unwrap().is_empty());
    // Touch: activity only moves forward; the title is set once.
    s.touch_web_session(&tenant(), "alice", &row.id, 50, Some("first"))
        .await
        .unwrap();
    s.touch_web_session(&tenant(), "alice", &row.id, 20, Some("second"))
        .await
        .unwrap();
    let got = s
        .web_session(&tenant(), "alice", &row.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.last_active_ms, got.title.as_str()), (50, "first"));
    // Another user's touch changes nothing.
    s.touch_web_session(&tenant(), "bob", &row.id, 99, Some("x"))
        .await
        .unwrap();
    let got = s
        .web_session(&tenant(), "alice", &row.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_active_ms, 50);
}

#[tokio::test]
async fn signing_keys_are_per_tenant_newest_first_and_retire_by_age() {
    let s = store();
    let key = |kid: &str, t: &TenantId, at: i64| SigningKeyRow {
        kid: kid.into(),
        tenant: t.clone(),
        algorithm: "EdDSA".into(),
        private_key: vec![1],
        public_key: vec![2],
        created_ms: at,
        sealed: false,
    };
    let acme = TenantId::new("acme").unwrap();
    s.add_signing_key(&key("k1", &tenant(), 1)).await.unwrap();
    s.add_signing_key(&key("k2", &tenant(), 2)).await.unwrap();
    s.add_signing_key(&key("a1", &acme, 1)).await.unwrap();
    let kids: Vec<String> = s
        .signing_keys(&tenant())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k2", "k1"]);
    assert_eq!(s.delete_signing_keys(&tenant(), 10, "k2").await.unwrap(), 1);
    assert!(s.signing_key("k1").await.unwrap().is_none());
    assert_eq!(s.signing_key("a1").await.unwrap().unwrap().tenant, acme);
}

/// Whether `needle` occurs anywhere in the file (missing file: no).
fn file_holds(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test]
async fn sealing_signing_keys_leaves_no_plaintext_in_the_file_or_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let wal = dir.path().join("cambot.db-wal");
    let s = cambot_core::SqliteStore::open(&path).unwrap();
    let secret = |i: u16| -> Vec<u8> {
        let [hi, lo] = i.to_be_bytes();
        (0..83u8)
            .map(|b| b.wrapping_mul(7) ^ lo ^ hi.rotate_left(3) ^ 0xA5)
            .collect()
    };
    let key = |i: u16, at: i64| SigningKeyRow {
        kid: format!("k{i:04}"),
        tenant: tenant(),
        algorithm: "EdDSA".into(),
        private_key: secret(i),
        public_key: vec![2; 32],
        created_ms: at,
        sealed: false,
    };
    // Retired keys fill pages that their deletion frees (with their bytes, unless wiped); two
    // live keys are sealed.
    for i in 0..300 {
        s.add_signing_key(&key(i, 1)).await.unwrap();
    }
    s.add_signing_key(&key(1000, 2)).await.unwrap();
    s.add_signing_key(&key(1001, 3)).await.unwrap();
    assert_eq!(
        s.delete_signing_keys(&tenant(), 2, "k1000").await.unwrap(),
        300
    );
    let everything = || (0..300).chain([1000, 1001]);
    assert!(everything().any(|i| file_holds(&path, &secret(i)) || file_holds(&wal, &secret(i))));
    let plain: Vec<String> = s
        .all_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.sealed)
        .map(|k| k.kid)
        .collect();
    assert_eq!(plain, ["k1000", "k1001"]);

    let sealed = vec![
        ("k1000".to_owned(), vec![9u8; 123]),
        ("k1001".to_owned(), vec![8u8; 123]),
    ];
    assert_eq!(s.seal_signing_keys(sealed.clone()).await.unwrap(), 2);
    // Already sealed: nothing changes.
    assert_eq!(s.seal_signing_keys(sealed).await.unwrap(), 0);
    assert!(s.all_signing_keys().await.unwrap().iter().all(|k| k.sealed));
    let live = s.signing_key("k1000").await.unwrap().unwrap();
    assert!(live.sealed);
    assert_eq!(live.private_key, vec![9u8; 123]);
    for i in everything() {
        for file in [&path, &wal] {
            assert!(
                !file_holds(file, &secret(i)),
                "key {i} still in {}",
                file.display()
            );
        }
    }
}
