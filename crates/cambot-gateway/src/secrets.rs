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

    /// [`TenantSecrets::secret`] and [`TenantSecrets::values`] together, as every model
    /// request needs both: a vault on a database answers with one read. The default asks one
    /// then the other.
    fn secret_and_values<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> SecretFuture<'a, (Option<FoundSecret>, Vec<Secret>)> {
        Box::pin(async move {
            let found = self.secret(tenant, name).await?;
            Ok((found, self.values(tenant).await?))
        })
    }

    /// Stores `value` as the tenant's secret `name` (an OAuth refresh on the host).
    fn store<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        value: Secret,
        expires_ms: Option<i64>,
    ) -> SecretFuture<'a, ()>;
}

/// A vault with nothing in it: every lookup is `None`. For a gateway without a vault (tests;
/// only the default tenant's legacy keys then work).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl TenantSecrets for NoSecrets {
    fn secret<'a>(
        &'a self,
        _tenant: &'a TenantId,
        _name: &'a str,
    ) -> SecretFuture<'a, Option<FoundSecret>> {
        Box::pin(async { Ok(None) })
    }

    fn values<'a>(&'a self, _tenant: &'a TenantId) -> SecretFuture<'a, Vec<Secret>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn store<'a>(
        &'a self,
        _tenant: &'a TenantId,
        _name: &'a str,
        _value: Secret,
        _expires_ms: Option<i64>,
    ) -> SecretFuture<'a, ()> {
        Box::pin(async {
            Err(SecretsError(
                "this gateway has no vault to store into".into(),
            ))
        })
    }
}

/// Where config points at a secret: `secret:NAME`.
pub const SECRET_PREFIX: &str = "secret:";

/// A `secret:NAME` reference that cannot be used. It does not quote the value: a key
/// pasted where its name belongs must not reach a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretRefError(String);

/// The `NAME` of a config value written exactly `secret:NAME` (letters, digits, `_`, `-`, `.`;
/// 1 to 64 of them).
pub fn parse_secret_ref(value: &str) -> Result<&str, SecretRefError> {
    let name = value.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        SecretRefError(
            "expected secret:NAME, naming a secret of the tenant's vault (the value given is not shown)"
                .into(),
        )
    })?;
    check_secret_name(name).map_err(SecretRefError)?;
    Ok(name)
}

/// Whether `name` is a usable secret name; the reason when not.
pub(crate) fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a secret name has 1 to 64 characters".into());
    }
    if !name.bytes().all(is_name_byte) {
        return Err("a secret name is letters, digits, `_`, `-` and `.` only".into());
    }
    Ok(())
}

pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The one wording of "this tenant has no such secret", for the run and the logs.
pub(crate) fn missing_message(tenant: &TenantId, name: &str) -> String {
    format!("tenant {tenant} has no secret '{name}'")
}
