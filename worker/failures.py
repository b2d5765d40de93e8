"""Retries with backoff, and the record of a job that failed for good (see :mod:`memory.failures`).

Care and pipeline tasks run through :func:`guarded`: an error is retried with exponential backoff until
``worker.max_tries``, each try bounded by the task's own timeout; after the last try the job is recorded in
``job_failures`` (never silently dropped).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from arq import Retry

from memory import db
from memory.errors import StorageUnavailable
from memory.failures import record
from memory.queue import Task
from worker.queue import count_failure

log = logging.getLogger(__name__)

Job = Callable[..., Coroutine[Any, Any, Any]]


def backoff(first: float, tries: int) -> float:
    """Seconds before try ``tries + 1``: ``first``, then doubled at each try, up to five minutes."""
    return float(min(300.0, first * 2 ** (tries - 1)))


def guarded(name: Task, timeout: str | float, named_by: str | None = None) -> Callable[[Job], Job]:
    """Run a worker task within ``timeout`` seconds (or the ``worker`` setting of that name), retried with
    backoff, recorded when it fails for good (under ``name``, or the argument ``named_by`` names)."""

    def decorate(task: Job) -> Job:
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
