//! Opening the database, connection settings and versioned migrations.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::OpenFlags;

use crate::checkpoint::BACKSTOP_PAGES;
use crate::checkpoint::Checkpointer;
use crate::error::Result;
use crate::error::StoreError;
use crate::ingest::Ingest;
use crate::journal_lock::DaemonRows;
use crate::journal_lock::SharedMessageGuard;
use crate::journal_lock::SharedMessageLock;
use crate::run_state::RunState;

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

/// The handle to cambot's SQLite database. Cheap to clone; all clones share one connection.
///
/// Calls are synchronous and short (indexed single-row statements); async callers may call them
/// directly. The connection lives behind a `std` mutex because no guard is held across `.await`.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// A second connection for reads, so reads do not queue behind writes (WAL lets readers
    /// run beside the writer). In-memory databases share the writer (a second in-memory
    /// connection would be a different database).
    reader: Option<Arc<Mutex<Connection>>>,
    writer: Arc<crate::batch::Writer>,
    /// Checkpoints the WAL off the write path (file databases only).
    checkpointer: Option<Arc<Checkpointer>>,
    /// For a file database: the shared side of the ingest journal's lock, which a store that
    /// does not own the journal holds while it writes messages.
    message_lock: Option<Arc<SharedMessageLock>>,
    /// The ingest journal, in the store that owns it ([`Store::open_owning_messages`]).
    pub(crate) ingest: Option<Arc<Ingest>>,
    /// Cursors and sessions in memory; answered from only in the store that owns messages.
    pub(crate) run_state: Arc<RunState>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database file and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut store = Self::init(conn, Some(path))?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        reader.busy_timeout(Duration::from_secs(5))?;
        // No mmap: the file grows at every checkpoint and SQLite then re-maps it at the next read
        // transaction (munmap + TLB shootdowns on every core); plain reads measured 10-15 %
        // faster in the router bench.
        reader.execute_batch("PRAGMA cache_size = -32768;")?;
        reader.set_prepared_statement_cache_capacity(64);
        store.reader = Some(Arc::new(Mutex::new(reader)));
        store.message_lock = Some(Arc::new(SharedMessageLock::new(path)));
        Ok(store)
    }

    /// [`Store::open`] for the daemon: this store becomes the only writer of messages and
    /// acknowledges each once it is in the ingest journal, before SQLite has it (see
    /// `docs/ingest-journal.md`). What a previous owner left in the journal is replayed first.
    /// Fails when another process owns the journal; waits a few seconds for a previous owner in
    /// this process to finish.
    pub fn open_owning_messages(path: &Path) -> Result<Self> {
        let mut store = Self::open(path)?;
        let (ingest, durability) = Ingest::start(path, Arc::clone(&store.writer))?;
        crate::backstop::install(&*store.conn()?, &durability, BACKSTOP_PAGES);
        if let Some(c) = &store.checkpointer {
            c.watch_journal(durability);
        }
        // No message waits for the writer any more: the ingest path goes first.
        store.writer.run_in_background();
        store.ingest = Some(Arc::new(ingest));
        // Nothing has written through this store yet, and other stores may no longer write
        // cursors or sessions (the journal's lock is ours): the rows are final until we move
        // them.
        store.run_state.load(&*store.reader()?)?;
        Ok(store)
    }

    /// Stops this store's message intake, in the store that owns the ingest journal (a no-op
    /// otherwise): later stores of messages fail, what was acknowledged is moved into SQLite, and
    /// then the journal's lock is released for the next owner (a restarted daemon). Reads go on.
    pub fn close_message_intake(&self) {
        if let Some(ingest) = &self.ingest {
            ingest.close();
        }
    }

    /// Messages acknowledged but not yet in SQLite (0 without an ingest journal).
    pub fn unmoved_messages(&self) -> usize {
        self.ingest.as_ref().map_or(0, |i| i.overlay().len())
    }

    /// For a store that does not own the ingest journal: the journal's shared lock, held while
    /// it writes rows only a running daemon may write (an error when a daemon owns the
    /// journal). `None` for the owning store and for in-memory databases.
    pub(crate) fn daemon_rows_lock(&self, rows: DaemonRows) -> Result<Option<SharedMessageGuard>> {
        if self.ingest.is_some() {
            return Ok(None);
        }
        self.message_lock
            .as_ref()
            .map(|lock| lock.acquire(rows))
            .transpose()
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    /// `file` is given for a file database (WAL mode, checkpointed on its own thread).
    fn init(mut conn: Connection, file: Option<&Path>) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(5))?;
        if file.is_some() {
            // WAL + NORMAL: a committed transaction survives a process crash (SIGKILL); only an
            // OS crash may lose the last transactions, never corrupt the file.
            // 2 KiB pages for a new database (an existing one keeps its size). A stored message
            // dirties about four pages on random b-tree leaves (two indexes, the chat's cursor),
            // and every dirty page is written whole to the WAL and again at the checkpoint: at
            // 4 KiB the router bench wrote ~15 KB per message and waited on the disk; at 2 KiB it
            // writes ~9 KB and stores 10-15 % more messages per second. Messages longer than ~2 KB
            // spill into overflow pages, which only costs a page read more.
            conn.execute_batch("PRAGMA page_size = 2048;")?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode = %mode, "SQLite refused WAL mode; continuing");
            }
        }
        // A small page cache for the writing connection (4 MiB): when a b-tree split reorders
        // its new pages, SQLite parks one under a temporary page number past the end of the
        // file, and the commit then walks the whole cache's hash table to drop pages past the
        // end. With 32 MiB that walk was 10 % of the router bench's CPU when every message was
        // its own write; at 4 MiB and the mover's few hundred commits a second it is under 1 %.
        // Below that, a mover transaction (hundreds of messages over as many index leaves)
        // outgrew the cache: 1 MiB spilled dirty pages into the WAL mid-transaction, 40,000
        // spills in the bench's paced phase, and the start burst's p99 was under 5 ms in 1 of 4
        // runs against 4 of 4 at 4 MiB. What the writer reads comes from the OS page cache. (A
        // reader's cache is emptied whenever another connection has committed, so its size
        // barely matters under writes.)
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -4096;",
        )?;
        // The checkpoint thread keeps the WAL small; SQLite's own checkpoint (inside a commit,
        // stalling every write behind it) is only the backstop.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let checkpointer = file
            .map(|path| Checkpointer::spawn(path).map(Arc::new))
            .transpose()?;
        let run_state = Arc::new(RunState::default());
        let writer = Arc::new(crate::batch::Writer::spawn(
            Arc::clone(&conn),
            checkpointer.clone(),
            Arc::clone(&run_state),
        )?);
        Ok(Self {
            conn,
            reader: None,
            writer,
            checkpointer,
            message_lock: None,
            ingest: None,
            run_state,
        })
    }

    /// The ingest path, in the store that owns the journal.
    #[cfg(test)]
    pub(crate) fn ingest(&self) -> Option<&crate::ingest::Ingest> {
        self.ingest.as_deref()
    }

    /// The ingest journal's durability state, in the store that owns it.
    #[cfg(test)]
    pub(crate) fn journal_durability(&self) -> Option<Arc<crate::ingest::Durability>> {
        self.checkpointer.as_ref().and_then(|c| c.journal())
    }

    /// Locks the connection for one short synchronous operation (which may write: the WAL
    /// checkpoint thread is told).
    pub(crate) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        if let Some(c) = &self.checkpointer {
            c.poke();
        }
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    pub(crate) fn writer(&self) -> &crate::batch::Writer {
        &self.writer
    }

    /// Locks the read connection (the writer for in-memory databases).
    pub(crate) fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        match &self.reader {
            Some(r) => r.lock().map_err(|_| StoreError::Poisoned),
            None => self.conn(),
        }
    }

    /// SQLite's `data_version` as this store's writing connection sees it: it changes only
    /// when another connection commits (the admin CLI in another process, a second `Store`),
    /// never for this store's own writes. (The read connection's changes with every write of
    /// ours, which made the daemon re-read every registration once a second under load.)
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
