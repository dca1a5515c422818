//! The credential vault's storage: sealed rows only. cambot-agent's vault seals and opens them;
//! nothing here ever sees a secret value or a key in the clear. Names stay plaintext because
//! lookups need them.

use cambot_protocol::TenantId;

use crate::store::StoreFuture;

/// A tenant's data key, wrapped (sealed) by the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultDekRow {
    pub tenant: TenantId,
    pub nonce: Vec<u8>,
    pub wrapped: Vec<u8>,
    pub created_ms: i64,
}

/// One sealed secret of a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultSecretRow {
    pub tenant: TenantId,
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the value stops being valid (OAuth access tokens), ms since the epoch.
    pub expires_ms: Option<i64>,
}

// Sealed bytes are not secret, but printing them helps nobody and invites copying them around.
impl std::fmt::Debug for VaultDekRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDekRow")
            .field("tenant", &self.tenant)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for VaultSecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSecretRow")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("created_ms", &self.created_ms)
            .field("updated_ms", &self.updated_ms)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// What a master key replacement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultKeyChange {
    /// Every data key and the check were replaced, in one transaction.
    Replaced,
    /// Nothing was written: the check or the set of data keys changed since they were read
    /// (another process rotated, or added a tenant's first key); read again and retry.
    Changed,
}

/// The vault's rows. Writes go through the store's writing connection; a commit of another
/// process (the admin CLI) is seen by the next read.
pub trait VaultStore: Send + Sync {
    /// The master key check (nonce ‖ ciphertext), `None` for a vault never used.
    fn vault_check(&self) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// Stores the check of a new vault unless one exists; returns the stored one (another
    /// process may have won the race).
    fn init_vault_check(&self, check: Vec<u8>) -> StoreFuture<'_, Vec<u8>>;

    /// A tenant's wrapped data key.
    fn vault_dek<'a>(&'a self, tenant: &'a TenantId) -> StoreFuture<'a, Option<VaultDekRow>>;

    /// Every tenant's wrapped data key, by tenant.
    fn vault_deks(&self) -> StoreFuture<'_, Vec<VaultDekRow>>;

    /// Adds a tenant's data key unless it has one, only while the master key check is still
    /// `check` (a key wrapped by a master key a rotation just replaced would be unreadable).
    /// Returns the tenant's stored key, `None` when the check changed.
    fn insert_vault_dek(
        &self,
        row: VaultDekRow,
        check: Vec<u8>,
    ) -> StoreFuture<'_, Option<VaultDekRow>>;

    /// One sealed secret.
    fn vault_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<VaultSecretRow>>;

    /// One tenant's sealed secrets, or every tenant's, by tenant and name.
    fn vault_secrets<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<VaultSecretRow>>;

    /// Stores a sealed secret; replacing one keeps its `created_ms`.
    fn put_vault_secret(&self, row: VaultSecretRow) -> StoreFuture<'_, ()>;

    /// Deletes a secret. Returns whether it existed.
    fn delete_vault_secret<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Master key rotation: replaces every wrapped data key and the check in ONE immediate
    /// transaction, provided the check is still `old_check` and `deks` names exactly the
    /// tenants that have a key. A crash leaves either the old state whole or the new one.
    fn replace_vault_keys(
        &self,
        old_check: Vec<u8>,
        new_check: Vec<u8>,
        deks: Vec<VaultDekRow>,
    ) -> StoreFuture<'_, VaultKeyChange>;
}
