"""``memoire worker``: the ARQ worker, kept running through Redis outages.

arq's worker ends when its Redis connection fails mid-run (its poll loop raises), so a worker run under any
supervisor but ``memoire up`` died with Redis. Here the worker is run again, with backoff, each time Redis
drops it, and only a signal ends it:

    run ─▶ Worker.async_run ──(Redis lost)──▶ jobs in progress finish ─▶ wait (1 s, 2 s … 10 s) ─▶ again
              │
              └──(SIGINT / SIGTERM)──▶ jobs cancelled (arq runs them again) ─▶ close

The database pool, the extraction LLM and the embedder are built once (the worker's ``ctx`` outlives each
run) and closed at the end. While it is connected the worker refreshes its health key every
:data:`HEALTH_INTERVAL` seconds; the API reads it for ``/readyz`` and ``/metrics`` (:func:`worker_alive`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from arq.constants import health_check_key_suffix
from arq.worker import Worker, create_worker
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

log = logging.getLogger(__name__)

#: Seconds between two runs after Redis dropped the worker: doubled at each failure in a row, at most
#: :data:`BACKOFF_MAX`; a run that lasted :data:`STEADY` seconds starts the count again.
BACKOFF_MIN, BACKOFF_MAX, STEADY = 1.0, 10.0, 60.0
#: Seconds between two refreshes of the worker's health key, which lives one second longer.
HEALTH_INTERVAL = 10
#: Seconds the jobs in progress get to finish when Redis goes away (they need no Redis to do their work).
DRAIN = 60.0
#: What a lost Redis raises (a refused or reset socket is an OSError).
REDIS_LOST = (RedisConnectionError, RedisTimeout, OSError)


async def worker_alive(redis: Redis, queue_name: str) -> bool:
    """Whether a worker has refreshed its health key (arq's, ``<queue>:health-check``) lately; raises what
    Redis raises."""
    return bool(await redis.exists(queue_name + health_check_key_suffix))


def run(settings: type) -> int:
    """Run the worker described by ``settings`` (:func:`worker.settings.worker_settings`) until a signal."""
    asyncio.run(_run(settings))
    return 0


async def _run(settings: type) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    # Shared by every run (arq takes an empty one for none, hence the count in it).
    ctx: dict[str, Any] = {"runs": 0}
    delay = BACKOFF_MIN
    worker: Worker | None = None
    try:
        while not stopping.is_set():
            ctx["runs"] += 1
            worker = create_worker(settings, handle_signals=False, ctx=ctx)
            started = loop.time()
            running = asyncio.create_task(worker.async_run())
            stop = asyncio.create_task(stopping.wait())
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not running.done():  # a signal: arq's own shutdown
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                break
            error = running.exception()
            if error is None:
                break  # a burst run, done
            if not isinstance(error, REDIS_LOST):
                raise error
            delay = BACKOFF_MIN if loop.time() - started > STEADY else delay
            log.warning(
                "Redis is unreachable (%s); the worker connects again in %.0f s", type(error).__name__, delay
            )
            await _drain(worker)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(BACKOFF_MAX, delay * 2)
    finally:
        if worker is not None:
            await _close(worker, ctx)


async def _drain(worker: Worker) -> None:
    """Let the jobs in progress finish their work (their end is recorded in Redis, which may fail), then
    drop the run's Redis pool."""
    jobs = list(worker.tasks.values())
    if jobs:
        await asyncio.wait(jobs, timeout=DRAIN)
    for job in jobs:
        if not job.done():
            job.cancel()  # arq runs it again once Redis is back
        elif not job.cancelled() and job.exception() is not None:
            log.warning("a job's end could not be recorded: %s", type(job.exception()).__name__)
    worker.tasks.clear()
    if worker._pool is not None:  # arq keeps no public way to drop a pool it made
        with contextlib.suppress(RedisError, *REDIS_LOST):
            await worker._pool.close(close_connection_pool=True)
        worker._pool = None


async def _close(worker: Worker, ctx: dict[str, Any]) -> None:
    """Cancel what runs (arq runs it again), forget the health key, close what the runs shared."""
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if worker._pool is not None:
        with contextlib.suppress(RedisError, *REDIS_LOST):
            await worker._pool.delete(worker.health_check_key)
            await worker._pool.close(close_connection_pool=True)
    if worker.on_shutdown is not None:
        await worker.on_shutdown(ctx)
