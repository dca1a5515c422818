//! Why a vault operation failed. Messages name the tenant, the secret and the file involved,
//! never a value or a key.

use std::path::PathBuf;

use cambot_protocol::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault holds secrets but no master key was found; looked at: {looked}")]
    NoKey { looked: String },
    #[error(
        "master key from {path} does not open this vault (it is not the key the vault was \
         sealed with: restore the right key file, or point CAMBOT_MASTER_KEY_FILE at it)"
    )]
    WrongKey { path: PathBuf },
    #[error(
        "master key file {path} has mode {mode:04o}: group and others must have no access \
         (chmod 600 {path})"
    )]
    LooseMode { path: PathBuf, mode: u32 },
    #[error("master key file {path} must hold 64 hex characters or 32 raw bytes")]
    KeyFormat { path: PathBuf },
    #[error("master key file {path}: {what}: {source}")]
    KeyFile {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no master key location: CAMBOT_MASTER_KEY_FILE is not set and HOME is unknown; set \
         CAMBOT_MASTER_KEY_FILE"
    )]
    NoHome,
    #[error(
        "the master key comes from the systemd credential {path}, which is read-only: rotate it \
         with systemd-creds and run `cambot secrets rotate-master` with CAMBOT_MASTER_KEY_FILE \
         naming a writable copy"
    )]
    ReadOnlySource { path: PathBuf },
    #[error(
        "secret {name} of tenant {tenant} does not decrypt: it was not sealed for this tenant \
         and name, or its row was altered"
    )]
    Undecryptable { tenant: TenantId, name: String },
    #[error(
        "the data key of tenant {tenant} does not decrypt with the master key: its row was \
         altered or copied from another tenant"
    )]
    DekUndecryptable { tenant: TenantId },
    #[error("secret {name} of tenant {tenant} is not UTF-8 text")]
    NotText { tenant: TenantId, name: String },
    #[error("invalid secret name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    #[error("secret {name} of tenant {tenant}: an empty value is refused")]
    EmptyValue { tenant: TenantId, name: String },
    #[error(
        "the master key was rotated by another process while this one ran, and the new key \
         could not be loaded: restart this process"
    )]
    KeyRotatedMeanwhile,
    #[error("sealing failed (value too long?)")]
    Seal,
    #[error("vault storage: {0}")]
    Store(#[from] cambot_core::StoreError),
    #[error("a vault task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}
