-- cambot schema v1. Every key includes the tenant. Times that drive logic are INTEGER
-- milliseconds since the epoch (UTC); times shown to people are RFC 3339 TEXT.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);
INSERT INTO tenants (id, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE chats (
    tenant            TEXT NOT NULL,
    jid               TEXT NOT NULL,
    name              TEXT NOT NULL,
    last_message_time TEXT,
    channel           TEXT,
    is_group          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, jid)
);

-- `seq` is the arrival order: the router's cursor is a seq, so two messages that share a
-- timestamp (WhatsApp has 1 s resolution) can never hide one another.
CREATE TABLE messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);

-- One row per chat; several chats may share a folder (CLI and a self-chat both on `main`).
CREATE TABLE registered_groups (
    tenant           TEXT NOT NULL,
    jid              TEXT NOT NULL,
    name             TEXT NOT NULL,
    folder           TEXT NOT NULL,
    trigger_pattern  TEXT NOT NULL,
    requires_trigger INTEGER,
    added_at         TEXT NOT NULL,
    container_config TEXT,
    PRIMARY KEY (tenant, jid)
);
CREATE INDEX registered_groups_folder ON registered_groups (tenant, folder);

CREATE TABLE sessions (
    tenant       TEXT NOT NULL,
    group_folder TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, group_folder)
);

-- Per chat: the last message seq whose reply is committed (or that needed none).
CREATE TABLE router_cursors (
    tenant     TEXT NOT NULL,
    chat_jid   TEXT NOT NULL,
    last_seq   INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, chat_jid)
);

-- Replies are committed here together with the cursor, then delivered; an undelivered row is
-- retried (at start and on reconnect), so a crash between "reply decided" and "reply sent"
-- loses nothing. `id` doubles as the delivery's idempotency key.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT NOT NULL,
    chat_jid     TEXT NOT NULL,
    text         TEXT NOT NULL,
    origin       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    delivered_at TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox (delivered_at, id);

CREATE TABLE scheduled_tasks (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    group_folder   TEXT NOT NULL,
    chat_jid       TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    schedule_type  TEXT NOT NULL,
    schedule_value TEXT NOT NULL,
    timezone       TEXT NOT NULL,
    context_mode   TEXT NOT NULL DEFAULT 'isolated',
    missed_policy  TEXT NOT NULL DEFAULT 'skip',
    next_run_ms    INTEGER,
    last_run       TEXT,
    last_result    TEXT,
    status         TEXT NOT NULL DEFAULT 'active',
    created_at     TEXT NOT NULL
);
CREATE INDEX scheduled_tasks_due ON scheduled_tasks (status, next_run_ms);
CREATE INDEX scheduled_tasks_group ON scheduled_tasks (tenant, group_folder);

CREATE TABLE task_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          TEXT NOT NULL REFERENCES scheduled_tasks (id) ON DELETE CASCADE,
    scheduled_for_ms INTEGER,
    run_at           TEXT NOT NULL,
    duration_ms      INTEGER,
    status           TEXT NOT NULL,
    result           TEXT,
    error            TEXT
);
CREATE INDEX task_runs_task ON task_runs (task_id, run_at);
