//! A disabled tenant accepts no sign-in, no refresh and no access token; the refusal says why
//! (only to a caller who proved the password). Enabled again, its users sign in as before.

use cambot_core::SqliteStore;
use cambot_core::TenantState;
use cambot_core::TenantStore;
use cambot_protocol::TenantId;
use serde_json::Value;
use serde_json::json;

use super::support::PASSWORD;
use super::support::WebDaemon;
use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

async fn login(d: &WebDaemon, tenant: &str, password: &str) -> reqwest::Response {
    d.http
        .post(format!("{}/api/auth/login", d.base))
        .json(&json!({"tenant": tenant, "user": "alice", "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh(d: &WebDaemon, cookie: &str) -> reqwest::Response {
    d.http
        .post(format!("{}/api/auth/refresh", d.base))
        .header("cookie", format!("cambot_refresh={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn refused_as_disabled(res: reqwest::Response) {
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "tenant_disabled");
    assert_eq!(
        body["message"],
        "this tenant is disabled; ask the operator to enable it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_tenant_accepts_no_sign_in_refresh_or_token_until_enabled() {
    let d = start(tagging_runner(), web_config()).await;
    let acme = TenantId::new("acme").unwrap();
    assert!(d.store().add_tenant(&acme, "").await.unwrap());
    d.add_user("acme", "alice").await;
    d.add_user("default", "alice").await;
    let (token, cookie) = d.login("acme", "alice").await;
    let (default_token, _) = d.login("default", "alice").await;

    // The admin CLI's handle: another connection to the daemon's database.
    let admin = SqliteStore::open(&d._dir.path().join("cambot.db")).unwrap();
    assert!(
        admin
            .set_tenant_state(&acme, TenantState::Disabled)
            .await
            .unwrap()
    );

    refused_as_disabled(d.get(&token, "/api/me").await).await;
    refused_as_disabled(d.get(&token, "/api/sessions").await).await;
    let res = refresh(&d, &cookie).await;
    let cleared = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared, "the refresh cookie is cleared");
    refused_as_disabled(res).await;
    refused_as_disabled(login(&d, "acme", PASSWORD).await).await;
    // A wrong password learns nothing about the tenant.
    assert_eq!(login(&d, "acme", "wrong password!").await.status(), 401);
    // The other tenant is served meanwhile.
    assert_eq!(d.get(&default_token, "/api/me").await.status(), 200);
    assert_eq!(login(&d, "default", PASSWORD).await.status(), 200);

    assert!(
        admin
            .set_tenant_state(&acme, TenantState::Active)
            .await
            .unwrap()
    );
    assert_eq!(d.get(&token, "/api/me").await.status(), 200);
    assert_eq!(login(&d, "acme", PASSWORD).await.status(), 200);
    // The family refused while disabled stays revoked: sign in again.
    assert_eq!(refresh(&d, &cookie).await.status(), 401);
    d.daemon_shutdown().await;
}
