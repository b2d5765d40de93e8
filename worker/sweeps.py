"""Care tasks over every user, as chains of short jobs: one job per page of users.

A scheduled or requested run (``optimize_memory``, ``decay_stale_facts``, ``consolidate_user_memory``, and
``run_deduplication`` / ``run_supersession`` without a user) queues its first page. Each page job handles
``care.batch_users`` users, then queues the next page with the cursor (the last user's key) and the totals
so far; the last one logs the run's totals. Each page is bounded by ``worker.job_timeout`` and retried on
its own, so:

- no job runs long, and arq's lease on a job (its timeout plus 10 s) stays short: after a worker is
  killed, the interrupted page runs again within minutes, not after the longest task;
- a page is idempotent (the tasks change only what is due), so running it again after a crash changes
  nothing twice; the next page's job id is fixed by the run and the step, so while it waits it is not
  queued twice (a page run again after the next one finished queues it again: time lost, nothing else);
- a page that fails for good is recorded, to be replayed alone, and the run goes on with the next page;
- a full dedup pass over a user with tens of thousands of facts stops once half the timeout is spent, and
  the next job goes on from the fact where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memory import failures
from memory.care import consolidate, decay, dedup, optimize, pages, supersession
from memory.care.pages import UserKey
from memory.queue import SWEEPS, Task
from worker import queue
from worker.failures import guarded

log = logging.getLogger(__name__)


def summary(report: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(report.items())) or "nothing to do"


async def start(ctx: dict[str, Any], task: Task, user: str | None = None) -> str:
    """Queue the first page of a run of ``task`` (over the users named ``user``, or all); returns the run."""
    now = datetime.now(UTC)
    run = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    await ctx["redis"].enqueue_job(
        Task.CARE_PAGE, task=task, run=run, now=now.isoformat(), user=user, _job_id=f"{task}:{run}:0"
    )
    return run


@dataclass(frozen=True)
class Stopped:
    """A page left part-way, its time spent: a user's dedup pass stopped at a fact."""

    index: int
    """The page's user whose pass stopped (those before it are done)."""
    after: dedup.Cursor
    """The last of their facts looked at."""


async def handle_page(
    ctx: dict[str, Any],
    task: str,
    page: list[UserKey],
    now: datetime,
    *,
    resume: dedup.Cursor | None = None,
    deadline: float | None = None,
) -> tuple[Counter[str], Stopped | None]:
    """Do ``task`` for one page of users (``ctx``: the pool, the config and, for consolidate, the LLM).
    A full dedup pass starts its first user after the fact ``resume`` and stops once ``deadline`` passed."""
    pool, config = ctx["pool"], ctx["config"]
    if task == Task.DECAY_STALE_FACTS:
        return await decay.decay_page(pool, config.care, page, now), None
    if task == Task.OPTIMIZE_MEMORY:
        return await optimize.optimize_page(pool, config.care, page, now), None
    report: Counter[str] = Counter()
    similar, large = config.memory.dedup_similarity, config.memory.hnsw_threshold
    for index, (tenant_id, user_id) in enumerate(page):
        if task == Task.CONSOLIDATE_USER_MEMORY:
            report.update(
                await consolidate.consolidate_user(pool, ctx.get("llm"), tenant_id, user_id, similar, large)
            )
        elif task == Task.RUN_DEDUPLICATION:
            done, stopped = await dedup.deduplicate_until(
                pool, tenant_id, user_id, similar, hnsw_threshold=large,
                after=resume if index == 0 else None, deadline=deadline,
            )  # fmt: skip
            report.update(done)
            if stopped is not None:
                return report, Stopped(index, stopped)
        elif task == Task.RUN_SUPERSESSION:
            report.update(await supersession.supersede_user(pool, tenant_id, user_id))
    return report, None


@guarded(Task.CARE_PAGE, "job_timeout", named_by="task")
async def care_page(
    ctx: dict[str, Any],
    task: str,
    run: str,
    now: str,
    user: str | None = None,
    after: list[str] | None = None,
    step: int = 0,
    totals: dict[str, int] | None = None,
    single: bool = False,
    resume: list[str] | None = None,
    limit: int | None = None,
) -> dict[str, int]:
    """One page of a run of ``task``: its users after ``after``; then the next page, or the run's totals.
    ``single``: this page alone (the replay of a page that failed), of ``limit`` users if given.
    ``resume``: (user, created_at, fact id) where that user's dedup pass stopped, out of time."""
    if task not in SWEEPS:
        raise ValueError(f"no care task {task!r}")
    config = ctx["config"]
    # Half the job's timeout: a page that must stop leaves time for its last fact and the next job. A page
    # still running at 80 % fails here, not in the job's own timeout, so that its last try is recorded
    # and the run goes on.
    deadline = time.monotonic() + config.worker.job_timeout / 2
    size = limit or config.care.batch_users
    cursor = (uuid.UUID(after[0]), uuid.UUID(after[1])) if after else None
    page = await pages.next_page(ctx["pool"], size, cursor, user=user)
    start = None
    if resume and page and str(page[0][1]) == resume[0]:  # the user it stopped in is still there
        start = (datetime.fromisoformat(resume[1]), uuid.UUID(resume[2]))
    stopped: Stopped | None = None
    try:
        async with asyncio.timeout(config.worker.job_timeout * 0.8):
            report, stopped = await handle_page(
                ctx, task, page, datetime.fromisoformat(now), resume=start, deadline=deadline
            )
    except Exception as exc:
        if ctx.get("job_try", 1) < config.worker.max_tries or single:
            raise  # tried again (guarded); a replayed page fails as itself
        # Failed for good: recorded to be replayed alone, and the run goes on with the next page, so one
        # bad page never keeps the users after it from their care.
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        args = {
            "task": task, "run": run, "now": now, "user": user, "after": after, "single": True,
            "resume": resume, "limit": size,
        }  # fmt: skip
        await failures.record(ctx["pool"], Task.CARE_PAGE, args, reason, ctx.get("job_try", 1))
        await queue.count_failure(ctx["redis"], task)
        log.error("%s: a page failed for good and was recorded (%s); the run goes on", task, reason)  # noqa: TRY400
        report = Counter({"pages_failed": 1})
    running = Counter(totals or {})
    running.update(report)
    following: dict[str, Any] | None = None
    job_id = f"{task}:{run}:{step + 1}"
    if stopped is not None:  # out of time in a user's pass: the next job goes on from there
        running["users"] += stopped.index
        before = page[stopped.index - 1] if stopped.index else cursor
        user_id, fact = page[stopped.index][1], stopped.after
        following = {
            "after": [str(before[0]), str(before[1])] if before else None,
            "resume": [str(user_id), fact[0].isoformat(), str(fact[1])],
        }
        if single:  # the rest of the replayed page, and no more; its own id, as other replays run too
            following |= {"single": True, "limit": size - stopped.index}
            job_id = f"{task}:{run}:again:{user_id}:{fact[1]}"
    else:
        running["users"] += len(page)
        if len(page) == size and not single:
            following = {"after": [str(page[-1][0]), str(page[-1][1])]}
    if following is not None:
        await ctx["redis"].enqueue_job(
            Task.CARE_PAGE, task=task, run=run, now=now, user=user, step=step + 1, totals=dict(running),
            _job_id=job_id, **following,
        )  # fmt: skip
    elif single:
        log.info("%s (run %s, one page again): %s", task, run, summary(running))
    else:
        log.info("%s (run %s): %s", task, run, summary(running))
    return dict(report)
