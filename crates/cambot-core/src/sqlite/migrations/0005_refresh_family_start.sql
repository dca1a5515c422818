-- A refresh token family has an absolute lifetime counted from its first token: rotation never
-- extends it. Each row carries its family's start; existing families start at their oldest row.

ALTER TABLE web_refresh_tokens ADD COLUMN family_created_ms INTEGER NOT NULL DEFAULT 0;
UPDATE web_refresh_tokens SET family_created_ms = (
    SELECT MIN(t.created_ms) FROM web_refresh_tokens t WHERE t.family = web_refresh_tokens.family
);
