//! The web channel's security rules on a real (in-memory) store: sign-in, disabled users,
//! session ownership, and tokens signed with store-kept keys.

use cambot_core::SqliteStore;
use cambot_protocol::DataLayout;
use cambot_protocol::RegisteredGroup;

use super::*;
use crate::BoxFuture;
use crate::ChannelOpts;
use crate::WebChannel;
use crate::web::passwords::hash_password;

/// A host that gives the web channel its store and data directory and nothing else.
struct StoreHost {
    store: Arc<SqliteStore>,
    layout: DataLayout,
}

impl ChannelHost for StoreHost {
    fn on_message(&self, _m: InboundMessage) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async { Err(HostError::Invalid("not in this test".into())) })
    }
    fn on_chat_metadata(&self, _m: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async { Err(HostError::Invalid("not in this test".into())) })
    }
    fn registered_groups(
        &self,
        _t: &TenantId,
    ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn register_group(
        &self,
        _r: GroupRegistrationRequest,
    ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>> {
        Box::pin(async { Err(HostError::Invalid("not in this test".into())) })
    }
    fn users(&self) -> Option<Arc<dyn UserStore>> {
        Some(Arc::clone(&self.store) as Arc<dyn UserStore>)
    }
    fn data_layout(&self) -> Option<DataLayout> {
        Some(self.layout.clone())
    }
    fn key_sealer(&self) -> Option<Arc<dyn crate::KeySealer>> {
        Some(Arc::new(TestSealer))
    }
}

/// A stand-in for cambot's vault: "seals" by binding the tenant and name and inverting the
/// bytes (cambot's real vault is tested in cambot-agent).
struct TestSealer;

impl TestSealer {
    fn label(tenant: &TenantId, name: &str) -> Vec<u8> {
        format!("{tenant}/{name}:").into_bytes()
    }
}

impl crate::KeySealer for TestSealer {
    fn seal<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        let mut out = Self::label(tenant, name);
        out.extend(key.iter().map(|b| !b));
        Box::pin(async move { Ok(out) })
    }
    fn open<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<zeroize::Zeroizing<Vec<u8>>, HostError>> {
        let label = Self::label(tenant, name);
        let opened = sealed
            .strip_prefix(label.as_slice())
            .map(|rest| zeroize::Zeroizing::new(rest.iter().map(|b| !b).collect()))
            .ok_or_else(|| HostError::Sealing("not sealed for this tenant and name".into()));
        Box::pin(async move { opened })
    }
}

struct Fixture {
    store: Arc<SqliteStore>,
    channel: WebChannel,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let host = StoreHost {
        store: Arc::clone(&store),
        layout: DataLayout::new(dir.path()),
    };
    let opts = ChannelOpts {
        host: Arc::new(host),
        assistant_name: "Andy".into(),
    };
    let channel = WebChannel::new(opts, &WebConfig::default()).unwrap();
    let tenant = TenantId::default_tenant();
    let hash = hash_password("correct horse").unwrap();
    for user in ["alice", "bob", "mallory"] {
        assert!(store.add_user(&tenant, user, &hash).await.unwrap());
    }
    store
        .set_user_disabled(&tenant, "mallory", true)
        .await
        .unwrap();
    Fixture {
        store,
        channel,
        _dir: dir,
    }
}

fn caller(user: &str) -> Caller {
    Caller {
        tenant: TenantId::default_tenant(),
        user: user.into(),
        exp: now_secs() + 60,
        external: false,
    }
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_unknown_and_disabled_users() {
    let f = fixture().await;
    let app = &f.channel.app;
    let tenant = TenantId::default_tenant();
    let ok = app
        .check_password(&tenant, "alice", "correct horse".into())
        .await
        .unwrap();
    assert_eq!(ok.map(|u| u.id).as_deref(), Some("alice"));
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", "correct horse"),
        ("mallory", "correct horse"),
    ] {
        let got = app.check_password(&tenant, user, password.into()).await;
        assert_eq!(got, Ok(None), "{user}");
    }
}

#[tokio::test]
async fn disabled_and_unknown_users_are_refused_on_every_call() {
    let f = fixture().await;
    let app = &f.channel.app;
    let tenant = TenantId::default_tenant();
    assert_eq!(app.check_user(&tenant, "alice", false).await, Ok(()));
    assert_eq!(
        app.check_user(&tenant, "mallory", false).await,
        Err(ApiError::Unauthorized)
    );
    assert_eq!(
        app.check_user(&tenant, "nobody", false).await,
        Err(ApiError::Unauthorized)
    );
    // A user of the external issuer need not exist locally.
    assert_eq!(app.check_user(&tenant, "nobody", true).await, Ok(()));
    // A token stops working once its user is disabled.
    let (token, _) = app.tokens.issue(&tenant, "alice").await.unwrap();
    assert!(app.authenticate(&token).await.is_ok());
    f.store
        .set_user_disabled(&tenant, "alice", true)
        .await
        .unwrap();
    assert_eq!(app.authenticate(&token).await, Err(ApiError::Unauthorized));
}

