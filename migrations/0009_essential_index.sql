-- A user's profile (their essential facts) is read on a call whenever it is not cached: from an index of
-- those few rows, not a scan of every fact the user has.
CREATE INDEX memory_facts_essential ON memory_facts (tenant_id, user_id) WHERE essential AND status = 'active';

-- When consolidate_user_memory last went over the user: the next run looks only at what came since.
ALTER TABLE users ADD COLUMN consolidated_at timestamptz;
