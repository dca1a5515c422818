//! The vault as the gateway's [`TenantSecrets`].

use cambot_gateway::FoundSecret;
use cambot_gateway::Secret;
use cambot_gateway::SecretFuture;
use cambot_gateway::SecretsError;
use cambot_gateway::TenantSecrets;
use cambot_protocol::TenantId;

use super::Vault;
use super::VaultError;

fn gateway_error(e: VaultError) -> SecretsError {
    SecretsError(e.to_string())
}

impl TenantSecrets for Vault {
    fn secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, Option<FoundSecret>> {
        Box::pin(async move { self.get(tenant, name).await.map_err(gateway_error) })
    }

    fn values<'a>(&'a self, tenant: &'a TenantId) -> SecretFuture<'a, Vec<Secret>> {
        Box::pin(async move { self.values(tenant).await.map_err(gateway_error) })
    }

    fn secret_and_values<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, (Option<FoundSecret>, Vec<Secret>)> {
        Box::pin(async move {
            self.get_with_values(tenant, name)
                .await
                .map_err(gateway_error)
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
            self.set(tenant, name, &value, expires_ms)
                .await
                .map_err(gateway_error)
        })
    }
}
