//! A tenant's own provider, end to end on the real sandbox: two provider entries, each a
//! stand-in upstream with its own key; the default tenant runs on the global choice, `acme`
//! switched to the other entry; each run's model request reaches its own upstream, with its
//! own key, and a change of the tenant's provider applies to its next run. The default tenant
//! uses the legacy environment keys; `acme` has its keys in the vault, set after the daemon
//! started with an empty vault (the daemon reads them without a restart).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_agent::vault;
use cambot_gateway::Secret;
use cambot_protocol::TenantId;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;

use super::sandboxed::eventually_async;
use super::sandboxed::sandbox_tools;
use super::support::config;
use super::support::fake_factory;
use super::support::tenant;

const WAIT: Duration = Duration::from_secs(60);
const FIRST_KEY: &str = "sk-first-tenant-provider-1111";
const SECOND_KEY: &str = "sk-second-tenant-provider-2222";
/// acme's own key for the first entry: the legacy key serves the default tenant only.
const ACME_FIRST_KEY: &str = "sk-acme-first-tenant-provider-3333";

fn asked(requests: &[cambot_testkit::standin::RecordedRequest], word: &str) -> bool {
    requests.iter().any(|r| r.body.to_string().contains(word))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn each_tenants_run_reaches_its_own_providers_upstream() {
    let Some((runner_bin, init_bin)) = sandbox_tools() else {
        return;
    };
    let first = Standin::anthropic()
        .fallback(Script::text("from first"))
        .start_tcp()
        .await
        .unwrap();
    let second = Standin::openai()
        .fallback(Script::text("from second"))
        .start_tcp()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let toml_text = format!(
        r#"
        [model]
        provider = "first"
        [providers.first]
        dialect = "anthropic"
        base_url = "{}"
        api_key_env = "FIRST_KEY"
        model = "model-one"
        [providers.second]
        dialect = "openai"
        base_url = "{}"
        api_key_env = "SECOND_KEY"
        model = "model-two"
        [sandbox]
        backend = "bwrap"
        runner_path = "{}"
        init_path = "{}"
        timeout_secs = 120
        idle_timeout_secs = 60
        [router]
        idle_timeout_ms = 300
        "#,
        first.root_url(),
        second.base_url(),
        runner_bin.display(),
        init_bin.display(),
    );
    let cfg: Config = config(dir.path(), &toml_text);
    // The key file the config names (`support::config`): the daemon and this test share it.
    let key_file = dir.path().join("test-master.key");
    let key_path = key_file.display().to_string();
    let env: cambot_agent::production::EnvLookup = Arc::new(move |k: &str| match k {
        "FIRST_KEY" => Some(FIRST_KEY.to_owned()),
        "SECOND_KEY" => Some(SECOND_KEY.to_owned()),
        "CAMBOT_MASTER_KEY_FILE" => Some(key_path.clone()),
        _ => None,
    });
    let slot = Arc::new(Mutex::new(None));
    let daemon = Daemon::start_with(
        &cfg,
        production_runner(&cfg, env),
        fake_factory(Arc::clone(&slot), None),
    )
    .await
    .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    let store = Arc::clone(daemon.router().store());
    let acme = TenantId::new("acme").unwrap();
    assert!(store.add_tenant(&acme, "Acme").await.unwrap());
    // The vault was empty when the daemon started: these are read without a restart.
    let vault_store = Arc::clone(&store) as Arc<dyn cambot_core::VaultStore>;
    let key = vault::load_key(
        vault_store.as_ref(),
        super::vault_support::key_location(&key_file),
        true,
        None,
    )
    .await
    .unwrap()
    .unwrap();
    let vault = vault::Vault::open(vault_store, key).await.unwrap();
    for (name, value) in [("second", SECOND_KEY), ("first", ACME_FIRST_KEY)] {
        vault
            .set(&acme, name, &Secret::new(value.to_owned()), None)
            .await
            .unwrap();
    }
    assert!(
        store
            .set_tenant_provider(&acme, Some("second"))
            .await
            .unwrap()
    );
    channel
        .register(&tenant(), "fake:d1", "d1", Some(false))
        .await
        .unwrap();
    for (jid, folder) in [("fake:a1", "a1"), ("fake:a2", "a2")] {
        channel
            .register(&acme, jid, folder, Some(false))
            .await
            .unwrap();
    }

    channel
        .inject(&tenant(), "fake:d1", "Dana", "DEFAULTWORD")
        .await
        .unwrap();
    channel
        .inject(&acme, "fake:a1", "Alice", "ACMEWORD")
        .await
        .unwrap();
    let sent = channel.wait_sent(2, WAIT).await;
    assert_eq!(sent.len(), 2, "replies: {sent:?}");
    let reply = |jid: &str| {
        sent.iter()
            .find(|d| d.chat_jid == jid)
            .map(|d| d.text.clone())
    };
    assert_eq!(reply("fake:d1").as_deref(), Some("from first"));
    assert_eq!(reply("fake:a1").as_deref(), Some("from second"));

    // Each upstream saw only its own tenant's prompt, with its own key and model.
    let (firsts, seconds) = (first.requests(), second.requests());
    assert!(asked(&firsts, "DEFAULTWORD") && !asked(&firsts, "ACMEWORD"));
    assert!(asked(&seconds, "ACMEWORD") && !asked(&seconds, "DEFAULTWORD"));
    assert!(
        firsts
            .iter()
            .all(|r| r.header("x-api-key") == Some(FIRST_KEY))
    );
    let bearer = format!("Bearer {SECOND_KEY}");
    assert!(
        seconds
            .iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str()))
    );
    assert!(firsts.iter().all(|r| r.body["model"] == "model-one"));
    assert!(seconds.iter().all(|r| r.body["model"] == "model-two"));

    // Back to the global choice: acme's next run goes to the first upstream.
    assert!(store.set_tenant_provider(&acme, None).await.unwrap());
    eventually_async("the first runs closed", || {
        daemon.router().queue().is_idle()
    })
    .await;
    channel
        .inject(&acme, "fake:a2", "Alice", "LATERWORD")
        .await
        .unwrap();
    let sent = channel.wait_sent(3, WAIT).await;
    assert_eq!(sent.len(), 3, "replies: {sent:?}");
    assert_eq!(sent[2].text, "from first");
    assert!(asked(&first.requests(), "LATERWORD"));
    // acme's request to the first entry carries acme's key, never the default tenant's.
    let later: Vec<_> = first
        .requests()
        .into_iter()
        .filter(|r| r.body.to_string().contains("LATERWORD"))
        .collect();
    assert!(!later.is_empty());
    assert!(
        later
            .iter()
            .all(|r| r.header("x-api-key") == Some(ACME_FIRST_KEY))
    );
    assert!(!asked(&second.requests(), "LATERWORD"));
    daemon.shutdown().await;
}
