//! Master key rotation, crash-safe at every point:
//! 1. the new key goes to `<keyfile>.next` (0600, fsync, rename from a temporary file);
//! 2. one transaction re-wraps every tenant's data key and replaces the check;
//! 3. `.next` is renamed over the key file.
//!
//! Killed before 2 commits, the old key opens the vault and the loader removes `.next`; killed
//! after, `.next` opens it and the loader finishes step 3. No secret is re-encrypted.

use cambot_core::VaultDekRow;
use cambot_core::VaultKeyChange;

use super::Master;
use super::MasterKey;
use super::Vault;
use super::VaultError;
use super::master_key;
use super::seal;
use super::unwrap_row;

/// Attempts when another process changes the vault's keys during a rotation.
const ATTEMPTS: usize = 3;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Data keys re-wrapped (one per tenant with secrets).
    pub tenants: usize,
}

impl Vault {
    /// Replaces the master key: every data key is re-wrapped under a new random key, which
    /// then replaces the key file. Refused for a read-only source (a systemd credential).
    pub async fn rotate_master(&self) -> Result<Rotation, VaultError> {
        let old = self.master();
        let location = old.key.location().clone();
        if !location.writable() {
            return Err(VaultError::ReadOnlySource {
                path: location.path,
            });
        }
        let new_key = seal::random_key();
        let (next, key) = (location.next_path(), new_key.clone());
        tokio::task::spawn_blocking(move || master_key::write_key_file(&next, &key)).await??;
        let new_check = seal::make_check(&new_key).ok_or(VaultError::Seal)?;
        let mut replaced = None;
        for _ in 0..ATTEMPTS {
            let master = self.master();
            let rows = self.store.vault_deks().await?;
            let mut rewrapped = Vec::with_capacity(rows.len());
            for row in rows {
                let dek = unwrap_row(&master, &row)?;
                let (nonce, wrapped) =
                    seal::wrap_dek(&new_key, row.tenant.as_str(), &dek).ok_or(VaultError::Seal)?;
                rewrapped.push(VaultDekRow {
                    nonce,
                    wrapped,
                    ..row
                });
            }
            let tenants = rewrapped.len();
            let outcome = self
                .store
                .replace_vault_keys(master.check.clone(), new_check.clone(), rewrapped)
                .await?;
            if outcome == VaultKeyChange::Replaced {
                replaced = Some(tenants);
                break;
            }
            // Another process added a tenant's key or rotated: read again (a rotation by
            // another process brings a new key, reloaded here).
            self.reload_master().await?;
        }
        let Some(tenants) = replaced else {
            return Err(VaultError::KeyRotatedMeanwhile);
        };
        let promote = location.clone();
        tokio::task::spawn_blocking(move || master_key::promote_next(&promote)).await??;
        tracing::info!(path = %location.path.display(), tenants, "rotated the vault master key");
        self.set_master(Master {
            key: MasterKey::new(new_key, location),
            check: new_check,
        });
        Ok(Rotation { tenants })
    }
}
