-- A tenant may choose its model provider: the name of a `[providers.<name>]` entry, or `local`
-- for the embedded model. NULL: the global choice (`[model] provider`).
ALTER TABLE tenants ADD COLUMN provider TEXT;
