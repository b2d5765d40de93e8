"""Jobs that failed for good: recorded with their reason, listed, and queued again on demand.

Care and pipeline tasks run through :func:`guarded`: an error is retried with exponential backoff until
``worker.max_tries``, each try bounded by the task's own timeout; after the last try the job is recorded in
``job_failures`` (never silently dropped). Extraction failures are recorded on their chat logs
(``status = 'failed'``, ``error``), and listed here beside them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from arq import Retry
from arq.connections import ArqRedis

from memory import db
from memory.db import Connection
from memory.errors import StorageUnavailable
from worker.queue import INGEST_EXCHANGE, count_failure, ingest_job_id

log = logging.getLogger(__name__)

Task = Callable[..., Coroutine[Any, Any, Any]]


class FailedJob(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    """The failure's id (for an extraction: the chat log's)."""
    task: str
    tenant_id: uuid.UUID | None
    args: dict[str, Any]
    reason: str
    tries: int
    failed_at: datetime


def backoff(first: float, tries: int) -> float:
    """Seconds before try ``tries + 1``: ``first``, then doubled at each try, up to five minutes."""
    return float(min(300.0, first * 2 ** (tries - 1)))


def guarded(name: str, timeout: str | float, named_by: str | None = None) -> Callable[[Task], Task]:
    """Run a worker task within ``timeout`` seconds (or the ``worker`` setting of that name), retried with
    backoff, recorded when it fails for good (under ``name``, or the argument ``named_by`` names)."""

    def decorate(task: Task) -> Task:
        @functools.wraps(task)
        async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
            tries: int = ctx.get("job_try", 1)
            label = str(kwargs.get(named_by) or name) if named_by else name
            seconds = float(getattr(ctx["config"].worker, timeout) if isinstance(timeout, str) else timeout)
            try:
                async with asyncio.timeout(seconds):
                    return await task(ctx, **kwargs)
            except Retry:
                raise
            except Exception as exc:
                reason = db.describe(exc) if db.is_database_error(exc) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, TimeoutError):
                    reason = f"timed out after {seconds:g} s"
                worker = ctx["config"].worker
                if tries < worker.max_tries:
                    delay = backoff(worker.retry_delay, tries)
                    log.warning("%s failed (%s); try %d in %g s", label, reason, tries + 1, delay)
                    raise Retry(defer=delay) from exc
                await count_failure(ctx["redis"], label)
                try:
                    await record(ctx["pool"], name, kwargs, reason, tries)  # replayable as it was queued
                except StorageUnavailable:
                    log.error("%s failed for good (%s); the database is down to record it", label, reason)  # noqa: TRY400
                    raise
                log.error("%s failed for good after %d tries: %s", label, tries, reason)  # noqa: TRY400
                return {"failed": reason}

        return run

    return decorate


async def record(pool: asyncpg.Pool, task: str, args: dict[str, Any], reason: str, tries: int) -> None:
    tenant = args.get("tenant_id")
    async with db.transaction(pool) as conn:
        await conn.execute(
            "INSERT INTO job_failures (tenant_id, task, args, reason, tries) VALUES ($1, $2, $3, $4, $5)",
            uuid.UUID(tenant) if isinstance(tenant, str) else None,
            task,
            args,
            reason,
            tries,
        )


_LIST = """
SELECT id, task, tenant_id, args, reason, tries, failed_at FROM job_failures
WHERE retried_at IS NULL AND ($3::uuid IS NULL OR id = $3)
UNION ALL
SELECT id, $1, tenant_id, jsonb_build_object('chat_log_id', id::text), coalesce(error, ''), attempts,
       coalesce(processed_at, created_at)
FROM chat_logs WHERE status = 'failed' AND ($3::uuid IS NULL OR id = $3)
ORDER BY failed_at DESC LIMIT $2
"""


async def listing(conn: Connection, limit: int = 1000, only: uuid.UUID | None = None) -> list[FailedJob]:
    """Failed jobs not retried yet, newest first (or the one with id ``only``)."""
    rows = await conn.fetch(_LIST, INGEST_EXCHANGE, limit, only)
    return [msgspec.convert(dict(r), FailedJob) for r in rows]


async def retry(pool: asyncpg.Pool, redis: ArqRedis, failure_id: uuid.UUID | None) -> list[FailedJob]:
    """Queue again one failed job (by id), or all of them (None, a thousand at a time); returns those
    queued."""
    async with db.connection(pool) as conn:
        failed = await listing(conn, only=failure_id)
    for job in failed:
        if job.task == INGEST_EXCHANGE and job.tenant_id is not None:
            async with db.transaction(pool) as conn:
                await conn.execute(
                    """UPDATE chat_logs SET status = 'pending', error = NULL, attempts = 0
                       WHERE tenant_id = $1 AND id = $2""",
                    job.tenant_id,
                    job.id,
                )
            await redis.enqueue_job(
                INGEST_EXCHANGE, str(job.tenant_id), str(job.id), _job_id=ingest_job_id(job.tenant_id, job.id)
            )
        else:
            await redis.enqueue_job(job.task, **job.args)
            async with db.transaction(pool) as conn:
                await conn.execute("UPDATE job_failures SET retried_at = now() WHERE id = $1", job.id)
    return failed
