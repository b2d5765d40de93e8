-- Background memory care (decay, promotion). `decay_days`: the days of disuse already charged against a
-- fact's confidence since its last use at `decay_anchor`, so a decay run charges only what is new (a second
-- run the same day changes nothing), and a use starts the count again.
-- `pinned`: the app said keep it; `essential`: promoted by optimize_memory. Neither decays.

ALTER TABLE memory_facts
    ADD COLUMN decay_days  integer NOT NULL DEFAULT 0 CHECK (decay_days >= 0),
    ADD COLUMN decay_anchor timestamptz,
    ADD COLUMN pinned      boolean NOT NULL DEFAULT false,
    ADD COLUMN essential   boolean NOT NULL DEFAULT false;

-- Walking users in keyset order, page by page.
CREATE INDEX IF NOT EXISTS users_keyset ON users (tenant_id, id);
