-- Messages reach SQLite grouped by chat, out of seq order (the mover holds each chat's messages,
-- crates/cambot-core/src/held.rs). With `seq` as the rowid, every such row landed on a table leaf
-- of its own. Now the rowid counts insertions, so the table is appended to, and `seq` is a
-- column, unique within its chat through `messages_chat_seq`. Seqs stay unique across chats: they
-- are handed out from `message_seq` (or, while the daemon owns the ingest journal, counted in
-- memory from it and raised by every move).

CREATE TABLE message_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO message_seq (id, last) VALUES (1, MAX(
    COALESCE((SELECT MAX(seq) FROM messages), 0),
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)
));

CREATE TABLE messages_v4 (
    seq            INTEGER NOT NULL,
    tenant         TEXT NOT NULL,
    chat_jid       TEXT NOT NULL,
    id             TEXT NOT NULL,
    sender         TEXT NOT NULL,
    sender_name    TEXT NOT NULL,
    content        TEXT NOT NULL,
    timestamp      TEXT NOT NULL,
    is_from_me     INTEGER NOT NULL DEFAULT 0,
    is_bot_message INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, chat_jid, id),
    FOREIGN KEY (tenant, chat_jid) REFERENCES chats (tenant, jid)
);
INSERT INTO messages_v4 (rowid, seq, tenant, chat_jid, id, sender, sender_name, content,
                         timestamp, is_from_me, is_bot_message)
    SELECT seq, seq, tenant, chat_jid, id, sender, sender_name, content, timestamp, is_from_me,
           is_bot_message
    FROM messages ORDER BY seq;
DROP TABLE messages;
ALTER TABLE messages_v4 RENAME TO messages;
CREATE UNIQUE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);
