-- The profile summary consolidate_user_memory has the LLM write for each user from their essential and
-- most important facts. `source_hash` identifies the facts it was written from: while they do not change,
-- the summary is not written again (a second run changes nothing, and costs no LLM call).
CREATE TABLE user_profiles (
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    summary       text NOT NULL,
    source_hash   text NOT NULL,
    facts_used    integer NOT NULL,
    model         text NOT NULL,
    usage         jsonb NOT NULL DEFAULT '{}'::jsonb,
    generated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
