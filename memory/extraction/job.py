"""Extracting the facts of one chat log: the logic of ``extract_facts``, shared by the worker and
``memoire jobs run``.

Jobs for one user run one at a time: each holds a session advisory lock on the user for its whole run
(reading known facts, asking the LLM, writing), so supersession cannot race. And they run in the order the
exchanges happened: a job first extracts the user's exchanges that came before its own and are still
pending, so two jobs that start together (or a job retried later) cannot learn "started at Apple" before
"works at Google" and leave the older fact standing. The facts and the chat log's new
status are written in one transaction, so a job that dies half-way leaves the log pending and runs again
whole. The LLM's answer is kept with the log as soon as it comes, before the facts are written, so the job
run again reads the facts from it and the LLM sees each exchange once (twice only when its answer is lost
before it is kept). A log that is not pending is left alone, which makes the job idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Literal

from asyncpg import Record

from memory import db
from memory.errors import DependencyError, StorageUnavailable
from memory.extraction.extractor import Extracted, ExtractionFailed, Usage, extract, reread
from memory.extraction.llm import LLM
from memory.extraction.prompt import conversation
from memory.service import Memory

log = logging.getLogger(__name__)

Outcome = Literal["extracted", "failed", "error", "missing", "already-extracted", "already-failed"]

_LOAD = """
SELECT l.status, l.user_id, l.messages, l.reply, l.occurred_at, u.external_id,
       l.extraction_answer, l.extraction_answer_usage
FROM chat_logs l JOIN users u ON u.tenant_id = l.tenant_id AND u.id = l.user_id
WHERE l.tenant_id = $1 AND l.id = $2
"""

_DONE = """
UPDATE chat_logs
SET status = $3, error = $4, attempts = attempts + $5, extraction_model = $6, extraction_usage = $7,
    extraction_answer = NULL, extraction_answer_usage = NULL,
    extracted_at = CASE WHEN $3 = 'extracted' THEN now() ELSE extracted_at END, processed_at = now()
WHERE tenant_id = $1 AND id = $2
"""

_EARLIER = """
SELECT l.id FROM chat_logs l, chat_logs mine
WHERE mine.tenant_id = $1 AND mine.id = $2
  AND l.tenant_id = $1 AND l.user_id = mine.user_id AND l.status = 'pending'
  AND (l.occurred_at, l.id) < (mine.occurred_at, mine.id)
