"""``memoire jobs run TASK``: run a worker task now, in this process, over every row it applies to.

``extract_facts`` walks the pending chat logs (oldest first, in keyset pages, optionally one user's) and
extracts each, exactly as the worker would; ``--retry-failed`` puts failed logs back to pending first, so
they are replayed. It needs no running worker or Redis, only the database and the extraction LLM.

``reembed_facts`` embeds again, with the configured model, every fact embedded by another (after a change
of embedding model or dimension).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

from memory import db, embeddings, failures, reembed
from memory.care import pages
from memory.config import Config
from memory.errors import MemoireError
from memory.extraction import job, llm
from memory.queue import BY_HAND, SWEEPS, Task
from memory.service import Memory
from worker import sweeps
from worker.queue import ArqQueue

PAGE = 200

_PAGE = """
SELECT l.tenant_id, l.id, l.created_at
FROM chat_logs l JOIN users u ON u.tenant_id = l.tenant_id AND u.id = l.user_id
WHERE l.status = 'pending' AND ($1::text IS NULL OR u.external_id = $1)
  AND ($2::timestamptz IS NULL OR (l.created_at, l.id) > ($2, $3::uuid))
ORDER BY l.created_at, l.id LIMIT $4
"""


async def run_extract(config: Config, dsn: str, *, user: str | None, retry_failed: bool) -> Counter[str]:
    extractor = llm.create(config.llm)
    if extractor is None:
        raise MemoireError("no extraction LLM configured: set MEMOIRE_LLM_PROVIDER (and its key and model)")
    pool = await db.create_pool(config.database, dsn)
    memory = Memory(config, pool, lambda: embeddings.create(config))
    outcomes: Counter[str] = Counter()
    try:
        await memory.start(wait=None)
        if retry_failed:
            async with db.transaction(pool) as conn:
                await conn.execute(
                    """UPDATE chat_logs l SET status = 'pending', error = NULL FROM users u
                       WHERE l.status = 'failed' AND u.tenant_id = l.tenant_id AND u.id = l.user_id
                         AND ($1::text IS NULL OR u.external_id = $1)""",
                    user,
                )
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            async with db.connection(pool) as conn:
                rows = await conn.fetch(
                    _PAGE, user, after[0] if after else None, after[1] if after else None, PAGE
                )
            if not rows:
                break
            for row in rows:
                outcome = await job.process(
                    memory,
                    extractor,
                    row["tenant_id"],
                    row["id"],
                    max_attempts=config.llm.max_attempts,
                    max_errors=1,  # run by hand: a log that errors is failed now, to be seen and replayed
                )
                outcomes[outcome] += 1
            after = (rows[-1]["created_at"], rows[-1]["id"])
    finally:
        await memory.close()
        await extractor.close()
        await db.close_pool(pool)
    return outcomes


async def run_reembed(config: Config, dsn: str, *, user: str | None) -> Counter[str]:
    pool = await db.create_pool(config.database, dsn)
    memory = Memory(config, pool, lambda: embeddings.create(config))
    outcomes: Counter[str] = Counter()
    try:
        await memory.start(wait=None)
        async for count in reembed.reembed(memory, user=user):
            outcomes["re-embedded"] += count
    finally:
        await memory.close()
        await db.close_pool(pool)
    return outcomes


async def run_sweep(config: Config, dsn: str, task: Task, *, user: str | None) -> Counter[str]:
    """A care task (see :data:`memory.queue.SWEEPS`) over every user (or those named ``user``), now, in
    this process: the worker's page handling, without its per-page timeout. Consolidate's summaries need
    the LLM (skipped without one)."""
    pool = await db.create_pool(config.database, dsn)
    summarizer = llm.create(config.llm) if task == Task.CONSOLIDATE_USER_MEMORY else None
    ctx = {"pool": pool, "config": config, "llm": summarizer}
    now = datetime.now(UTC)
    try:

        async def handle(page: list[pages.UserKey]) -> Counter[str]:
            report, _ = await sweeps.handle_page(ctx, task, page, now)  # no deadline: runs to the end
            return report

        return await pages.sweep(pool, config.care.batch_users, handle, user=user)
    finally:
        if summarizer is not None:
            await summarizer.close()
        await db.close_pool(pool)


def run(config: Config, dsn: str, task: str, *, user: str | None, retry_failed: bool) -> Counter[str]:
    if task == Task.EXTRACT_FACTS:
        return asyncio.run(run_extract(config, dsn, user=user, retry_failed=retry_failed))
    if task == Task.REEMBED_FACTS:
        return asyncio.run(run_reembed(config, dsn, user=user))
    if task in SWEEPS:
        return asyncio.run(run_sweep(config, dsn, Task(task), user=user))
    raise MemoireError(f"unknown task {task!r}; tasks: {', '.join(BY_HAND)}")


def show_failed(config: Config, dsn: str) -> int:
    """Print the failed jobs, newest first."""

    async def fetch() -> list[failures.FailedJob]:
        pool = await db.create_pool(config.database, dsn)
        try:
            async with db.connection(pool) as conn:
                return await failures.listing(conn)
        finally:
            await db.close_pool(pool)

    failed = asyncio.run(fetch())
    for failure in failed:
        print(
            f"{failure.id}  {failure.task}  {failure.failed_at:%Y-%m-%d %H:%M:%S}  {failure.tries} tries"
            f"  {failure.reason}"
        )
    if not failed:
        print("no failed jobs")
    return 0


def retry_failed(config: Config, dsn: str, failure_id: str | None) -> int:
    """Queue failed jobs again (one by id, or all) for the worker."""
    try:
        wanted = uuid.UUID(failure_id) if failure_id else None
    except ValueError:
        print(f"memoire: {failure_id!r} is not a failed job's id (see `memoire jobs failed`)")
        return 2

    async def run() -> list[failures.FailedJob]:
        pool = await db.create_pool(config.database, dsn)
        jobs = ArqQueue.connect(config.redis)
        try:
            return await failures.retry(pool, jobs, wanted)
        finally:
            await jobs.aclose()
            await db.close_pool(pool)

    queued = asyncio.run(run())
    for failure in queued:
        print(f"queued again: {failure.id}  {failure.task}")
    if failure_id and not queued:
        print(f"memoire: no failed job {failure_id}")
        return 1
    return 0
