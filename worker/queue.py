"""The job queue as producers see it: the Redis connection, job names and how jobs are enqueued.

Jobs take ids only; the task reloads the row. Job ids are derived from the row, so enqueueing the same row
twice (a replay, the requeue sweep) runs the job once while it is queued or its result is kept.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Iterable
from typing import cast

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from memory.config import RedisConfig

#: The job that extracts an exchange's facts (queued for every recorded exchange).
INGEST_EXCHANGE = "extract_facts_task"


def connect(config: RedisConfig) -> ArqRedis:
    """A Redis client for enqueueing. It connects lazily, so it can be made while Redis is down."""
    pool = ConnectionPool.from_url(
        config.url,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.timeout,
        retry_on_timeout=False,
    )
    return ArqRedis(pool, default_queue_name=config.queue_name)


def ingest_job_id(tenant_id: uuid.UUID, chat_log_id: uuid.UUID) -> str:
    return f"extract:{tenant_id}:{chat_log_id}"


async def enqueue_ingest(redis: ArqRedis, logs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Queue the ingest job for each ``(tenant_id, chat_log_id)``; raises if Redis cannot be reached."""
    for tenant_id, chat_log_id in logs:
        await redis.enqueue_job(
            INGEST_EXCHANGE, str(tenant_id), str(chat_log_id), _job_id=ingest_job_id(tenant_id, chat_log_id)
        )


#: Where workers count, for ``/metrics``, extraction outcomes and jobs failed for good (Redis hashes:
#: outcome or task → count), so that every process reports the same figures.
EXTRACTIONS_KEY = "memoire:metrics:extractions"
FAILURES_KEY = "memoire:metrics:failures"


async def count_extraction(redis: Redis, outcome: str) -> None:
    """Count one finished extraction job by its outcome. Never fails the job."""
    await _count(redis, EXTRACTIONS_KEY, outcome)


async def count_failure(redis: Redis, task: str) -> None:
    """Count one job failed for good. Never fails the job."""
    await _count(redis, FAILURES_KEY, task)


async def _count(redis: Redis, key: str, field: str) -> None:
    with contextlib.suppress(RedisError, OSError):
        await cast(Awaitable[int], redis.hincrby(key, field, 1))
