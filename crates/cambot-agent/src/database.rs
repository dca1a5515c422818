//! Opening the store off the async runtime: opening creates (or tightens) the data directory
//! and the database files (see [`crate::at_rest`]), migrates the schema (a large database takes
//! a while) and may import an old version's ingest journal.

use std::sync::Arc;

use cambot_core::SqliteStore;
use cambot_protocol::DataLayout;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(transparent)]
    DataDir(#[from] crate::at_rest::AtRestError),
    #[error(transparent)]
    Store(#[from] cambot_core::StoreError),
    #[error("opening the database stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Opens (creating, migrating) the database of `layout` on the blocking pool.
pub async fn open_store(layout: &DataLayout) -> Result<Arc<SqliteStore>, OpenStoreError> {
    let layout = layout.clone();
    tokio::task::spawn_blocking(move || {
        crate::at_rest::secure_data_dir(&layout)?;
        Ok(Arc::new(SqliteStore::open(&layout.database())?))
    })
    .await?
}
