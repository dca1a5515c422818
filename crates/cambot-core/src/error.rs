//! The store's error type. It names no backend type: a database error is carried as its
//! source, so callers (and a PostgreSQL store later) share one enum. Messages include their
//! cause, because most callers log only the top-level message.

use std::path::PathBuf;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A database error of whichever backend, kept as the error's source.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: BackendError,
    },
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: BackendError,
    },
    #[error(
        "database schema version {found} is newer than this cambot understands ({supported}); upgrade cambot"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("database error: {0}")]
    Database(#[source] BackendError),
    /// A stored value that no longer parses; `row` names it where the cause alone would not.
    #[error("corrupt row in {table}: {}{source}", row_prefix(.row.as_deref()))]
    CorruptRow {
        table: &'static str,
        row: Option<String>,
        #[source]
        source: BackendError,
    },
    #[error("{0}")]
    Invalid(String),
    /// A group's container config that cannot be encoded for storage.
    #[error("container config: {0}")]
    ContainerConfig(#[source] BackendError),
    #[error("committing a batch of writes failed: {0}")]
    BatchCommit(#[source] std::sync::Arc<StoreError>),
    #[error("importing the old ingest journal: {what} {path}: {source}")]
    LegacyJournal {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an ingest journal this cambot can read; move it away to start without it \
         (it may hold messages an older cambot acknowledged)"
    )]
    UnknownJournal { path: PathBuf },
    #[error("cannot start the database writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error("the database writer thread is gone")]
    WriterGone,
    #[error("a database task failed: {0}")]
    Blocking(#[source] tokio::task::JoinError),
}

/// `row: ` before a corrupt row's cause, or nothing when the cause names the value itself.
fn row_prefix(row: Option<&str>) -> String {
    row.map(|r| format!("{r}: ")).unwrap_or_default()
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(Box::new(e))
    }
}
