//! Opening, reopening and version checks.

use cambot_core::Store;
use cambot_core::StoreError;
use cambot_core::supported_schema_version;

use super::*;

#[test]
fn reopening_a_file_keeps_data_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    {
        let s = Store::open(&path).unwrap();
        s.store_message(&msg(
            "g@g.us",
            "m1",
            "persisted",
            "2024-01-01T00:00:01.000Z",
        ))
        .unwrap();
        assert_eq!(s.schema_version().unwrap(), supported_schema_version());
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.messages_since(&tenant(), &jid("g@g.us"), 0, 10).unwrap()[0].content,
        "persisted"
    );
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
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
    assert!(Store::open(&path).is_err());
}

/// Writes reach the main database file through the background checkpoint, without waiting for
/// SQLite's in-commit checkpoint (which would stall the writer) or for the store to close.
#[test]
fn writes_are_checkpointed_into_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    let s = Store::open(&path).unwrap();
    for i in 0..20 {
        s.store_message(&msg(
            "g@g.us",
            &format!("m{i}"),
            "checkpointed",
            "2024-01-01T00:00:01.000Z",
        ))
        .unwrap();
    }
    // Only checkpointed pages are in the main file: a copy of it without the WAL shows them.
    let copy = dir.path().join("copy.db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows_in_main_file = loop {
        std::fs::copy(&path, &copy).unwrap();
        let n: i64 = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap_or(0);
        if n == 20 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(rows_in_main_file, 20, "the WAL was not checkpointed");
    drop(s);
}

#[test]
fn a_new_database_file_uses_2_kib_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cambot.db");
    drop(cambot_core::Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(size, 2048);
}
