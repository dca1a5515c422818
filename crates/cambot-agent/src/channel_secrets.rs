//! Channel credentials kept in the vault: a web issuer's shared signing secret written
//! `secret = "secret:NAME"` is looked up in the vault of that issuer's tenant when the daemon
//! builds its channels. The channels crate only receives the value (it knows nothing of the
//! vault).

use std::path::Path;
use std::sync::Arc;

use cambot_channels::ChannelsConfig;
use cambot_channels::web::SharedSecret;
use cambot_core::VaultStore;

use crate::vault::DaemonVault;
use crate::vault::KeyLocation;
use cambot_gateway::TenantSecrets;

/// Fills `resolved_secret` of every enabled web issuer that names a vault secret. The error
/// names the issuer, its tenant and the secret, never a value.
pub async fn resolve_issuer_secrets(
    channels: &mut ChannelsConfig,
    store: Arc<dyn VaultStore>,
    location: KeyLocation,
    data_dir: &Path,
) -> Result<(), String> {
    if !channels.web.enabled || channels.web.issuers.iter().all(|i| i.secret.is_none()) {
        return Ok(());
    }
    let vault = DaemonVault::open(store, location, data_dir)
        .await
        .map_err(|e| format!("channels.web.issuers: {e}"))?;
    for (i, issuer) in channels.web.issuers.iter_mut().enumerate() {
        let Some(name) = issuer.secret_name().map(str::to_owned) else {
            continue;
        };
        let key = format!("channels.web.issuers[{i}] ({:?})", issuer.issuer);
        let found = vault
            .secret(&issuer.tenant, &name)
            .await
            .map_err(|e| format!("{key}: {e}"))?
            .ok_or_else(|| {
                format!(
                    "{key}: tenant {} has no secret '{name}' (set it with: cambot secrets set \
                     --tenant {} {name})",
                    issuer.tenant, issuer.tenant
                )
            })?;
        issuer.resolved_secret = Some(SharedSecret::new(found.value.expose().as_bytes().to_vec()));
        tracing::debug!(issuer = %issuer.issuer, tenant = %issuer.tenant, secret = %name, "web issuer secret read from the vault");
    }
    Ok(())
}

/// [`resolve_issuer_secrets`] with the daemon's store and the master key the environment names
/// (the store is opened only when an issuer needs it).
pub async fn resolve_from_env(
    channels: &mut ChannelsConfig,
    data_dir: &Path,
) -> Result<(), String> {
    if !channels.web.enabled || channels.web.issuers.iter().all(|i| i.secret.is_none()) {
        return Ok(());
    }
    let layout = cambot_protocol::DataLayout::new(data_dir);
    let store = crate::database::open_store(&layout)
        .await
        .map_err(|e| format!("channels.web.issuers: {e}"))?;
    let location = crate::vault::master_key::locate_from_env()
        .map_err(|e| format!("channels.web.issuers: {e}"))?;
    resolve_issuer_secrets(channels, store as Arc<dyn VaultStore>, location, data_dir).await
}

#[cfg(test)]
mod tests {
    use cambot_core::SqliteStore;
    use cambot_core::TenantStore;
    use cambot_gateway::Secret;
    use cambot_protocol::TenantId;

    use super::*;
    use crate::vault::KeySource;
    use crate::vault::Vault;

    const VALUE: &str = "issuer-shared-secret-0123456789abcdef-xyz";

    fn channels(secret: &str) -> ChannelsConfig {
        toml::from_str(&format!(
            "[web]\nenabled = true\n[[web.issuers]]\nissuer = \"https://idp.example\"\n\
             audience = \"cambot\"\ntenant = \"acme\"\nsecret = \"{secret}\"\n"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn an_issuer_secret_is_read_from_its_tenants_vault_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
        let acme = TenantId::new("acme").unwrap();
        assert!(store.add_tenant(&acme, "Acme").await.unwrap());
        let location = KeyLocation {
            source: KeySource::EnvFile,
            path: dir.path().join("keys/master.key"),
            looked: vec!["test".into()],
        };
        let key = crate::vault::load_key(store.as_ref(), location.clone(), true, None)
            .await
            .unwrap()
            .unwrap();
        let vault = Vault::open(store.clone(), key).await.unwrap();
        vault
            .set(&acme, "idp", &Secret::new(VALUE.to_owned()), None)
            .await
            .unwrap();

        let mut found = channels("secret:idp");
        found.web.validate().unwrap();
        resolve_issuer_secrets(&mut found, store.clone(), location.clone(), dir.path())
            .await
            .unwrap();
        let resolved = found.web.issuers[0].resolved_secret.as_ref().unwrap();
        assert_eq!(resolved.expose(), VALUE.as_bytes());
        assert!(!format!("{found:?}").contains(VALUE));

        let mut missing = channels("secret:other");
        let err = resolve_issuer_secrets(&mut missing, store, location, dir.path())
            .await
            .unwrap_err();
        assert!(
            err.contains("tenant acme has no secret 'other'")
                && err.contains("cambot secrets set --tenant acme other"),
            "{err}"
        );
    }

    #[test]
    fn a_literal_issuer_secret_is_refused_without_quoting_it() {
        let err = channels(VALUE).web.validate().unwrap_err();
        assert!(err.contains("secret:NAME"), "{err}");
        assert!(!err.contains(VALUE), "{err}");
    }
}
