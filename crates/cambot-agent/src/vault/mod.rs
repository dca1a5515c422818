//! The per-tenant credential vault: secrets sealed with XChaCha20-Poly1305 under one data key
//! (DEK) per tenant, each DEK wrapped by the master key (KEK); cambot-core stores only the
//! sealed rows. Every ciphertext is bound to its tenant and name (associated data), so a row
//! copied to another tenant or name does not decrypt.
//!
//! Cache policy: plaintext is never cached; a value is decrypted for each use. Unwrapped DEKs
//! are cached (wiped on drop). Every lookup reads its row from the database, so a secret set by
//! another process (the admin CLI) is seen by the next lookup.

mod error;
mod gateway;
mod key_material;
mod lazy;
pub mod master_key;
mod rotate;
mod seal;

pub use key_material::SigningKeyCheck;
pub use key_material::check_signing_keys;
pub use key_material::seal_signing_keys;
pub use lazy::DaemonVault;
pub use rotate::Rotation;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use cambot_core::VaultDekRow;
use cambot_core::VaultSecretRow;
use cambot_core::VaultStore;
use cambot_gateway::FoundSecret;
use cambot_gateway::Secret;
use cambot_protocol::TenantId;
use zeroize::Zeroize;

pub use error::VaultError;
pub use master_key::KeyLocation;
pub use master_key::KeySource;
pub use master_key::MasterKey;
use seal::KeyBytes;
use seal::Purpose;

/// Longest secret name.
const MAX_NAME_LEN: usize = 64;

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: Option<i64>,
}

/// Whether `name` is a valid secret name: 1-64 characters from `A-Z a-z 0-9 . _ -`.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(name: &str) -> Result<(), VaultError> {
    if valid_secret_name(name) {
        Ok(())
    } else {
        Err(VaultError::InvalidName(name.to_owned()))
    }
}

/// The master key in use and the stored check it opens.
struct Master {
    key: MasterKey,
    check: Vec<u8>,
}

/// The vault. Cheap to share behind an `Arc`; every method is async and safe to call from
/// several tasks at once.
pub struct Vault {
    store: Arc<dyn VaultStore>,
    master: RwLock<Arc<Master>>,
    deks: Mutex<HashMap<TenantId, Arc<KeyBytes>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key", &self.master().key.location())
            .finish_non_exhaustive()
    }
}

/// Finds and loads the master key for the vault in `store` (see [`master_key`]). `Ok(None)`
/// when the vault was never used and there is no key yet, unless `create` (then the key file
/// is created at a writable location).
pub async fn load_key(
    store: &dyn VaultStore,
    location: KeyLocation,
    create: bool,
    data_dir: Option<&Path>,
) -> Result<Option<MasterKey>, VaultError> {
    let check = store.vault_check().await?;
    let data_dir = data_dir.map(Path::to_owned);
    tokio::task::spawn_blocking(move || {
        master_key::load(&location, check.as_deref(), create, data_dir.as_deref())
    })
    .await?
}

/// Opens the vault with the key the environment names ([`master_key::locate_from_env`]).
/// `Ok(None)` when the vault was never used and there is no key yet, unless `create`.
pub async fn open_configured(
    store: Arc<dyn VaultStore>,
    data_dir: &Path,
    create: bool,
) -> Result<Option<Vault>, VaultError> {
    open_at(store, master_key::locate_from_env()?, data_dir, create).await
}

/// Opens the vault with the key at `location` (as [`open_configured`] does).
pub async fn open_at(
    store: Arc<dyn VaultStore>,
    location: KeyLocation,
    data_dir: &Path,
    create: bool,
) -> Result<Option<Vault>, VaultError> {
    match load_key(store.as_ref(), location, create, Some(data_dir)).await? {
        Some(key) => Ok(Some(Vault::open(store, key).await?)),
        None => Ok(None),
    }
}

impl Vault {
    /// Opens the vault with `key`: refused when the key does not open the stored check; a
    /// vault never used gets the check of this key.
    pub async fn open(store: Arc<dyn VaultStore>, key: MasterKey) -> Result<Self, VaultError> {
        let wrong = || VaultError::WrongKey {
            path: key.location().path.clone(),
        };
        let check = match store.vault_check().await? {
            Some(check) => check,
            None => {
                let check = seal::make_check(key.bytes()).ok_or(VaultError::Seal)?;
                // Another process may have initialised it first: the stored check decides.
                store.init_vault_check(check).await?
            }
        };
        if !seal::opens_check(key.bytes(), &check) {
            return Err(wrong());
        }
        Ok(Self {
            store,
            master: RwLock::new(Arc::new(Master { key, check })),
            deks: Mutex::new(HashMap::new()),
        })
    }

