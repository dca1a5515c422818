//! The vault as the daemon reads it. A vault in use is opened when the daemon starts (a missing
//! or wrong master key stops the start); a vault never used has no key yet, so until the admin
//! CLI stores the first secret every lookup finds nothing, and the first lookup after that
//! opens it, without a restart.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use cambot_core::VaultStore;
use cambot_gateway::FoundSecret;
use cambot_gateway::Secret;
use cambot_gateway::SecretFuture;
use cambot_gateway::SecretsError;
use cambot_gateway::TenantSecrets;
use cambot_protocol::TenantId;
use tokio::sync::OnceCell;

use super::KeyLocation;
use super::Vault;
use super::VaultError;

/// The daemon's [`TenantSecrets`]: see the module docs.
pub struct DaemonVault {
    store: Arc<dyn VaultStore>,
    location: KeyLocation,
    data_dir: PathBuf,
    vault: OnceCell<Vault>,
}

impl std::fmt::Debug for DaemonVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonVault")
            .field("open", &self.vault.initialized())
            .finish_non_exhaustive()
    }
}

impl DaemonVault {
    /// Opens the vault of `store` with the master key at `location` (never creating one). An
    /// error when the vault holds data the key cannot open, or no key is found for it.
    pub async fn open(
        store: Arc<dyn VaultStore>,
        location: KeyLocation,
        data_dir: &Path,
    ) -> Result<Self, VaultError> {
        let me = Self {
            store,
            location,
            data_dir: data_dir.to_owned(),
            vault: OnceCell::new(),
        };
        if me.store.vault_check().await?.is_some() {
            let opened = me.open_now().await?;
            tracing::info!(path = %opened.key_location().path.display(), "vault opened");
            let _ = me.vault.set(opened);
        } else {
            tracing::info!(
                "the vault is empty: secrets set later with `cambot secrets set` are read without a restart"
            );
        }
        Ok(me)
    }

    async fn open_now(&self) -> Result<Vault, VaultError> {
        let key = super::load_key(
            self.store.as_ref(),
            self.location.clone(),
            false,
            Some(&self.data_dir),
        )
        .await?
        .ok_or_else(|| VaultError::NoKey {
            looked: self.location.looked.join(", "),
        })?;
        Vault::open(Arc::clone(&self.store), key).await
    }

    /// The vault, once it has been used; `None` while it is still empty (one store read).
    async fn vault(&self) -> Result<Option<&Vault>, VaultError> {
        if let Some(v) = self.vault.get() {
            return Ok(Some(v));
        }
        if self.store.vault_check().await?.is_none() {
            return Ok(None);
        }
        let opened = self
            .vault
            .get_or_try_init(|| async {
                let v = self.open_now().await?;
                tracing::info!(path = %v.key_location().path.display(), "vault opened (first secret set after start)");
                Ok::<_, VaultError>(v)
            })
            .await?;
        Ok(Some(opened))
    }
}

fn gateway_error(e: VaultError) -> SecretsError {
    SecretsError(e.to_string())
}

impl TenantSecrets for DaemonVault {
    fn secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, Option<FoundSecret>> {
        Box::pin(async move {
            match self.vault().await.map_err(gateway_error)? {
                Some(v) => v.get(tenant, name).await.map_err(gateway_error),
                None => Ok(None),
            }
        })
    }

    fn values<'a>(&'a self, tenant: &'a TenantId) -> SecretFuture<'a, Vec<Secret>> {
        Box::pin(async move {
            match self.vault().await.map_err(gateway_error)? {
                Some(v) => v.values(tenant).await.map_err(gateway_error),
                None => Ok(Vec::new()),
            }
        })
    }

    fn store<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: Secret,
        expires_ms: Option<i64>,
    ) -> SecretFuture<'a, ()> {
        Box::pin(async move {
            match self.vault().await.map_err(gateway_error)? {
                Some(v) => v
                    .set(tenant, name, &value, expires_ms)
                    .await
                    .map_err(gateway_error),
                None => Err(SecretsError(
                    "the vault has no master key yet: set a secret with `cambot secrets set` first"
                        .into(),
                )),
            }
        })
    }
}
