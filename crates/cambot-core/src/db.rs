//! Opening the database, connection settings and versioned migrations.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::OpenFlags;

use crate::error::Result;
use crate::error::StoreError;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One migration: applied in order, each in its own transaction, recorded in
/// `schema_migrations`. Never edit a released migration; add a new one.
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "web chat users, keys, refresh tokens, sessions",
        sql: include_str!("migrations/0002_web.sql"),
    },
    Migration {
        version: 3,
        name: "partial index of unfinished task firings",
        sql: include_str!("migrations/0003_task_runs_unfinished.sql"),
    },
    Migration {
        version: 4,
        name: "messages appended in insertion order, seq a column",
        sql: include_str!("migrations/0004_messages_append.sql"),
    },
];

/// The handle to cambot's SQLite database. Cheap to clone; all clones share the connections.
///
/// Writes on the hot paths go through one group-commit writer thread ([`crate::batch`]); reads
/// use a second connection, so they do not queue behind writes (WAL lets readers run beside the
/// writer). Several processes may open the same file (the daemon and the admin CLI): SQLite's
/// locks order their writes, and every read goes to the database, so each sees the others'
/// commits.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// In-memory databases share the writer (a second in-memory connection would be another
    /// database).
    reader: Option<Arc<Mutex<Connection>>>,
    writer: Arc<crate::batch::Writer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database file, migrates it to the current schema and
    /// imports what an older version's ingest journal left beside it
    /// ([`crate::legacy_journal`]).
    pub fn open(path: &Path) -> Result<Self> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        let mut store = Self::init(conn, Some(path))?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.set_prepared_statement_cache_capacity(64);
        store.reader = Some(Arc::new(Mutex::new(reader)));
        Ok(store)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    /// `file` is given for a file database (WAL mode).
    fn init(mut conn: Connection, file: Option<&Path>) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if file.is_some() {
            // WAL + NORMAL: a committed transaction survives a process crash (SIGKILL); only an
            // OS crash may lose the last transactions, never corrupt the file.
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode = %mode, "SQLite refused WAL mode; continuing");
            }
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        if let Some(path) = file {
            crate::legacy_journal::import(&mut conn, path)?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let writer = Arc::new(crate::batch::Writer::spawn(Arc::clone(&conn))?);
        Ok(Self {
            conn,
            reader: None,
            writer,
        })
    }

    /// Locks the writing connection for one short synchronous operation.
    pub(crate) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        lock(&self.conn)
    }

    pub(crate) fn writer(&self) -> &crate::batch::Writer {
        &self.writer
    }

    /// Locks the read connection (the writer for in-memory databases).
    pub(crate) fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        match &self.reader {
            Some(r) => lock(r),
            None => self.conn(),
        }
    }

    /// SQLite's `data_version` as this store's writing connection sees it: it changes only
    /// when another connection commits (the admin CLI in another process, a second `Store`),
    /// never for this store's own writes.
    pub fn data_version(&self) -> Result<i64> {
        let conn = self.conn()?;
        Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<u32> {
        let conn = self.conn()?;
        current_version(&conn)
    }

    /// Runs a closure inside one transaction (used where two writes must land together).
    pub(crate) fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// A connection's lock. A panic while it was held (a bug) poisons it; the connection itself is
/// still sound (SQLite rolls back an unfinished transaction at the next BEGIN), so the lock is
/// taken back and the event logged rather than failing every later call.
pub(crate) fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>> {
    Ok(conn.lock().unwrap_or_else(|poisoned| {
        tracing::error!("a database connection's lock was poisoned by a panic; recovering it");
        conn.clear_poison();
        poisoned.into_inner()
    }))
}

/// The newest schema version this build knows.
pub fn supported_schema_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn current_version(conn: &Connection) -> Result<u32> {
    let v: Option<u32> = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    Ok(v.unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL
        );",
    )?;
    let current = current_version(conn)?;
    let supported = supported_schema_version();
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        // Some rewrite a whole table (version 4 copies every message: ~20 s per million here),
        // so say so before, not only after.
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying database migration (a large database takes a while; stopping meanwhile rolls it back)"
        );
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.name, crate::time::now_rfc3339()],
            )?;
            tx.commit()
        };
        run(conn).map_err(|source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        })?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied database migration"
        );
    }
    Ok(())
}
