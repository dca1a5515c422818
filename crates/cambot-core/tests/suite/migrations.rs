//! Opening, reopening and version checks.
#![allow(clippy::disallowed_methods)] // Opens the database file directly, as another process would.

use cambot_core::StoreError;
use cambot_core::supported_schema_version;

use super::*;

#[tokio::test]
async fn reopening_a_file_keeps_data_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.store_message(msg("g@g.us", "m1", "persisted", "2024-01-01T00:00:01.000Z"))
            .await
            .unwrap();
        assert_eq!(
            s.schema_version().await.unwrap(),
            supported_schema_version()
        );
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.messages_since(&tenant(), &jid("g@g.us"), 0, 10)
            .await
            .unwrap()[0]
            .content,
        "persisted"
    );
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade cambot"));
}

#[test]
fn garbage_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    std::fs::write(&path, b"this is not a sqlite database, definitely not").unwrap();
    assert!(SqliteStore::open(&path).is_err());
}

/// SQLite's own checkpoints keep the WAL bounded under sustained writes while a reader
/// connection is in use (a reader that never let go of its snapshot would let it grow forever).
#[tokio::test]
async fn the_wal_stays_bounded_under_sustained_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let s = SqliteStore::open(&path).unwrap();
    let body = "x".repeat(500);
    for i in 0..6_000 {
        s.store_message(msg(
            "g@g.us",
            &format!("m{i}"),
            &body,
            "2024-01-01T00:00:01.000Z",
        ))
        .await
        .unwrap();
        if i % 100 == 0 {
            s.pending_messages(&tenant(), &jid("g@g.us"), 10)
                .await
                .unwrap();
        }
    }
    let wal = std::fs::metadata(dir.path().join("cambot.db-wal"))
        .unwrap()
        .len();
    // SQLite checkpoints at 1,000 pages (4 MiB); 3 MB of messages went through it.
    assert!(wal < 8 << 20, "WAL grew to {wal} bytes");
    drop(s);
    let copy = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = copy
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6_000);
}

/// A database of schema 3 (seq as the rowid, counted by AUTOINCREMENT): after the upgrade every
/// message keeps its seq, new ones count on above the largest seq ever handed out (also one
/// whose message was deleted), and the table is appended to in insertion order.
#[tokio::test]
async fn messages_keep_their_seqs_across_the_upgrade_to_an_appended_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                             applied_at TEXT NOT NULL);",
        )
        .unwrap();
        for (version, sql) in [
            (
                1,
                include_str!("../../src/sqlite/migrations/0001_initial.sql"),
            ),
            (2, include_str!("../../src/sqlite/migrations/0002_web.sql")),
            (
                3,
                include_str!("../../src/sqlite/migrations/0003_task_runs_unfinished.sql"),
            ),
        ] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, 'old', 'x')",
                [version],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO chats (tenant, jid, name) VALUES ('default', 'a@g.us', 'a'),
                                                          ('default', 'b@g.us', 'b');
             INSERT INTO messages (tenant, chat_jid, id, sender, sender_name, content, timestamp)
                 VALUES ('default', 'a@g.us', 'a1', 's', 'S', 'one', '2024-01-01T00:00:01.000Z'),
                        ('default', 'b@g.us', 'b1', 's', 'S', 'two', '2024-01-01T00:00:02.000Z'),
                        ('default', 'a@g.us', 'a2', 's', 'S', 'three', '2024-01-01T00:00:03.000Z'),
                        ('default', 'a@g.us', 'a3', 's', 'S', 'gone', '2024-01-01T00:00:04.000Z');
             DELETE FROM messages WHERE id = 'a3';",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.schema_version().await.unwrap(),
        supported_schema_version()
    );
    let read = |chat: &'static str| {
        let s = &s;
        async move {
            s.messages_since(&tenant(), &jid(chat), 0, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.seq, m.content))
                .collect::<Vec<(i64, String)>>()
        }
    };
    assert_eq!(
        read("a@g.us").await,
        [(1, "one".into()), (3, "three".into())]
    );
    assert_eq!(read("b@g.us").await, [(2, "two".into())]);
    let next = stored_seq(&s, msg("b@g.us", "b2", "four", "2024-01-01T00:00:05.000Z")).await;
    assert_eq!(next, 5, "seq 4 was handed out before the upgrade");
    let repeat = stored_seq(
        &s,
        msg("a@g.us", "a1", "one, edited", "2024-01-01T00:00:01.000Z"),
    )
    .await;
    assert_eq!(repeat, 1, "a repeat keeps its seq");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let in_table_order: Vec<i64> = conn
        .prepare("SELECT seq FROM messages ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(in_table_order, [1, 2, 3, 5]);
}

/// Migration numbers are handed out before the branches merge: a database that already holds a
/// higher version still gets a lower one it lacks.
#[tokio::test]
async fn a_missing_lower_migration_is_applied_after_a_higher_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        // As if migration 7 had arrived after 9 was applied.
        conn.execute_batch(
            "DROP TABLE tenant_mount_roots; DELETE FROM schema_migrations WHERE version = 7;",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'tenant_mount_roots'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
    assert_eq!(
        s.schema_version().await.unwrap(),
        supported_schema_version()
    );
}

/// The database is created 0600 before SQLite opens it, and SQLite gives its WAL and
/// shared-memory files the database file's mode (checked with a 0640 file too, so the test
/// shows the inheritance rather than the umask).
#[tokio::test]
async fn the_database_and_its_wal_and_shm_take_the_private_mode() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let s = SqliteStore::open(&path).unwrap();
    s.store_message(msg("g@g.us", "m1", "x", "2024-01-01T00:00:01.000Z"))
        .await
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("cambot.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(s);

    let other = dir.path().join("other.db");
    std::fs::write(&other, b"").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o640)).unwrap();
    let s = SqliteStore::open(&other).unwrap();
    s.store_message(msg("g@g.us", "m1", "x", "2024-01-01T00:00:01.000Z"))
        .await
        .unwrap();
    for suffix in ["-wal", "-shm"] {
        let p = dir.path().join(format!("other.db{suffix}"));
        assert_eq!(mode(&p), 0o640, "{}", p.display());
    }
}
