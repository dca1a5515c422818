//! Where the gateway gets a tenant's credentials: the [`TenantSecrets`] the binary wires up
//! (the encrypted vault). The gateway asks for a value at request time, for the tenant of the
//! run the request came from, uses it once and drops it; it never caches plaintext.

use std::future::Future;
use std::pin::Pin;

use cambot_protocol::TenantId;

use crate::upstream::Secret;

/// A lookup's future.
pub type SecretFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SecretsError>> + Send + 'a>>;

/// Why a tenant's secrets could not be read (not "missing": that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("the vault cannot be read: {0}")]
pub struct SecretsError(pub String);

/// A stored secret as the gateway sees it.
#[derive(Debug, Clone)]
pub struct FoundSecret {
    pub value: Secret,
    /// When the value stops being valid (ms since the epoch), for OAuth access tokens.
    pub expires_ms: Option<i64>,
}

/// A tenant's credentials, by name. Implemented by the binary's vault; tests use a map.
pub trait TenantSecrets: Send + Sync + 'static {
    /// The tenant's secret `name`, decrypted for this one use; `None` when the tenant has none.
    fn secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, Option<FoundSecret>>;

    /// Every secret value the tenant has, to redact them from upstream answers.
    fn values<'a>(&'a self, tenant: &'a TenantId) -> SecretFuture<'a, Vec<Secret>>;

    /// Stores `value` as the tenant's secret `name` (an OAuth refresh on the host).
    fn store<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: Secret,
        expires_ms: Option<i64>,
    ) -> SecretFuture<'a, ()>;
}
