//! Web chat records: users, refresh-token rotation with replay detection, owner-keyed sessions,
//! signing keys.

use cambot_core::RefreshRotation;
use cambot_core::RefreshTokenRow;
use cambot_core::SigningKeyRow;
use cambot_core::WebSessionRow;
use cambot_protocol::GroupFolder;
use pretty_assertions::assert_eq;

use super::*;

fn refresh(hash: &str, family: &str, expires_ms: i64) -> RefreshTokenRow {
    RefreshTokenRow {
        hash: hash.into(),
        family: family.into(),
        tenant: tenant(),
        user_id: "alice".into(),
        expires_ms,
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
        s.rotate_refresh("h1", "h2", i64::MAX, 1).await.unwrap(),
        RefreshRotation::Invalid
    );
    assert!(
        !s.set_user_disabled(&tenant(), "nobody", true)
            .await
            .unwrap()
    );
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
        s.rotate_refresh("h1", "h2", 10_000, 5).await.unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into()
        }
    );
    assert_eq!(
        s.rotate_refresh("h1", "h3", 10_000, 6).await.unwrap(),
        RefreshRotation::Reused
    );
    // The successor is revoked with its family; another family is untouched.
    assert_eq!(
        s.rotate_refresh("h2", "h4", 10_000, 7).await.unwrap(),
        RefreshRotation::Invalid
    );
    assert!(matches!(
        s.rotate_refresh("other", "o2", 10_000, 7).await.unwrap(),
        RefreshRotation::Rotated { .. }
    ));
    // Expired and unknown tokens.
    s.insert_refresh(&refresh("old", "f3", 100)).await.unwrap();
    assert_eq!(
        s.rotate_refresh("old", "x", 10_000, 100).await.unwrap(),
        RefreshRotation::Invalid
    );
    assert_eq!(
        s.rotate_refresh("nope", "y", 10_000, 1).await.unwrap(),
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
