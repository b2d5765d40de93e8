"""ARQ ``WorkerSettings``, built from the config at start (never at import time)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings
from arq.worker import func

from memoire.config import Config
from memory import db
from worker import tasks
from worker.queue import INGEST_EXCHANGE


def worker_settings(config: Config, dsn: str) -> type:
    """A ``WorkerSettings`` class for ``arq.worker.create_worker``."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["config"] = config
        ctx["pool"] = await db.create_pool(config.database, dsn)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "pool" in ctx:
            await db.close_pool(ctx["pool"])

    class WorkerSettings:
        functions: ClassVar[list[Any]] = [func(tasks.ingest_exchange, name=INGEST_EXCHANGE)]
        cron_jobs: ClassVar[list[Any]] = [
            cron(tasks.requeue_pending, second={0, 30}, run_at_startup=True, timeout=60)
        ]
        # Keep trying to reach Redis rather than exiting: it may come back.
        redis_settings = dataclasses.replace(
            RedisSettings.from_dsn(config.redis.url), conn_retries=1_000_000, conn_retry_delay=1
        )
        queue_name = config.redis.queue_name
        poll_delay = config.worker.poll_delay
        max_jobs = config.worker.max_jobs
        job_timeout = config.worker.job_timeout
        max_tries = config.worker.max_tries
        # How often the worker refreshes its health key (read by the compose health check).
        health_check_interval = 30

    WorkerSettings.on_startup = staticmethod(on_startup)  # type: ignore[attr-defined]
    WorkerSettings.on_shutdown = staticmethod(on_shutdown)  # type: ignore[attr-defined]
    return WorkerSettings