    /// Where the master key in use came from.
    pub fn key_location(&self) -> KeyLocation {
        self.master().key.location().clone()
    }

    fn master(&self) -> Arc<Master> {
        Arc::clone(&self.master.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set_master(&self, master: Master) {
        *self.master.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(master);
    }

    fn cached_dek(&self, tenant: &TenantId) -> Option<Arc<KeyBytes>> {
        self.deks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
    }

    fn cache_dek(&self, tenant: &TenantId, dek: &Arc<KeyBytes>) {
        self.deks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), Arc::clone(dek));
    }

    /// Stores `value` as the tenant's secret `name` (replacing it; its creation time stays).
    pub async fn set(
        &self,
        tenant: &TenantId,
        name: &str,
        value: &Secret,
        expires_ms: Option<i64>,
    ) -> Result<(), VaultError> {
        check_name(name)?;
        if value.expose().is_empty() {
            return Err(VaultError::EmptyValue {
                tenant: tenant.clone(),
                name: name.to_owned(),
            });
        }
        // Read fresh, not from the cache: the tenant may have been purged and re-created by
        // another process, and a value sealed under its old key would be lost.
        let dek = match self.stored_dek(tenant).await? {
            Some(dek) => dek,
            None => self.create_dek(tenant).await?,
        };
        let aad = seal::aad(Purpose::Secret, tenant.as_str(), name);
        let (nonce, ciphertext) =
            seal::seal(&dek, &aad, value.expose().as_bytes()).ok_or(VaultError::Seal)?;
        let now = cambot_core::time::now_ms();
        self.store
            .put_vault_secret(VaultSecretRow {
                tenant: tenant.clone(),
                name: name.to_owned(),
                nonce,
                ciphertext,
                created_ms: now,
                updated_ms: now,
                expires_ms,
            })
            .await?;
        Ok(())
    }

    /// The tenant's secret `name`, decrypted for this one use; `None` when it has none.
    pub async fn get(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<FoundSecret>, VaultError> {
        check_name(name)?;
        let Some(row) = self.store.vault_secret(tenant, name).await? else {
            return Ok(None);
        };
        let value = self.open_row(&row).await?;
        Ok(Some(FoundSecret {
            value,
            expires_ms: row.expires_ms,
        }))
    }

    /// The tenant's secrets, by name: never their values.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(list_rows(self.store.as_ref(), tenant).await?)
    }

    /// Deletes the tenant's secret `name`. Returns whether it existed.
    pub async fn remove(&self, tenant: &TenantId, name: &str) -> Result<bool, VaultError> {
        check_name(name)?;
        Ok(self.store.delete_vault_secret(tenant, name).await?)
    }

