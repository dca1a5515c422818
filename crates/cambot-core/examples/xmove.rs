#![allow(clippy::unwrap_used, clippy::print_stdout)]
use rusqlite::{Connection, params};
use std::time::Instant;

fn run(label: &str, schema: &str, sql: &str, fk: bool, per_tx: usize) {
    let dir = std::env::temp_dir().join(format!("xmove-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conn = Connection::open(dir.join("db")).unwrap();
    conn.execute_batch("PRAGMA page_size = 2048;").unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch(&format!("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = {}; PRAGMA cache_size = {}; PRAGMA wal_autocheckpoint = 4000;", if fk {"ON"} else {"OFF"}, std::env::var("XCACHE").unwrap_or("-4096".into()))).unwrap();
    conn.execute_batch(schema).unwrap();
    for g in 0..1000 {
        conn.execute(
            "INSERT INTO chats (tenant, jid) VALUES ('default', ?1)",
            [format!("fake:g{g}")],
        )
        .unwrap();
    }
    let total = 200_000usize;
    let t = Instant::now();
    let mut n = 0;
    while n < total {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..per_tx {
            let g = n % 1000;
            let id = format!("n{n}");
            conn.prepare_cached(sql)
                .unwrap()
                .execute(params![
                    n as i64 + 1,
                    "default",
                    format!("fake:g{g}"),
                    id,
                    "u",
                    "u",
                    id,
                    "2026-12-02T02:00:00.000Z",
                    false,
                    false
                ])
                .unwrap();
            n += 1;
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let el = t.elapsed();
    println!(
        "{label:>12}: {:.2} µs/row",
        el.as_secs_f64() * 1e6 / total as f64
    );
}

fn main() {
    let chats =
        "CREATE TABLE chats (tenant TEXT NOT NULL, jid TEXT NOT NULL, PRIMARY KEY (tenant, jid));";
    let full = format!(
        "{chats} CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, chat_jid TEXT NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL, sender_name TEXT NOT NULL, content TEXT NOT NULL, timestamp TEXT NOT NULL, is_from_me INTEGER NOT NULL DEFAULT 0, is_bot_message INTEGER NOT NULL DEFAULT 0, UNIQUE (tenant, chat_jid, id), FOREIGN KEY (tenant, chat_jid) REFERENCES chats (tenant, jid)); CREATE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);"
    );
    let upsert = "INSERT INTO messages (seq, tenant, chat_jid, id, sender, sender_name, content, timestamp, is_from_me, is_bot_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (seq) DO UPDATE SET sender = excluded.sender, sender_name = excluded.sender_name, content = excluded.content, timestamp = excluded.timestamp, is_from_me = excluded.is_from_me, is_bot_message = excluded.is_bot_message ON CONFLICT DO NOTHING";
    let plain = "INSERT INTO messages (seq, tenant, chat_jid, id, sender, sender_name, content, timestamp, is_from_me, is_bot_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let per_tx: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let _ = plain;
    for _ in 0..1 {
        run("full", &full, upsert, true, per_tx);
        run(
            "no-chatseq",
            &full.replace(
                "CREATE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);",
                "",
            ),
            upsert,
            true,
            per_tx,
        );
        run(
            "none",
            &full.replace(" AUTOINCREMENT", "").replace(
                "CREATE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);",
                "",
            ),
            plain,
            false,
            per_tx,
        );
    }
}
