-- Worker jobs that failed for good (after their tries), with the reason, for `memoire jobs failed` and
-- the admin API; `memoire jobs retry` queues them again. Extraction failures live on their chat logs.
CREATE TABLE job_failures (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid REFERENCES tenants (id) ON DELETE CASCADE,
    task        text NOT NULL,
    args        jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason      text NOT NULL,
    tries       integer NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    retried_at  timestamptz
);

CREATE INDEX job_failures_open ON job_failures (failed_at) WHERE retried_at IS NULL;
