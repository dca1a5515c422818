-- Web chat (story 1.4): users, JWT signing keys, rotating refresh tokens, and web sessions.
-- Everything is keyed by tenant. Times are INTEGER milliseconds since the epoch (UTC).

CREATE TABLE web_users (
    tenant        TEXT NOT NULL,
    id            TEXT NOT NULL,
    -- PHC string (Argon2id); never the password.
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Access-token signing keys, one current per tenant plus retired ones that may still verify
-- tokens issued before a rotation. Lives in the database, which no sandbox ever sees.
CREATE TABLE web_signing_keys (
    kid         TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key  BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX web_signing_keys_tenant ON web_signing_keys (tenant, created_ms);

-- Refresh tokens are stored as SHA-256 hashes. A token is used once: rotation marks it used and
-- issues the next one in the same family; presenting a used token revokes the whole family.
CREATE TABLE web_refresh_tokens (
    hash       TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX web_refresh_tokens_family ON web_refresh_tokens (family);
CREATE INDEX web_refresh_tokens_user ON web_refresh_tokens (tenant, user_id);

-- One row per web chat session; each is its own registered group (folder + chat jid).
CREATE TABLE web_sessions (
    tenant         TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    id             TEXT NOT NULL,
    folder         TEXT NOT NULL,
    chat_jid       TEXT NOT NULL,
    title          TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    last_active_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, user_id, id)
);
CREATE UNIQUE INDEX web_sessions_id ON web_sessions (id);
