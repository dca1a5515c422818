-- Each tenant's mount roots: where its groups' extra mounts may come from, inside the operator's
-- allowlist file (the ceiling). Paths are stored resolved (realpath at the time they were
-- allowed); every run start resolves them again.
CREATE TABLE tenant_mount_roots (
    tenant     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    rw         INTEGER NOT NULL DEFAULT 0,
    added_at   TEXT NOT NULL,
    PRIMARY KEY (tenant, path)
);
