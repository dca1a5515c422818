//! Which key a run's model request carries, and which values its answers are scanned for:
//! both decided for the run's tenant at request time, from the [`TenantSecrets`] vault.
//!
//! [`TenantSecrets`]: crate::TenantSecrets

use std::sync::atomic::Ordering;

use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::Response;
use cambot_protocol::TenantId;

use crate::gateway::Gateway;
use crate::redact::Redactor;
use crate::response::error_response;
use crate::secrets::FoundSecret;
use crate::secrets::SecretsError;
use crate::secrets::missing_message;
use crate::upstream::ModelUpstream;
use crate::upstream::Secret;

/// Why a run gets no credential.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    /// The tenant has no such secret (and no fallback applies).
    #[error("{}", missing_message(.tenant, .name))]
    Missing { tenant: TenantId, name: String },
    #[error("{0}")]
    Vault(#[from] SecretsError),
}

impl Gateway {
    /// `tenant`'s secret `name`; a missing one is an error. Counts and logs both failures
    /// (with the tenant and the secret's name, never a value).
    pub(crate) async fn tenant_secret(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<FoundSecret, CredentialError> {
        match self.secrets.secret(tenant, name).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(self.missing(tenant, name)),
            Err(e) => Err(self.vault_error(tenant, name, e)),
        }
    }

    pub(crate) fn missing(&self, tenant: &TenantId, name: &str) -> CredentialError {
        self.stats.missing_secret.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%tenant, secret = name, "the run's tenant has no such secret; nothing sent");
        CredentialError::Missing {
            tenant: tenant.clone(),
            name: name.to_owned(),
        }
    }

    pub(crate) fn vault_error(
        &self,
        tenant: &TenantId,
        name: &str,
        e: SecretsError,
    ) -> CredentialError {
        self.stats.vault_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%tenant, secret = name, error = %e, "vault read failed; nothing sent");
        CredentialError::Vault(e)
    }

    /// The key a model request of `tenant` carries to `upstream` (`None` for an upstream that
    /// takes none) and what its answer is scanned for. The legacy (environment) key serves the
    /// default tenant only, and only while its vault has no such secret.
    pub(crate) async fn model_key_and_redactor(
        &self,
        tenant: &TenantId,
        upstream: &ModelUpstream,
    ) -> Result<(Option<Secret>, Redactor), CredentialError> {
        let cred = upstream.credential.as_ref().filter(|_| {
            // Only these dialects send a key at all (see the proxy's `auth_headers`).
            matches!(upstream.dialect.as_str(), "anthropic" | "openai")
        });
        let Some(cred) = cred else {
            return Ok((None, self.redactor(tenant, None).await?));
        };
        let (found, mut values) = self
            .secrets
            .secret_and_values(tenant, &cred.secret)
            .await
            .map_err(|e| self.vault_error(tenant, &cred.secret, e))?;
        let key = match found {
            Some(found) => found.value,
            None => match &cred.legacy {
                Some(legacy) if tenant.is_default() => {
                    // A legacy key lives outside the vault: scanned for too.
                    values.push(legacy.clone());
                    legacy.clone()
                }
                _ => return Err(self.missing(tenant, &cred.secret)),
            },
        };
        Ok((Some(key), Redactor::new(values)))
    }

    /// Checked before a run of `tenant` on the upstream `provider` starts, so that a missing
    /// key is answered without a sandbox: `Ok(Some(NAME))` names the secret the tenant lacks;
    /// `Ok(None)` when its requests would carry a key (or need none, or the provider is not
    /// an upstream: the proxy refuses those). The value read is dropped at once.
    pub async fn missing_model_secret(
        &self,
        tenant: &TenantId,
        provider: &str,
    ) -> Result<Option<String>, SecretsError> {
        let Some(upstream) = self.upstreams.get(provider) else {
            return Ok(None);
        };
        match self.model_key_and_redactor(tenant, upstream).await {
            Ok(_) => Ok(None),
            Err(CredentialError::Missing { name, .. }) => Ok(Some(name)),
            Err(CredentialError::Vault(e)) => Err(e),
        }
    }

    /// What answers to `tenant`'s runs are scanned for: every value in its vault, plus `used`
    /// (a legacy key lives outside the vault).
    pub(crate) async fn redactor(
        &self,
        tenant: &TenantId,
        used: Option<&Secret>,
    ) -> Result<Redactor, CredentialError> {
        let mut values = match self.secrets.values(tenant).await {
            Ok(values) => values,
            Err(e) => return Err(self.vault_error(tenant, "(all values)", e)),
        };
        values.extend(used.cloned());
        Ok(Redactor::new(values))
    }
}

/// The run's answer to a credential failure. Never retried: waiting does not add a secret,
/// and a vault that cannot be read needs the operator.
pub(crate) fn credential_refusal(e: &CredentialError) -> Response {
    let (status, kind) = match e {
        CredentialError::Missing { .. } => (StatusCode::FORBIDDEN, "missing_secret"),
        CredentialError::Vault(_) => (StatusCode::INTERNAL_SERVER_ERROR, "vault"),
    };
    let mut resp = error_response(status, kind, &e.to_string());
    resp.headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    resp
}
