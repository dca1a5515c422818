-- Tenants become first-class: a display name and a state. A disabled tenant starts no run,
-- fires no task and accepts no sign-in; its messages are kept and answered after it is enabled.

ALTER TABLE tenants ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'disabled'));
ALTER TABLE tenants ADD COLUMN updated_at TEXT;
UPDATE tenants SET updated_at = created_at;

-- Tenants that existed only through their rows (`groups register --tenant T` or
-- `users add --tenant T` made no tenants row) become known tenants.
INSERT OR IGNORE INTO tenants (id, created_at, updated_at)
    SELECT DISTINCT tenant, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM (SELECT tenant FROM registered_groups
          UNION SELECT tenant FROM chats
          UNION SELECT tenant FROM scheduled_tasks
          UNION SELECT tenant FROM web_users
          UNION SELECT tenant FROM web_sessions);
