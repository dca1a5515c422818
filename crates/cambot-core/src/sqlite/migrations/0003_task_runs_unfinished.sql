-- The scheduler asks, on every pass, which tasks have a firing claimed or running. Without this
-- partial index that is a scan of the whole run log, which grows with every firing; with it, the
-- cost is the number of unfinished firings.
CREATE INDEX task_runs_unfinished ON task_runs (task_id) WHERE status IN ('claimed', 'running');