    /// Every value the tenant has, decrypted (to redact them from upstream answers).
    pub async fn values(&self, tenant: &TenantId) -> Result<Vec<Secret>, VaultError> {
        let rows = self.store.vault_secrets(Some(tenant)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.open_row(row).await?);
        }
        Ok(out)
    }

    /// The tenant's secret `name` (as [`Vault::get`]) and every value it has (as
    /// [`Vault::values`]), from one read of its rows: what each model request needs.
    pub async fn get_with_values(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(Option<FoundSecret>, Vec<Secret>), VaultError> {
        check_name(name)?;
        let rows = self.store.vault_secrets(Some(tenant)).await?;
        let mut found = None;
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            let value = self.open_row(row).await?;
            if row.name == name {
                found = Some(FoundSecret {
                    value: value.clone(),
                    expires_ms: row.expires_ms,
                });
            }
            values.push(value);
        }
        Ok((found, values))
    }

    /// Decrypts every data key and every secret of every tenant; the number of secrets, or the
    /// first that fails (named by tenant and name).
    pub async fn verify(&self) -> Result<usize, VaultError> {
        let master = self.master();
        let mut deks: HashMap<TenantId, KeyBytes> = HashMap::new();
        for row in self.store.vault_deks().await? {
            let dek = unwrap_row(&master, &row)?;
            deks.insert(row.tenant, dek);
        }
        let rows = self.store.vault_secrets(None).await?;
        for row in &rows {
            let undecryptable = || VaultError::Undecryptable {
                tenant: row.tenant.clone(),
                name: row.name.clone(),
            };
            let dek = deks.get(&row.tenant).ok_or_else(undecryptable)?;
            let aad = seal::aad(Purpose::Secret, row.tenant.as_str(), &row.name);
            seal::open(dek, &aad, &row.nonce, &row.ciphertext).ok_or_else(undecryptable)?;
        }
        Ok(rows.len())
    }

    /// Decrypts a row into a value. A cached data key that fails is read again once (the
    /// tenant may have been re-created with a new key meanwhile).
    async fn open_row(&self, row: &VaultSecretRow) -> Result<Secret, VaultError> {
        let aad = seal::aad(Purpose::Secret, row.tenant.as_str(), &row.name);
        let undecryptable = || VaultError::Undecryptable {
            tenant: row.tenant.clone(),
            name: row.name.clone(),
        };
        let cached = self.cached_dek(&row.tenant);
        let opened = cached
            .as_ref()
            .and_then(|dek| seal::open(dek, &aad, &row.nonce, &row.ciphertext));
        let plain = match opened {
            Some(plain) => plain,
            None => {
                let dek = self
                    .stored_dek(&row.tenant)
                    .await?
                    .ok_or_else(undecryptable)?;
                seal::open(&dek, &aad, &row.nonce, &row.ciphertext).ok_or_else(undecryptable)?
            }
        };
        let bytes = plain.to_vec();
        drop(plain);
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Secret::new(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(VaultError::NotText {
                    tenant: row.tenant.clone(),
                    name: row.name.clone(),
                })
            }
        }
    }

    /// The tenant's data key as stored now (cached on the way); `None` when it has none.
    async fn stored_dek(&self, tenant: &TenantId) -> Result<Option<Arc<KeyBytes>>, VaultError> {
        let Some(row) = self.store.vault_dek(tenant).await? else {
            return Ok(None);
        };
        let dek = Arc::new(self.unwrap_dek(&row).await?);
        self.cache_dek(tenant, &dek);
        Ok(Some(dek))
    }

    /// Unwraps a data key; when the master key in use fails and another process rotated it
    /// meanwhile, loads the new one and tries again.
    async fn unwrap_dek(&self, row: &VaultDekRow) -> Result<KeyBytes, VaultError> {
        match unwrap_row(&self.master(), row) {
            Err(VaultError::DekUndecryptable { .. }) if self.reload_master().await? => {
                unwrap_row(&self.master(), row)
            }
            other => other,
        }
    }

    /// Creates the tenant's data key (another process may win the race: its key is used).
    async fn create_dek(&self, tenant: &TenantId) -> Result<Arc<KeyBytes>, VaultError> {
        for _ in 0..2 {
            let master = self.master();
            let dek = seal::random_key();
            let (nonce, wrapped) = seal::wrap_dek(master.key.bytes(), tenant.as_str(), &dek)
                .ok_or(VaultError::Seal)?;
            let row = VaultDekRow {
                tenant: tenant.clone(),
                nonce,
                wrapped,
                created_ms: cambot_core::time::now_ms(),
            };
            if let Some(stored) = self
                .store
                .insert_vault_dek(row, master.check.clone())
                .await?
            {
                let dek = Arc::new(unwrap_row(&master, &stored)?);
                self.cache_dek(tenant, &dek);
                return Ok(dek);
            }
            if !self.reload_master().await? {
                break;
            }
        }
        Err(VaultError::KeyRotatedMeanwhile)
    }

    /// Loads the master key again when the stored check changed (a rotation by another
    /// process). Returns whether the key in use changed.
    async fn reload_master(&self) -> Result<bool, VaultError> {
        let current = self.master();
        let Some(check) = self.store.vault_check().await? else {
            return Ok(false);
        };
        if check == current.check {
            return Ok(false);
        }
        let location = current.key.location().clone();
        let stored = check.clone();
        let key = tokio::task::spawn_blocking(move || {
            master_key::load(&location, Some(&stored), false, None)
        })
        .await??
        .ok_or(VaultError::KeyRotatedMeanwhile)?;
        tracing::info!(path = %key.location().path.display(), "reloaded the vault master key after a rotation by another process");
        self.set_master(Master { key, check });
        Ok(true)
    }
}

fn unwrap_row(master: &Master, row: &VaultDekRow) -> Result<KeyBytes, VaultError> {
    seal::unwrap_dek(
        master.key.bytes(),
        row.tenant.as_str(),
        &row.nonce,
        &row.wrapped,
    )
    .ok_or_else(|| VaultError::DekUndecryptable {
        tenant: row.tenant.clone(),
    })
}

/// A tenant's secrets as listed, straight from the store: names are plaintext, so listing
/// needs no key.
pub async fn list_rows(
    store: &dyn VaultStore,
    tenant: &TenantId,
) -> Result<Vec<SecretInfo>, cambot_core::StoreError> {
    Ok(store
        .vault_secrets(Some(tenant))
        .await?
        .into_iter()
        .map(|r| SecretInfo {
            name: r.name,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            expires_ms: r.expires_ms,
        })
        .collect())
}
