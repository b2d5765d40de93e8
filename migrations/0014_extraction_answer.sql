-- The extraction LLM's accepted answer, kept with its chat log as soon as it comes, before the facts are
-- written: a job retried after a failure further on (the embedder or the database away, a killed worker)
-- reads the facts again from it instead of paying the LLM for the same exchange twice. Its usage is kept
-- beside it, and counted on the log once, when the facts are stored.
ALTER TABLE chat_logs ADD COLUMN extraction_answer text, ADD COLUMN extraction_answer_usage jsonb;
