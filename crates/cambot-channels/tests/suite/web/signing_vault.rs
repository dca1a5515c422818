//! Signing keys at rest: a key an older cambot stored in plaintext is sealed by the vault at
//! the daemon's next start, the tokens it signed stay valid (access and refresh), and no copy
//! of the private key is left in the database file or its WAL.

use cambot_channels::web::tokens::hash_refresh_token;
use cambot_channels::web::tokens::new_refresh_token;
use cambot_channels::web::tokens::now_ms;
use cambot_channels::web::tokens::now_secs;
use cambot_core::RefreshTokenRow;
use cambot_core::SigningKeyRow;
use cambot_core::UserStore;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use ring::signature::Ed25519KeyPair;
use ring::signature::KeyPair;
use serde_json::json;

use super::support::master_key_file;
use super::support::refresh_cookie;
use super::support::seed_users;
use super::support::start_in;
use super::support::tagging_runner;
use super::support::web_config;

fn file_holds(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test]
async fn plaintext_signing_keys_are_sealed_at_start_and_their_tokens_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    seed_users(&dir, &[("acme", "alice")]).await;
    let acme = TenantId::new("acme").unwrap();
    let layout = DataLayout::new(dir.path());

    // The layout of an older cambot: the private key in plaintext, a token it signed, and a
    // refresh token of the same sign-in.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let kid = "0123456789abcdef0123456789abcdef".to_owned();
    let refresh = new_refresh_token();
    {
        let store = cambot_agent::database::open_store(&layout).await.unwrap();
        store
            .add_signing_key(&SigningKeyRow {
                kid: kid.clone(),
                tenant: acme.clone(),
                algorithm: "EdDSA".into(),
                private_key: pkcs8.as_ref().to_vec(),
                public_key: pair.public_key().as_ref().to_vec(),
                created_ms: now_ms(),
                sealed: false,
            })
            .await
            .unwrap();
        store
            .insert_refresh(&RefreshTokenRow {
                hash: hash_refresh_token(&refresh),
                family: "old-family".into(),
                tenant: acme.clone(),
                user_id: "alice".into(),
                expires_ms: now_ms() + 86_400_000,
                family_created_ms: now_ms(),
            })
            .await
            .unwrap();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let now = now_secs();
    let claims = json!({
        "iss": "cambot", "aud": "cambot-web", "sub": "alice", "tid": "acme",
        "iat": now, "exp": now + 600, "jti": "before-the-vault",
    });
    let old_token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    let key_file = master_key_file(&dir);
    assert!(!key_file.exists());

    // The first start with the web channel creates the master key and seals the key.
    let d = start_in(dir, tagging_runner(), web_config()).await.unwrap();
    assert!(key_file.exists());
    let row = d.store().signing_key(&kid).await.unwrap().unwrap();
    assert!(row.sealed);
    assert_ne!(row.private_key, pkcs8.as_ref());
    let (_, opened) = d.signing_key(&acme).await;
    assert_eq!(opened, pkcs8.as_ref());

    // The old access token still verifies; the old refresh token still refreshes, and the
    // new access token is signed with the sealed key (the same kid).
    assert_eq!(d.get(&old_token, "/api/sessions").await.status(), 200);
    let res = d
        .http
        .post(format!("{}/api/auth/refresh", d.base))
        .header("cookie", format!("cambot_refresh={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(refresh_cookie(&res).is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    let fresh = body["access_token"].as_str().unwrap();
    let fresh_kid = jsonwebtoken::decode_header(fresh).unwrap().kid.unwrap();
    assert_eq!(fresh_kid, kid);
    assert_eq!(d.get(fresh, "/api/sessions").await.status(), 200);

    // No copy of the private key left in the database or its WAL (the daemon is running:
    // whatever it wrote since is there too).
    let db = layout.database();
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    for file in [db.as_path(), std::path::Path::new(&wal)] {
        assert!(
            !file_holds(file, pkcs8.as_ref()),
            "private key found in {}",
            file.display()
        );
    }
    d.daemon_shutdown().await;
}