ORDER BY l.occurred_at, l.id
LIMIT $3
"""

#: Kept until the log is done (:data:`_DONE` drops it): the facts live on in memory_facts, where they are
#: edited and forgotten, not in a copy of the answer.
_KEEP_ANSWER = """
UPDATE chat_logs SET extraction_answer = $3, extraction_answer_usage = $4
WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
"""

#: The advisory-lock namespace of extraction jobs (writes use their own, see memory.writer).
_JOB_LOCK = 8
#: At most this many of the user's earlier pending exchanges are extracted ahead of a job's own; the
#: rest have their own jobs, which do the same.
EARLIER_FIRST = 10


async def process(
    memory: Memory,
    llm: LLM,
    tenant_id: uuid.UUID,
    chat_log_id: uuid.UUID,
    *,
    max_attempts: int,
    max_errors: int = 5,
) -> Outcome:
    """Extract and remember the facts of one chat log. Raises StorageUnavailable, LLMUnavailable or
    EmbedderUnavailable when a dependency is down (the log stays pending).

    Any other error is a bug or bad data: it is counted on the log, and after ``max_errors`` of them the log
    is recorded as failed with the reason, so it neither loops forever nor disappears."""
    async with db.connection(memory.pool) as conn:
        row = await conn.fetchrow(_LOAD, tenant_id, chat_log_id)
        if row is None:
            return "missing"
        if row["status"] != "pending":
            return "already-extracted" if row["status"] == "extracted" else "already-failed"
        key = f"{tenant_id}:{row['user_id']}"
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, $2))", key, _JOB_LOCK)
        try:
            earlier = await conn.fetch(_EARLIER, tenant_id, chat_log_id, EARLIER_FIRST)
            for before in earlier:
                await _counted(memory, llm, conn, tenant_id, before["id"], max_attempts, max_errors)
            return await _counted(memory, llm, conn, tenant_id, chat_log_id, max_attempts, max_errors)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, $2))", key, _JOB_LOCK)


async def _counted(
    memory: Memory,
    llm: LLM,
    conn: db.Connection,
    tenant_id: uuid.UUID,
    chat_log_id: uuid.UUID,
    max_attempts: int,
    max_errors: int,
) -> Outcome:
    """One chat log, under the user's lock; an error that is not a dependency's is counted on the log."""
    try:
        return await _locked(memory, llm, conn, tenant_id, chat_log_id, max_attempts)
    except (StorageUnavailable, DependencyError):
        raise
    except Exception as exc:
        if db.is_unavailable(exc):
            raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        reason = db.describe(exc)[:500]
        if db.is_database_error(exc):
            log.error("chat log %s: extraction error: %s", chat_log_id, reason)  # noqa: TRY400 - no row data
        else:
            log.exception("chat log %s: extraction error", chat_log_id)
        status = await conn.fetchval(
            """UPDATE chat_logs SET attempts = attempts + 1, error = $3,
                      status = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE status END
               WHERE tenant_id = $1 AND id = $2 RETURNING status""",
            tenant_id, chat_log_id, reason, max_errors,
        )  # fmt: skip
        return "failed" if status == "failed" else "error"


async def _answer(
    memory: Memory,
    llm: LLM,
    conn: db.Connection,
    tenant_id: uuid.UUID,
    chat_log_id: uuid.UUID,
    row: Record,
    max_attempts: int,
) -> Extracted:
    """The facts of the chat log: read again from the LLM's answer a try before kept, else the LLM's
    answer now, kept with the log before anything else is written."""
    if row["extraction_answer"] is not None:
        with contextlib.suppress(ValueError):  # kept only once it had been read without error
            usage = Usage(**row["extraction_answer_usage"])
            return reread(row["extraction_answer"], usage, row["occurred_at"])
    user_text = "\n".join(t["content"] for t in conversation(row["messages"], None) if t["role"] == "user")
    known = await memory.context(conn, tenant_id, row["user_id"], user_text, memory.config.llm.context_facts)
    extracted = await extract(
        llm,
        messages=row["messages"],
        reply=row["reply"],
        known=known,
        occurred_at=row["occurred_at"],
        max_attempts=max_attempts,
    )
    if extracted.answer is not None:
        await conn.execute(_KEEP_ANSWER, tenant_id, chat_log_id, extracted.answer, extracted.usage.as_dict())
    return extracted


async def _locked(
    memory: Memory,
    llm: LLM,
    conn: db.Connection,
    tenant_id: uuid.UUID,
    chat_log_id: uuid.UUID,
    max_attempts: int,
) -> Outcome:
    row = await conn.fetchrow(_LOAD, tenant_id, chat_log_id)
    if row is None:
        return "missing"
    if row["status"] != "pending":  # another job finished it while we waited for the lock
        return "already-extracted" if row["status"] == "extracted" else "already-failed"
    try:
        extracted = await _answer(memory, llm, conn, tenant_id, chat_log_id, row, max_attempts)
    except ExtractionFailed as exc:
        await conn.execute(
            _DONE, tenant_id, chat_log_id, "failed", exc.reason, exc.usage.calls, exc.usage.model,
            exc.usage.as_dict(),
        )  # fmt: skip
        log.warning("chat log %s: extraction failed: %s", chat_log_id, exc.reason)
        return "failed"
    note = f"{len(extracted.unusable)} unusable facts: {extracted.unusable}" if extracted.unusable else None
    try:
        async with conn.transaction():
            if extracted.facts:
                await memory.remember(
                    tenant_id,
                    row["external_id"],
                    extracted.facts,
                    sources=[chat_log_id],
                    user_id=row["user_id"],
                    conn=conn,
                )
            usage = extracted.usage
            await conn.execute(
                _DONE, tenant_id, chat_log_id, "extracted", note, usage.calls, usage.model, usage.as_dict()
            )
    except Exception as exc:
        if db.is_unavailable(exc):
            raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise
    return "extracted"
