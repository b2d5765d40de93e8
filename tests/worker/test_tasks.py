"""The worker: a real ARQ worker against real Redis and PostgreSQL, run in burst mode."""

from __future__ import annotations

from typing import Any

import asyncpg
from arq.worker import create_worker

from memoire.config import Config
from memory import exchanges
from memory.exchanges import DEFAULT_TENANT_ID
from tests.conftest import make_config
from tests.memory.test_exchanges import exchange
from worker import queue
from worker.queue import INGEST_EXCHANGE
from worker.settings import worker_settings


def config(redis_url: str) -> Config:
    return make_config(redis={"url": redis_url}, database={"pool_min": 1}, worker={"requeue_after": 0})


async def run_burst(cfg: Config, dsn: str) -> Any:
    worker = create_worker(worker_settings(cfg, dsn), burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def test_ingest_job_marks_the_chat_log_received_and_is_idempotent(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str
) -> None:
    cfg = config(redis_url)
    recorded = [exchange("alice"), exchange("bob")]
    async with db.acquire() as conn:
        await exchanges.record(conn, recorded)
    redis = queue.connect(cfg.redis)
    try:
        await queue.enqueue_ingest(redis, [(DEFAULT_TENANT_ID, ex.id) for ex in recorded])
        worker = await run_burst(cfg, pg_dsn)
        assert worker.jobs_complete >= 2
        assert worker.jobs_failed == 0
        rows = await db.fetch("SELECT status, received_at FROM chat_logs")
        assert {r["status"] for r in rows} == {"received"}
        first_seen = {r["received_at"] for r in rows}

        # Its result expired and it is queued again: running it twice changes nothing.
        await redis.flushdb()
        await queue.enqueue_ingest(redis, [(DEFAULT_TENANT_ID, ex.id) for ex in recorded])
        await run_burst(cfg, pg_dsn)
        assert {r["received_at"] for r in await db.fetch("SELECT received_at FROM chat_logs")} == first_seen
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_pending_logs_whose_job_redis_lost_are_queued_again(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str
) -> None:
    lost = exchange("carol")
    async with db.acquire() as conn:
        await exchanges.record(conn, [lost])
    # No job was ever queued (Redis lost it): the sweep at worker start finds the log and queues it.
    await run_burst(config(redis_url), pg_dsn)  # runs the sweep, which queues the job
    await run_burst(config(redis_url), pg_dsn)  # runs the job
    assert await db.fetchval("SELECT status FROM chat_logs WHERE id = $1", lost.id) == "received"


def test_worker_settings_poll_fast_and_register_the_jobs(redis_url: str) -> None:
    settings = worker_settings(config(redis_url), "postgresql://unused")
    assert settings.poll_delay <= 0.1  # type: ignore[attr-defined]
    assert [f.name for f in settings.functions] == [INGEST_EXCHANGE]  # type: ignore[attr-defined]
    assert [c.name for c in settings.cron_jobs] == ["cron:requeue_pending"]  # type: ignore[attr-defined]
    assert settings.queue_name == "memoire:queue"  # type: ignore[attr-defined]
