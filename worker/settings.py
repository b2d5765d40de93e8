"""ARQ ``WorkerSettings``, built from the config at start (never at import time)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar

import msgspec
from arq import cron
from arq.connections import RedisSettings
from arq.worker import func

from memory import db, embeddings
from memory.config import Config
from memory.extraction import llm
from memory.queue import Task
from memory.service import EmbedderFactory, Memory
from worker import runner, sweeps, tasks

log = logging.getLogger(__name__)


def _beyond(seconds: float) -> float:
    """arq's limit for a task that bounds itself to ``seconds``: a little more, so that the task's own
    handling (retry, record) comes first. It also sets how soon a job of a killed worker runs again."""
    return seconds + max(1.0, min(60.0, seconds / 10))


def _cron(task: Task) -> str:
    """A scheduled run's name: arq's own form, apart from the function's name, which the task holds."""
    return f"cron:{task}"


def worker_settings(config: Config, dsn: str, embedder_factory: EmbedderFactory | None = None) -> type:
    """A ``WorkerSettings`` class for ``arq.worker.create_worker``."""
    # Every job is short (a care run is a chain of page jobs): arq's lease on any job stays short too.
    pipeline_timeout = _beyond(config.worker.job_timeout)
    # Scheduled runs are retried like the others (arq's cron default is one try).
    tries = config.worker.max_tries

    async def on_startup(ctx: dict[str, Any]) -> None:
        if "memory" in ctx:
            return  # a run after Redis came back (worker.runner): the last run's pools serve on
        ctx["config"] = config
        # One connection per running job (it holds the user's lock), plus room for the cron jobs.
        database = msgspec.structs.replace(
            config.database, pool_max=max(config.database.pool_max, config.worker.max_jobs + 2)
        )
        ctx["pool"] = await db.create_pool(database, dsn)
        ctx["llm"] = llm.create(config.llm)
        if ctx["llm"] is None:
            log.warning(
                "no extraction LLM configured (MEMOIRE_LLM_PROVIDER is unset): exchanges are stored and stay "
                "pending; configure one, then run `memoire jobs run extract_facts`"
            )
        ctx["memory"] = Memory(config, ctx["pool"], embedder_factory or (lambda: embeddings.create(config)))
        await ctx["memory"].start(wait=None)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "memory" in ctx:
            await ctx["memory"].close()
        if ctx.get("llm") is not None:
            await ctx["llm"].close()
        if "pool" in ctx:
            await db.close_pool(ctx["pool"])

    def scheduled(task: Task, function: Any, tries: int = tries, **when: Any) -> Any:
        """A run of ``task`` at second 0 of ``when``, tried ``tries`` times like any job."""
        return cron(function, name=_cron(task), second={0}, timeout=pipeline_timeout, max_tries=tries, **when)

    class WorkerSettings:
        # Results are not kept: the job id then only dedups while a job is queued or running, so the
        # requeue sweep can queue a still-pending log again.
        functions: ClassVar[list[Any]] = [
            func(tasks.extract_facts, name=Task.EXTRACT_FACTS, keep_result=0),
            *(
                func(function, name=name, keep_result=0, timeout=pipeline_timeout)
                for name, function in (
                    (Task.OPTIMIZE_MEMORY, tasks.optimize_memory),
                    (Task.DECAY_STALE_FACTS, tasks.decay_stale_facts),
                    (Task.CONSOLIDATE_USER_MEMORY, tasks.consolidate_user_memory),
                    (Task.CARE_PAGE, sweeps.care_page),
                    (Task.RUN_DEDUPLICATION, tasks.run_deduplication),
                    (Task.RUN_SUPERSESSION, tasks.run_supersession),
                )
            ),
        ]
        cron_jobs: ClassVar[list[Any]] = [
            cron(
                tasks.requeue_pending,
                name=_cron(Task.REQUEUE_PENDING),
                second={0, 30},
                run_at_startup=True,
                timeout=pipeline_timeout,
            ),
            # Every 6 hours, daily and weekly; off the hours most schedules crowd.
            scheduled(Task.OPTIMIZE_MEMORY, tasks.optimize_memory, hour={0, 6, 12, 18}, minute={41}),
            scheduled(Task.DECAY_STALE_FACTS, tasks.decay_stale_facts, hour={3}, minute={17}),
            scheduled(Task.PURGE_RESPONSE_LINKS, tasks.purge_response_links, tries=1, hour={2}, minute={53}),
            # Weekly, on Sundays (arq counts weekdays from Monday = 0).
            scheduled(
                Task.CONSOLIDATE_USER_MEMORY,
                tasks.consolidate_user_memory,
                weekday={6},
                hour={4},
                minute={23},
            ),
        ]
        # One try a run: worker.runner runs the worker again, with backoff, while Redis is away.
        redis_settings = dataclasses.replace(RedisSettings.from_dsn(config.redis.url), conn_retries=0)
        queue_name = config.redis.queue_name
        poll_delay = config.worker.poll_delay
        max_jobs = config.worker.max_jobs
        job_timeout = config.worker.job_timeout
        max_tries = config.worker.max_tries
        # How often the worker refreshes its health key (read by the compose health check, /readyz and
        # /metrics).
        health_check_interval = runner.HEALTH_INTERVAL

    WorkerSettings.on_startup = staticmethod(on_startup)  # type: ignore[attr-defined]
    WorkerSettings.on_shutdown = staticmethod(on_shutdown)  # type: ignore[attr-defined]
    return WorkerSettings
