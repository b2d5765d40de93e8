-- The memory engine: temporal facts with world and system time, supersession history, recall statistics,
-- and the extraction state of each chat log.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Facts -------------------------------------------------------------------------------------------------
-- World time (valid_from, valid_to) says when a fact holds for the user; system time (observed_at,
-- created_at, expired_at) says when Mémoire learned it and when it stopped believing it. A superseded or
-- ended fact keeps its row: status 'superseded', valid_to and expired_at set, superseded_by pointing at its
-- replacement (NULL when it simply ended).
ALTER TABLE memory_facts
    ADD COLUMN temporal_status  text NOT NULL DEFAULT 'current'
                                CHECK (temporal_status IN ('current', 'past', 'future', 'recurring')),
    ADD COLUMN valid_from       timestamptz,
    ADD COLUMN valid_to         timestamptz,
    ADD COLUMN observed_at      timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN expired_at       timestamptz,
    ADD COLUMN confidence       real NOT NULL DEFAULT 0.8 CHECK (confidence >= 0 AND confidence <= 1),
    ADD COLUMN importance       real NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    ADD COLUMN embedding_dim    integer,
    ADD COLUMN superseded_by    uuid,
    ADD COLUMN recall_count     integer NOT NULL DEFAULT 0,
    ADD COLUMN last_recalled_at timestamptz,
    ADD CONSTRAINT memory_facts_superseded_by_fkey
        FOREIGN KEY (tenant_id, superseded_by) REFERENCES memory_facts (tenant_id, id),
    ADD CONSTRAINT memory_facts_embedding_described
        CHECK (embedding IS NULL OR (embedding_model IS NOT NULL AND embedding_dim = vector_dims(embedding))),
    ADD CONSTRAINT memory_facts_valid_range
        CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from);

-- Per-user search: a btree on the user, then an exact distance sort over that user's rows (measured faster
-- than HNSW with iterative scan at ~1,000 facts per user, and exact). Rows of another embedding model are
-- filtered out, so two models' vectors never meet in one search.
DROP INDEX memory_facts_user_status;
CREATE INDEX memory_facts_user ON memory_facts (tenant_id, user_id, embedding_model)
    WHERE status IN ('active', 'superseded');
CREATE INDEX memory_facts_user_slot ON memory_facts (tenant_id, user_id, slot)
    WHERE status = 'active' AND slot IS NOT NULL;
CREATE INDEX memory_facts_text_trgm ON memory_facts USING gin (text gin_trgm_ops);
CREATE INDEX memory_facts_superseded_by ON memory_facts (tenant_id, superseded_by)
    WHERE superseded_by IS NOT NULL;

-- Chat logs: extraction state ---------------------------------------------------------------------------
-- pending: stored, facts not yet extracted (also: no extraction LLM configured); extracted: done;
-- failed: the LLM's output stayed unusable after retries; the reason is in error, and the log can be replayed.
UPDATE chat_logs SET status = 'pending' WHERE status = 'received';
ALTER TABLE chat_logs DROP CONSTRAINT chat_logs_status_check;
ALTER TABLE chat_logs
    ADD CONSTRAINT chat_logs_status_check CHECK (status IN ('pending', 'extracted', 'failed')),
    ADD COLUMN attempts          integer NOT NULL DEFAULT 0,
    ADD COLUMN extraction_model  text,
    ADD COLUMN extraction_usage  jsonb,
    ADD COLUMN extracted_at      timestamptz,
    ADD COLUMN metadata          jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE chat_logs RENAME COLUMN received_at TO processed_at;

DROP INDEX chat_logs_pending;
CREATE INDEX chat_logs_pending ON chat_logs (created_at) WHERE status = 'pending';
CREATE INDEX chat_logs_failed ON chat_logs (created_at) WHERE status = 'failed';
