"""Jobs that failed for good: recorded with their reason, listed, and queued again on demand.

The worker records a care or pipeline job here after its last try (``worker.failures.guarded``);
extraction failures are recorded on their chat logs (``status = 'failed'``, ``error``) and listed beside
them. ``memoire jobs failed|retry`` and the admin endpoints read and replay them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from memory import db
from memory.db import Connection
from memory.queue import Queue, Task


class FailedJob(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    """The failure's id (for an extraction: the chat log's)."""
    task: str
    tenant_id: uuid.UUID | None
    args: dict[str, Any]
    reason: str
    tries: int
    failed_at: datetime


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
    rows = await conn.fetch(_LIST, Task.EXTRACT_FACTS, limit, only)
    return [msgspec.convert(dict(r), FailedJob) for r in rows]


async def retry(pool: asyncpg.Pool, queue: Queue, failure_id: uuid.UUID | None) -> list[FailedJob]:
    """Queue again one failed job (by id), or all of them (None, a thousand at a time); returns those
    queued."""
    async with db.connection(pool) as conn:
        failed = await listing(conn, only=failure_id)
    for job in failed:
        if job.task == Task.EXTRACT_FACTS and job.tenant_id is not None:
            async with db.transaction(pool) as conn:
                await conn.execute(
                    """UPDATE chat_logs SET status = 'pending', error = NULL, attempts = 0
                       WHERE tenant_id = $1 AND id = $2""",
                    job.tenant_id,
                    job.id,
                )
            await queue.extract([(job.tenant_id, job.id)])
        else:
            await queue.enqueue(job.task, **job.args)
            async with db.transaction(pool) as conn:
                await conn.execute("UPDATE job_failures SET retried_at = now() WHERE id = $1", job.id)
    return failed
