//! Opening the store off the async runtime: opening creates the data directory, migrates the
//! schema (a large database takes a while) and may import an old version's ingest journal.

use std::sync::Arc;

use cambot_core::SqliteStore;
use cambot_protocol::DataLayout;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] cambot_core::StoreError),
    #[error("opening the database stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Opens (creating, migrating) the database of `layout` on the blocking pool.
pub async fn open_store(layout: &DataLayout) -> Result<Arc<SqliteStore>, OpenStoreError> {
    let layout = layout.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(layout.root()).map_err(|source| OpenStoreError::DataDir {
            path: layout.root().to_owned(),
            source,
        })?;
        Ok(Arc::new(SqliteStore::open(&layout.database())?))
    })
    .await?
}
