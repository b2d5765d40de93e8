"""The worker's jobs. Each takes ids, reloads its rows, and is safe to run twice."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from arq import Retry

from memoire.errors import DependencyError, StorageUnavailable
from memory import db
from memory.care import decay
from memory.extraction import job
from worker.failures import guarded
from worker.queue import count_extraction, enqueue_ingest

log = logging.getLogger(__name__)

#: Chat logs re-queued by one sweep at most, oldest first.
REQUEUE_BATCH = 1000


async def extract_facts_task(ctx: dict[str, Any], tenant_id: str, chat_log_id: str) -> str:
    """Extract the facts of a recorded exchange and remember them (embed → dedup → supersede).

    With no extraction LLM configured the chat log stays pending. When a dependency is down the job is
    retried with backoff; after the last try the log stays pending and the requeue sweep brings it back.
    """
    llm = ctx.get("llm")
    if llm is None:
        return "pending: no extraction LLM configured"
    config = ctx["config"]
    try:
        outcome = await job.process(
            ctx["memory"],
            llm,
            uuid.UUID(tenant_id),
            uuid.UUID(chat_log_id),
            max_attempts=config.llm.max_attempts,
            max_errors=config.worker.max_tries,
        )
    except (StorageUnavailable, DependencyError) as exc:
        tries: int = ctx.get("job_try", 1)
        if tries < config.worker.max_tries:
            await count_extraction(ctx["redis"], "retried")
            raise Retry(defer=min(60, 2**tries)) from exc
        log.warning("chat log %s stays pending (%s); the requeue sweep will bring it back", chat_log_id, exc)
        await count_extraction(ctx["redis"], "pending")
        return f"pending: {exc}"
    await count_extraction(ctx["redis"], outcome)
    return outcome


#: Seconds one run of a care task may take; past it, it is retried (and recorded if it keeps failing).
CARE_TIMEOUT = 3600.0


@guarded("decay_stale_facts", CARE_TIMEOUT)
async def decay_stale_facts(ctx: dict[str, Any], user: str | None = None) -> dict[str, int]:
    """Daily: fade the confidence of unused facts and archive the faded (see :mod:`memory.care.decay`)."""
    report = await decay.decay_stale_facts(ctx["pool"], ctx["config"].care, datetime.now(UTC), user=user)
    log.info("decay_stale_facts: %s", _summary(report))
    return dict(report)


def _summary(report: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(report.items())) or "nothing to do"


async def requeue_pending(ctx: dict[str, Any]) -> int:
    """Queue again chat logs still pending after ``worker.requeue_after`` seconds.

    Covers a Redis that lost its queue (restarted without persistence), and jobs whose dependencies stayed
    down through all their tries. Job ids are derived from the chat log, so a log whose job is still queued
    is not queued twice. Does nothing while no extraction LLM is configured.
    """
    if ctx.get("llm") is None:
        return 0
    after: float = ctx["config"].worker.requeue_after
    try:
        async with db.transaction(ctx["pool"]) as conn:
            rows = await conn.fetch(
                """SELECT tenant_id, id FROM chat_logs
                   WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
                   ORDER BY created_at LIMIT $2""",
                after,
                REQUEUE_BATCH,
            )
    except StorageUnavailable:
        log.warning("requeue sweep skipped: database unavailable")
        return 0
    await enqueue_ingest(ctx["redis"], [(r["tenant_id"], r["id"]) for r in rows])
    if rows:
        log.info("queued %d pending chat logs again", len(rows))
    return len(rows)
