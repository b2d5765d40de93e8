"""The job queue on ARQ and Redis: :class:`ArqQueue` implements the memory core's :class:`memory.queue.Queue`.

Jobs take ids only; the task reloads the row. Job ids are derived from the row, so enqueueing the same row
twice (a replay, the requeue sweep) runs the job once while it is queued or its result is kept. Redis's own
errors become :class:`memory.errors.QueueUnavailable` here, and nowhere else.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable
from datetime import datetime
from typing import Any, cast

from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from memory.config import RedisConfig
from memory.errors import QueueUnavailable
from memory.queue import Stats, Task, extraction_id
from memory.redis_pool import connection_pool

#: Where workers count, for ``/metrics``, extraction outcomes and jobs failed for good (Redis hashes:
#: outcome or task → count), so that every process reports the same figures.
EXTRACTIONS_KEY = "memoire:metrics:extractions"
FAILURES_KEY = "memoire:metrics:failures"


def connect(config: RedisConfig) -> ArqRedis:
    """A Redis client for enqueueing. It connects lazily, so it can be made while Redis is down."""
    return ArqRedis(connection_pool(config), default_queue_name=config.queue_name)


@contextlib.asynccontextmanager
async def _reached(what: str) -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"the job queue (Redis) is unavailable: {what}") from exc


class ArqQueue:
    """:class:`memory.queue.Queue` on ARQ. Made while Redis is down, it connects when first used."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    @classmethod
    def connect(cls, config: RedisConfig) -> ArqQueue:
        return cls(connect(config))

    async def enqueue(
        self, task: str, /, *args: str, job_id: str | None = None, at: datetime | None = None, **kwargs: Any
    ) -> str | None:
        async with _reached(f"queueing {task}"):
            job = await self.redis.enqueue_job(task, *args, _job_id=job_id, _defer_until=at, **kwargs)
        return None if job is None else job.job_id

    async def extract(self, logs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
        for tenant_id, chat_log_id in logs:
            job_id = extraction_id(tenant_id, chat_log_id)
            await self.enqueue(Task.EXTRACT_FACTS, str(tenant_id), str(chat_log_id), job_id=job_id)

    async def ping(self) -> None:
        async with _reached("ping"):
            await self.redis.ping()

    async def worker_alive(self) -> bool:
        async with _reached("the worker's health key"):
            return await worker_alive(self.redis, self.redis.default_queue_name)

    async def stats(self) -> Stats:
        async with _reached("the queue's figures"):
            queued = await self.redis.zcard(self.redis.default_queue_name)
            extractions = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(EXTRACTIONS_KEY))
            failures = await cast(Awaitable[dict[bytes, bytes]], self.redis.hgetall(FAILURES_KEY))
            alive = await worker_alive(self.redis, self.redis.default_queue_name)
        return Stats(queued, _ints(extractions), _ints(failures), alive)

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose(close_connection_pool=True)


def _ints(counts: dict[bytes, bytes]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in counts.items()}


async def worker_alive(redis: Redis, queue_name: str) -> bool:
    """Whether a worker has refreshed its health key (arq's, ``<queue>:health-check``) lately; raises what
    Redis raises."""
    return bool(await redis.exists(queue_name + health_check_key_suffix))


async def count_extraction(redis: Redis, outcome: str) -> None:
    """Count one finished extraction job by its outcome. Never fails the job."""
    await _count(redis, EXTRACTIONS_KEY, outcome)


async def count_failure(redis: Redis, task: str) -> None:
    """Count one job failed for good. Never fails the job."""
    await _count(redis, FAILURES_KEY, task)


async def _count(redis: Redis, key: str, field: str) -> None:
    with contextlib.suppress(RedisError, OSError):
        await cast(Awaitable[int], redis.hincrby(key, field, 1))
