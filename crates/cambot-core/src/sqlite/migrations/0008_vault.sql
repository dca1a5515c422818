-- The credential vault (cambot-agent seals, this stores). Only ciphertext and names: a value
-- is sealed under its tenant's data key (DEK), each DEK is wrapped by the master key, and
-- `kek_check` (a constant sealed under the master key) tells a wrong key apart at open.
-- No foreign key to `tenants`: rows predating tenant administration have no tenant row, and
-- purging a tenant deletes these rows through their `tenant` column.
CREATE TABLE vault_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    kek_check  BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE vault_deks (
    tenant     TEXT PRIMARY KEY,
    nonce      BLOB NOT NULL,
    wrapped    BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE vault_secrets (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
