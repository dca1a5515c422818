//! Key material sealed for other parts of cambot: the web channel's token signing keys. Bytes
//! are sealed under the tenant's data key and bound to the tenant and a name, with their own
//! purpose in the associated data, so a sealed key never opens as a secret (nor the reverse).
//! The store keeps them beside their public half (`web_signing_keys`), not among the secrets.

use cambot_channels::BoxFuture;
use cambot_channels::HostError;
use cambot_channels::KeySealer;
use cambot_channels::web::tokens::signing_key_name;
use cambot_core::UserStore;
use cambot_protocol::TenantId;
use zeroize::Zeroize;
use zeroize::Zeroizing;

use super::Vault;
use super::VaultError;
use super::check_name;
use super::seal;
use super::seal::NONCE_LEN;
use super::seal::Purpose;

impl Vault {
    /// `plain` sealed for `tenant` and `name`: `nonce ‖ ciphertext`.
    pub async fn seal_key(
        &self,
        tenant: &TenantId,
        name: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        check_name(name)?;
        let dek = match self.stored_dek(tenant).await? {
            Some(dek) => dek,
            None => self.create_dek(tenant).await?,
        };
        let aad = seal::aad(Purpose::KeyMaterial, tenant.as_str(), name);
        let (mut out, ciphertext) = seal::seal(&dek, &aad, plain).ok_or(VaultError::Seal)?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// What [`Vault::seal_key`] sealed for the same tenant and name.
    pub async fn open_key(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let undecryptable = || VaultError::Undecryptable {
            tenant: tenant.clone(),
            name: name.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = seal::aad(Purpose::KeyMaterial, tenant.as_str(), name);
        if let Some(dek) = self.cached_dek(tenant)
            && let Some(plain) = seal::open(&dek, &aad, nonce, ciphertext)
        {
            return Ok(plain);
        }
        // Not cached, or the tenant was re-created with a new data key meanwhile.
        let dek = self.stored_dek(tenant).await?.ok_or_else(undecryptable)?;
        seal::open(&dek, &aad, nonce, ciphertext).ok_or_else(undecryptable)
    }
}

fn host_error(e: VaultError) -> HostError {
    HostError::Sealing(e.to_string())
}

impl KeySealer for Vault {
    fn seal<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        Box::pin(async move { self.seal_key(tenant, name, key).await.map_err(host_error) })
    }

    fn open<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, HostError>> {
        Box::pin(async move {
            self.open_key(tenant, name, sealed)
                .await
                .map_err(host_error)
        })
    }
}

/// Seals every web signing key still stored in plaintext (rows from before the vault), in one
/// transaction that leaves no copy of the plaintext in the database or its WAL. Tokens they
/// signed stay valid: the public keys and key ids do not change. Returns how many were sealed.
pub async fn seal_signing_keys(vault: &Vault, store: &dyn UserStore) -> Result<usize, VaultError> {
    let mut rows: Vec<_> = store
        .all_signing_keys()
        .await?
        .into_iter()
        .filter(|k| !k.sealed)
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sealed = Vec::with_capacity(rows.len());
    for row in &mut rows {
        let bytes = vault
            .seal_key(&row.tenant, &signing_key_name(&row.kid), &row.private_key)
            .await;
        row.private_key.zeroize();
        sealed.push((row.kid.clone(), bytes?));
    }
    let n = store.seal_signing_keys(sealed).await?;
    tracing::info!(
        keys = n,
        "sealed the web signing keys that were stored in plaintext"
    );
    Ok(n)
}

/// What [`check_signing_keys`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningKeyCheck {
    /// Sealed keys that open with the vault.
    pub sealed: usize,
    /// Keys still stored in plaintext.
    pub plaintext: usize,
}

/// Counts the plaintext web signing keys and opens every sealed one (with `vault`, when
/// there is one); the first that does not open is the error (named by tenant and key id).
pub async fn check_signing_keys(
    vault: Option<&Vault>,
    store: &dyn UserStore,
) -> Result<SigningKeyCheck, VaultError> {
    let mut found = SigningKeyCheck {
        sealed: 0,
        plaintext: 0,
    };
    for row in store.all_signing_keys().await? {
        if !row.sealed {
            found.plaintext += 1;
            continue;
        }
        let name = signing_key_name(&row.kid);
        match vault {
            Some(vault) => drop(vault.open_key(&row.tenant, &name, &row.private_key).await?),
            None => {
                return Err(VaultError::Undecryptable {
                    tenant: row.tenant,
                    name,
                });
            }
        }
        found.sealed += 1;
    }
    Ok(found)
}
