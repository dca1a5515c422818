//! The SQLite store: one database file in WAL mode, a read connection beside the writing one,
//! and one group-commit writer thread for the hot writes ([`writer`]).
//!
//! Every method of the [`crate::Store`] traits runs its SQL inside a closure handed to
//! [`SqliteStore::read`], [`SqliteStore::write`] or the writer thread, never on the caller's
//! runtime thread: the connections are not reachable any other way.

// The one place allowed to open SQLite connections (see `clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod groups;
mod legacy_journal;
mod messages;
mod mount_roots;
mod tasks;
mod tenants;
mod users;
mod vault;
mod workflows;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::OpenFlags;
use rusqlite::OptionalExtension;

use crate::error::Result;
use crate::error::StoreError;
use crate::store::Store;
use crate::store::StoreFuture;

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
    Migration {
        version: 5,
        name: "refresh token families remember their start",
        sql: include_str!("migrations/0005_refresh_family_start.sql"),
    },
    Migration {
        version: 6,
        name: "tenants get a name and a state",
        sql: include_str!("migrations/0006_tenant_admin.sql"),
    },
    Migration {
        version: 7,
        name: "tenant mount roots",
        sql: include_str!("migrations/0007_tenant_mount_roots.sql"),
    },
    Migration {
        version: 8,
        name: "credential vault",
        sql: include_str!("migrations/0008_vault.sql"),
    },
    Migration {
        version: 9,
        name: "tenants may choose their model provider",
        sql: include_str!("migrations/0009_tenant_provider.sql"),
    },
    Migration {
        version: 10,
        name: "web signing keys sealed by the vault",
        sql: include_str!("migrations/0010_sealed_signing_keys.sql"),
    },
    Migration {
        version: 12,
        name: "workflow definitions, runs and steps; outbox idempotency keys",
        sql: include_str!("migrations/0012_workflows.sql"),
    },
];

type Shared = Arc<Mutex<Connection>>;

/// The SQLite implementation of the [`crate::Store`] traits. Cheap to clone; clones share the
/// connections and the writer thread.
///
/// Several processes may open the same file (the daemon and the admin CLI): SQLite's locks
/// order their writes, and every read goes to the database, so each sees the others' commits.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Shared,
    /// In-memory databases read through the writing connection (a second in-memory connection
    /// would be another database).
    reader: Option<Shared>,
    writer: Arc<writer::Writer>,
    /// Bumped by every user change made through this store (see `UserStore::user_changes`).
    user_changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, migrates it to the current schema and
    /// imports what an older version's ingest journal left beside it (see the private
    /// `legacy_journal` module).
    /// Blocking: call it off the async runtime (the binary does so at start).
    pub fn open(path: &Path) -> Result<Self> {
        let open_error = |source: rusqlite::Error| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        };
        create_private(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
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
            legacy_journal::import(&mut conn, path)?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let writer = Arc::new(writer::Writer::spawn(Arc::clone(&conn))?);
        Ok(Self {
            conn,
            reader: None,
            writer,
            user_changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Runs `f` with the read connection on the blocking pool.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let conn = Arc::clone(self.reader.as_ref().unwrap_or(&self.conn));
        Box::pin(blocking(move || f(&lock(&conn))))
    }

    /// Runs `f` with the writing connection on the blocking pool (writes that are not on a hot
    /// path, so they need no group commit).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let conn = Arc::clone(&self.conn);
        Box::pin(blocking(move || f(&lock(&conn))))
    }

    /// Runs `f` in one transaction on the writing connection, on the blocking pool.
    fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let conn = Arc::clone(&self.conn);
        Box::pin(blocking(move || {
            let mut conn = lock(&conn);
            // IMMEDIATE: take the write lock up front, so a transaction that reads then writes
            // waits for another process's writer instead of failing with SQLITE_BUSY.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        }))
    }
}

impl Store for SqliteStore {
    fn data_version(&self) -> StoreFuture<'_, i64> {
        // The writing connection's: it changes only when another connection commits, never
        // for this store's own writes.
        self.write(|conn| Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?))
    }

    fn schema_version(&self) -> StoreFuture<'_, u32> {
        self.read(current_version)
    }
}

/// Creates a missing database file 0600 before SQLite opens it: SQLite would create it with
/// the umask's mode, and gives its `-wal` and `-shm` files the database file's mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::Blocking)?
}

/// A connection's lock. A panic while it was held (a bug) poisons it; the connection itself is
/// still sound (SQLite rolls back an unfinished transaction), so the lock is taken back and the
/// event logged rather than failing every later call.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| {
        tracing::error!("a database connection's lock was poisoned by a panic; recovering it");
        conn.clear_poison();
        poisoned.into_inner()
    })
}

/// Builds a corrupt-row error for a stored id that no longer validates.
fn corrupt(table: &'static str) -> impl Fn(cambot_protocol::IdError) -> StoreError {
    move |e| StoreError::CorruptRow {
        table,
        row: None,
        source: Box::new(e),
    }
}

/// Every row of `sql`, each read with `build`, which may fail on a stored value that no longer
/// validates (that row then fails the read).
pub(super) fn query<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    build: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T>>,
) -> Result<Vec<T>> {
    conn.prepare_cached(sql)?
        .query_map(params, build)?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .collect()
}

pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    build: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T>>,
) -> Result<Option<T>> {
    conn.prepare_cached(sql)?
        .query_row(params, build)
        .optional()?
        .transpose()
}

/// A `usize` limit as SQLite's integer.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
    // Every migration not yet recorded, not only those above the newest: numbers are handed
    // out ahead of merging, so a database may hold 9 before 8 exists.
    let applied: std::collections::BTreeSet<u32> = conn
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
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
            source: Box::new(source),
        })?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied database migration"
        );
    }
    Ok(())
}
