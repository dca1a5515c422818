-- Workflows (issue 28): definitions per tenant, durable runs and their steps, and an
-- idempotency key on the reply outbox so a workflow's `send` step is queued at most once.

CREATE TABLE workflow_defs (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    toml       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- A run keeps its own copy of the definition: editing or removing the workflow never changes
-- a run already started.
CREATE TABLE workflow_runs (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    definition  TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    state       TEXT NOT NULL,
    error       TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    finished_ms INTEGER
);
CREATE INDEX workflow_runs_by_workflow ON workflow_runs (tenant, workflow, created_ms);
CREATE INDEX workflow_runs_unfinished ON workflow_runs (state) WHERE state = 'running';

CREATE TABLE workflow_steps (
    run_id      TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    step_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    output      TEXT,
    error       TEXT,
    started_ms  INTEGER,
    finished_ms INTEGER,
    PRIMARY KEY (run_id, idx),
    UNIQUE (run_id, step_id)
);

ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX outbox_idempotency ON outbox (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
