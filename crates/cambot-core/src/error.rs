//! The store's error type.

use std::path::PathBuf;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database schema version {found} is newer than this cambot understands ({supported}); upgrade cambot"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt row in {table}: {reason}")]
    CorruptRow { table: &'static str, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("committing a batch of writes failed: {0}")]
    BatchCommit(String),
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
}
