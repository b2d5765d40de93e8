"""The worker's jobs. Each takes ids, reloads its rows, and is safe to run twice."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry
from arq.jobs import Job, JobStatus

from memory import db, response_links
from memory.care import dedup, supersession
from memory.errors import DependencyError, StorageUnavailable
from memory.extraction import job
from memory.queue import Task
from worker import sweeps
from worker.failures import guarded
from worker.queue import ArqQueue, count_extraction

log = logging.getLogger(__name__)

#: Chat logs re-queued by one sweep at most, oldest first.
REQUEUE_BATCH = 1000
#: The setting that bounds one user's pipeline step.
PIPELINE_TIMEOUT = "job_timeout"


async def extract_facts(ctx: dict[str, Any], tenant_id: str, chat_log_id: str) -> str:
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
    if outcome in ("extracted", "already-extracted"):  # the latter: a rerun after a crash before the chain
        await chain(ctx, Task.RUN_DEDUPLICATION, tenant_id, chat_log_id=chat_log_id)
    return outcome


async def chain(ctx: dict[str, Any], task: Task, tenant_id: str, **key: str) -> None:
    """Queue the next step of the per-user pipeline; one job per user while it waits (its id says so)."""
    if "chat_log_id" in key:
        async with db.connection(ctx["pool"]) as conn:
            user_id = await conn.fetchval(
                "SELECT user_id FROM chat_logs WHERE tenant_id = $1 AND id = $2",
                uuid.UUID(tenant_id),
                uuid.UUID(key["chat_log_id"]),
            )
        if user_id is None:
            return
        key = {"user_id": str(user_id)}
    # One job per user per window: extractions close together share it while it waits. Once it has
    # started (or finished, its result kept), it may not see this extraction's facts, so those go to the
    # next window's job, held until that window opens (a job of an earlier window never swallows them).
    every = ctx["config"].worker.chain_window
    window = int(time.time() // every)
    redis = ctx["redis"]
    prefix = f"{task}:{tenant_id}:{key['user_id']}"
    args = {"tenant_id": tenant_id, "user_id": key["user_id"]}
    for _ in range(3):  # the job may finish between a refused enqueue and the look at its status
        if await redis.enqueue_job(task, **args, _job_id=f"{prefix}:{window}") is not None:
            return
        current = Job(f"{prefix}:{window}", redis, _queue_name=redis.default_queue_name)
        status = await current.status()
        if status in (JobStatus.queued, JobStatus.deferred):
            return  # it has not started: it will see this extraction's facts
        if status in (JobStatus.in_progress, JobStatus.complete):
            opens = datetime.fromtimestamp((window + 1) * every, UTC)
            await redis.enqueue_job(task, **args, _job_id=f"{prefix}:{window + 1}", _defer_until=opens)
            return


#: The facts ``run_deduplication`` looks at after an ingest: those this recent (older ones were looked at
#: then, and consolidate_user_memory looks at all of them weekly).
RECENT = timedelta(days=1)


@guarded(Task.RUN_DEDUPLICATION, PIPELINE_TIMEOUT)
async def run_deduplication(
    ctx: dict[str, Any], tenant_id: str | None = None, user_id: str | None = None, user: str | None = None
) -> dict[str, int] | str:
    """After an extraction: merge the user's recent facts that repeat older ones, then queue
    ``run_supersession``. Without ids (on demand): a sweep over every user (or users named ``user``)."""
    if tenant_id is None or user_id is None:
        return await sweeps.start(ctx, Task.RUN_DEDUPLICATION, user)
    report = await dedup.deduplicate_user(
        ctx["pool"], uuid.UUID(tenant_id), uuid.UUID(user_id), ctx["config"].memory.dedup_similarity,
        since=datetime.now(UTC) - RECENT, hnsw_threshold=ctx["config"].memory.hnsw_threshold,
    )  # fmt: skip
    await chain(ctx, Task.RUN_SUPERSESSION, tenant_id, user_id=user_id)
    return dict(report)


@guarded(Task.RUN_SUPERSESSION, PIPELINE_TIMEOUT)
async def run_supersession(
    ctx: dict[str, Any], tenant_id: str | None = None, user_id: str | None = None, user: str | None = None
) -> dict[str, int] | str:
    """After deduplication: one current fact per single-valued slot. Without ids: a sweep over every user."""
    if tenant_id is None or user_id is None:
        return await sweeps.start(ctx, Task.RUN_SUPERSESSION, user)
    return dict(await supersession.supersede_user(ctx["pool"], uuid.UUID(tenant_id), uuid.UUID(user_id)))


async def optimize_memory(ctx: dict[str, Any], user: str | None = None) -> str:
    """Every 6 hours: promote each user's essential facts (their profile) and demote the stale ones (a
    sweep; see :mod:`memory.care.optimize`). Returns the run's id."""
    return await sweeps.start(ctx, Task.OPTIMIZE_MEMORY, user)


async def consolidate_user_memory(ctx: dict[str, Any], user: str | None = None) -> str:
    """Weekly: merge every user's near-duplicates and have the LLM write their profile summary again
    where their facts changed (a sweep; see :mod:`memory.care.consolidate`)."""
    return await sweeps.start(ctx, Task.CONSOLIDATE_USER_MEMORY, user)


async def decay_stale_facts(ctx: dict[str, Any], user: str | None = None) -> str:
    """Daily: fade the confidence of unused facts and archive the faded (a sweep; see
    :mod:`memory.care.decay`)."""
    return await sweeps.start(ctx, Task.DECAY_STALE_FACTS, user)


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
    await ArqQueue(ctx["redis"]).extract((r["tenant_id"], r["id"]) for r in rows)
    if rows:
        log.info("queued %d pending chat logs again", len(rows))
    return len(rows)


async def purge_response_links(ctx: dict[str, Any]) -> int:
    """Daily: drop the links of responses the provider no longer keeps (see :mod:`memory.response_links`)."""
    try:
        async with db.transaction(ctx["pool"]) as conn:
            purged = await response_links.purge_expired(conn)
    except StorageUnavailable:
        log.warning("response link purge skipped: database unavailable")
        return 0
    if purged:
        log.info("purged %d expired response links", purged)
    return purged
