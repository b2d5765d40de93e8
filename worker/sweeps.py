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
- a page that fails for good is recorded, to be replayed alone, and the run goes on with the next page.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from memory.care import consolidate, decay, dedup, optimize, pages, supersession
from memory.care.pages import UserKey
from worker import failures, queue
from worker.failures import guarded

log = logging.getLogger(__name__)

#: The job that handles one page of a sweep.
PAGE_JOB = "care_page"
SWEEPS = frozenset(
    {
        "optimize_memory",
        "decay_stale_facts",
        "consolidate_user_memory",
        "run_deduplication",
        "run_supersession",
    }
)


def summary(report: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(report.items())) or "nothing to do"


async def start(ctx: dict[str, Any], task: str, user: str | None = None) -> str:
    """Queue the first page of a run of ``task`` (over the users named ``user``, or all); returns the run."""
    now = datetime.now(UTC)
    run = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    await ctx["redis"].enqueue_job(
        PAGE_JOB, task=task, run=run, now=now.isoformat(), user=user, _job_id=f"{task}:{run}:0"
    )
    return run


async def handle_page(ctx: dict[str, Any], task: str, page: list[UserKey], now: datetime) -> Counter[str]:
    """Do ``task`` for one page of users (``ctx``: the pool, the config and, for consolidate, the LLM)."""
    pool, config = ctx["pool"], ctx["config"]
    if task == "decay_stale_facts":
        return await decay.decay_page(pool, config.care, page, now)
    if task == "optimize_memory":
        return await optimize.optimize_page(pool, config.care, page, now)
    report: Counter[str] = Counter()
    similar, large = config.memory.dedup_similarity, config.memory.hnsw_threshold
    for tenant_id, user_id in page:
        if task == "consolidate_user_memory":
            report.update(
                await consolidate.consolidate_user(pool, ctx.get("llm"), tenant_id, user_id, similar, large)
            )
        elif task == "run_deduplication":
            report.update(
                await dedup.deduplicate_user(pool, tenant_id, user_id, similar, hnsw_threshold=large)
            )
        elif task == "run_supersession":
            report.update(await supersession.supersede_user(pool, tenant_id, user_id))
    return report


@guarded(PAGE_JOB, "job_timeout", named_by="task")
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
) -> dict[str, int]:
    """One page of a run of ``task``: its users after ``after``; then the next page, or the run's totals.
    ``single``: this page alone (the replay of a page that failed)."""
    if task not in SWEEPS:
        raise ValueError(f"no care task {task!r}")
    size = ctx["config"].care.batch_users
    cursor = (uuid.UUID(after[0]), uuid.UUID(after[1])) if after else None
    page = await pages.next_page(ctx["pool"], size, cursor, user=user)
    try:
        report = await handle_page(ctx, task, page, datetime.fromisoformat(now))
    except Exception as exc:
        if ctx.get("job_try", 1) < ctx["config"].worker.max_tries or single:
            raise  # tried again (guarded); a replayed page fails as itself
        # Failed for good: recorded to be replayed alone, and the run goes on with the next page, so one
        # bad page never keeps the users after it from their care.
        reason = f"{type(exc).__name__}: {exc}"
        args = {"task": task, "run": run, "now": now, "user": user, "after": after, "single": True}
        await failures.record(ctx["pool"], PAGE_JOB, args, reason, ctx.get("job_try", 1))
        await queue.count_failure(ctx["redis"], task)
        log.error("%s: a page failed for good and was recorded (%s); the run goes on", task, reason)  # noqa: TRY400
        report = Counter({"pages_failed": 1})
    running = Counter(totals or {})
    running.update(report)
    running["users"] += len(page)
    if single:
        log.info("%s (run %s, one page again): %s", task, run, summary(report))
    elif len(page) == size:
        await ctx["redis"].enqueue_job(
            PAGE_JOB, task=task, run=run, now=now, user=user, after=[str(page[-1][0]), str(page[-1][1])],
            step=step + 1, totals=dict(running), _job_id=f"{task}:{run}:{step + 1}",
        )  # fmt: skip
    else:
        log.info("%s (run %s): %s", task, run, summary(running))
    return dict(report)
