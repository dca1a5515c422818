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

#[test]
fn users_are_unique_per_tenant_and_disabling_revokes_their_refresh_tokens() {
    let s = store();
    let acme = TenantId::new("acme").unwrap();
    assert!(s.web_user_add(&tenant(), "alice", "$argon2id$x").unwrap());
    assert!(!s.web_user_add(&tenant(), "alice", "$argon2id$y").unwrap());
    assert!(s.web_user_add(&acme, "alice", "$argon2id$z").unwrap());
    assert_eq!(s.web_users(None).unwrap().len(), 2);
    assert_eq!(
        s.web_users(Some(&acme)).unwrap()[0].password_hash,
        "$argon2id$z"
    );

    s.web_refresh_insert(&refresh("h1", "f1", i64::MAX))
        .unwrap();
    assert!(s.web_user_set_disabled(&tenant(), "alice", true).unwrap());
    assert!(s.web_user(&tenant(), "alice").unwrap().unwrap().disabled);
    assert!(!s.web_user(&acme, "alice").unwrap().unwrap().disabled);
    assert_eq!(
        s.web_refresh_rotate("h1", "h2", i64::MAX, 1).unwrap(),
        RefreshRotation::Invalid
    );
    assert!(!s.web_user_set_disabled(&tenant(), "nobody", true).unwrap());
}

#[test]
fn refresh_tokens_rotate_once_and_a_replay_revokes_the_family() {
    let s = store();
    s.web_refresh_insert(&refresh("h1", "f1", 10_000)).unwrap();
    s.web_refresh_insert(&refresh("other", "f2", 10_000))
        .unwrap();
    assert_eq!(
        s.web_refresh_rotate("h1", "h2", 10_000, 5).unwrap(),
        RefreshRotation::Rotated {
            tenant: tenant(),
            user_id: "alice".into()
        }
    );
    assert_eq!(
        s.web_refresh_rotate("h1", "h3", 10_000, 6).unwrap(),
        RefreshRotation::Reused
    );
    // The successor is revoked with its family; another family is untouched.
    assert_eq!(
        s.web_refresh_rotate("h2", "h4", 10_000, 7).unwrap(),
        RefreshRotation::Invalid
    );
    assert!(matches!(
        s.web_refresh_rotate("other", "o2", 10_000, 7).unwrap(),
        RefreshRotation::Rotated { .. }
    ));
    // Expired and unknown tokens.
    s.web_refresh_insert(&refresh("old", "f3", 100)).unwrap();
    assert_eq!(
        s.web_refresh_rotate("old", "x", 10_000, 100).unwrap(),
        RefreshRotation::Invalid
    );
    assert_eq!(
        s.web_refresh_rotate("nope", "y", 10_000, 1).unwrap(),
        RefreshRotation::Invalid
    );
}

#[test]
fn sessions_are_found_only_by_their_owner() {
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
    s.web_session_insert(&row).unwrap();
    assert_eq!(
        s.web_session(&tenant(), "alice", &row.id).unwrap(),
        Some(row.clone())
    );
    assert_eq!(s.web_session(&tenant(), "bob", &row.id).unwrap(), None);
    assert_eq!(
        s.web_session(&TenantId::new("acme").unwrap(), "alice", &row.id)
            .unwrap(),
        None
    );
    assert!(s.web_sessions(&tenant(), "bob").unwrap().is_empty());
    // Touch: activity only moves forward; the title is set once.
    s.web_session_touch(&tenant(), "alice", &row.id, 50, Some("first"))
        .unwrap();
    s.web_session_touch(&tenant(), "alice", &row.id, 20, Some("second"))
        .unwrap();
    let got = s.web_session(&tenant(), "alice", &row.id).unwrap().unwrap();
    assert_eq!((got.last_active_ms, got.title.as_str()), (50, "first"));
    // Another user's touch changes nothing.
    s.web_session_touch(&tenant(), "bob", &row.id, 99, Some("x"))
        .unwrap();
    let got = s.web_session(&tenant(), "alice", &row.id).unwrap().unwrap();
    assert_eq!(got.last_active_ms, 50);
}

#[test]
fn signing_keys_are_per_tenant_newest_first_and_retire_by_age() {
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
    s.web_add_signing_key(&key("k1", &tenant(), 1)).unwrap();
    s.web_add_signing_key(&key("k2", &tenant(), 2)).unwrap();
    s.web_add_signing_key(&key("a1", &acme, 1)).unwrap();
    let kids: Vec<String> = s
        .web_signing_keys(&tenant())
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k2", "k1"]);
    assert_eq!(s.web_delete_signing_keys(&tenant(), 10, "k2").unwrap(), 1);
    assert!(s.web_signing_key("k1").unwrap().is_none());
    assert_eq!(s.web_signing_key("a1").unwrap().unwrap().tenant, acme);
}
