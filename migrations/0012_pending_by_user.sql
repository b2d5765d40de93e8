-- An extraction job first extracts its user's earlier pending exchanges, oldest first (see
-- memory/extraction/job.py). This finds them without reading the user's whole history.
CREATE INDEX chat_logs_pending_by_user ON chat_logs (tenant_id, user_id, occurred_at, id)
    WHERE status = 'pending';