#[tokio::test]
async fn a_session_is_found_only_by_its_owner() {
    let f = fixture().await;
    let app = &f.channel.app;
    let tenant = TenantId::default_tenant();
    let id = random_id();
    let row = WebSessionRow {
        tenant: tenant.clone(),
        user_id: "alice".into(),
        id: id.clone(),
        folder: session_folder(&tenant, "alice", &id).unwrap(),
        chat_jid: session_jid(&tenant, "alice", &id).unwrap(),
        title: String::new(),
        created_ms: now_ms(),
        last_active_ms: now_ms(),
    };
    f.store.insert_web_session(&row).await.unwrap();
    assert_eq!(app.owned_session(&caller("alice"), &id).await, Ok(row));
    assert_eq!(
        app.owned_session(&caller("bob"), &id).await,
        Err(ApiError::NotFound)
    );
    assert_eq!(
        app.owned_session(&caller("alice"), "../x").await,
        Err(ApiError::NotFound)
    );
}

#[tokio::test]
async fn tokens_are_signed_with_keys_kept_in_the_store() {
    let f = fixture().await;
    let app = &f.channel.app;
    let tenant = TenantId::default_tenant();
    let (token, _) = app.tokens.issue(&tenant, "alice").await.unwrap();
    let keys = f.store.signing_keys(&tenant).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].algorithm, "EdDSA");
    // Stored sealed by the host, bound to the tenant and the key id.
    assert!(keys[0].sealed);
    let label = TestSealer::label(&tenant, &crate::web::tokens::signing_key_name(&keys[0].kid));
    assert!(keys[0].private_key.starts_with(&label));
    // A fresh cache reads the key back from the store.
    app.tokens.clear_caches();
    let identity = app.tokens.verify(&token).await.unwrap();
    assert_eq!(
        (identity.tenant, identity.user.as_str()),
        (tenant.clone(), "alice")
    );
    assert!(!identity.external);
    // ... and signs with it after opening it.
    let (second, _) = app.tokens.issue(&tenant, "bob").await.unwrap();
    assert_eq!(f.store.signing_keys(&tenant).await.unwrap().len(), 1);
    assert_eq!(app.tokens.verify(&second).await.unwrap().user, "bob");
}

/// A host without a key sealer gets no web channel: it would have to keep private keys in
/// plaintext.
#[test]
fn the_web_channel_refuses_a_host_without_a_key_sealer() {
    struct NoSealer(StoreHost);
    impl ChannelHost for NoSealer {
        fn on_message(&self, m: InboundMessage) -> BoxFuture<'_, Result<(), HostError>> {
            self.0.on_message(m)
        }
        fn on_chat_metadata(&self, m: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>> {
            self.0.on_chat_metadata(m)
        }
        fn registered_groups(
            &self,
            t: &TenantId,
        ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>> {
            self.0.registered_groups(t)
        }
        fn register_group(
            &self,
            r: GroupRegistrationRequest,
        ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>> {
            self.0.register_group(r)
        }
        fn users(&self) -> Option<Arc<dyn UserStore>> {
            self.0.users()
        }
        fn data_layout(&self) -> Option<DataLayout> {
            self.0.data_layout()
        }
    }
    let host = NoSealer(StoreHost {
        store: Arc::new(SqliteStore::open_in_memory().unwrap()),
        layout: DataLayout::new(std::env::temp_dir()),
    });
    let opts = ChannelOpts {
        host: Arc::new(host),
        assistant_name: "Andy".into(),
    };
    let err = WebChannel::new(opts, &WebConfig::default()).unwrap_err();
    assert!(err.to_string().contains("key vault"), "{err}");
}

fn channel_with(config: &WebConfig) -> Result<WebChannel, crate::ChannelError> {
    let dir = std::env::temp_dir();
    let host = StoreHost {
        store: Arc::new(SqliteStore::open_in_memory().unwrap()),
        layout: DataLayout::new(&dir),
    };
    let opts = ChannelOpts {
        host: Arc::new(host),
        assistant_name: "Andy".into(),
    };
    WebChannel::new(opts, config)
}

/// The refresh cookie is Secure by default unless the listener is loopback; an explicit
/// setting wins either way. (The channel is built, not connected: nothing listens.)
#[test]
fn the_secure_cookie_flag_follows_the_listen_address_unless_configured() {
    for (listen, setting, secure) in [
        ("0.0.0.0:8080", None, true),
        ("[::]:8080", None, true),
        ("192.0.2.10:443", None, true),
        ("chat.example.com:443", None, true),
        ("127.0.0.1:8080", None, false),
        ("127.0.0.2:8080", None, false),
        ("[::1]:8080", None, false),
        ("[::ffff:127.0.0.1]:8080", None, false),
        ("localhost:8080", None, false),
        ("0.0.0.0:8080", Some(false), false),
        ("127.0.0.1:8080", Some(true), true),
    ] {
        let config = WebConfig {
            listen: listen.into(),
            cookie_secure: setting,
            ..WebConfig::default()
        };
        assert_eq!(
            config.resolved_cookie_secure(),
            secure,
            "{listen} {setting:?}"
        );
        let channel = channel_with(&config).unwrap();
        assert_eq!(channel.cookie_secure(), secure, "{listen} {setting:?}");
    }
}

#[test]
fn zero_lifetimes_are_refused_with_the_key_named() {
    for (mutate, key) in [
        (
            (|c: &mut WebConfig| c.refresh_family_ttl_secs = 0) as fn(&mut WebConfig),
            "refresh_family_ttl_secs",
        ),
        (|c: &mut WebConfig| c.user_check_secs = 0, "user_check_secs"),
        (
            |c: &mut WebConfig| c.sign_ins_in_flight_per_address = 0,
            "sign_ins_in_flight_per_address",
        ),
    ] {
        let mut config = WebConfig::default();
        mutate(&mut config);
        let err = channel_with(&config).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}
