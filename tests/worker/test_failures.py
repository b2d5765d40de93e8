"""Jobs that fail: retried with backoff within their timeout, then recorded with the reason, listed by
``memoire jobs failed`` and the admin API, and queued again by ``memoire jobs retry``."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
import redis as redis_sync
from arq.worker import create_worker, func

from memory import failures
from memory.embeddings import LocalEmbedder
from memory.exchanges import DEFAULT_TENANT_ID
from tests.support.config import make_config
from tests.support.jobs import config
from tests.support.keys import ADMIN
from tests.support.servers import ProxyFactory
from worker import queue
from worker.failures import guarded
from worker.settings import worker_settings

pytestmark = pytest.mark.usefixtures("db")
calls: list[int] = []


@guarded("flaky_task", timeout=0.2)  # type: ignore[arg-type]
async def flaky_task(ctx: dict[str, Any], user: str | None = None, hang: bool = False) -> str:
    calls.append(ctx["job_try"])
    if hang:
        await asyncio.sleep(5)
    raise ValueError(f"cannot handle {user}")


async def run_flaky(redis_url: str, pg_dsn: str, embedder: LocalEmbedder, **kwargs: Any) -> None:
    cfg = config(redis_url)  # worker.max_tries = 2, worker.retry_delay = 0.05
    settings = worker_settings(cfg, pg_dsn)
    redis = queue.connect(cfg.redis)
    try:
        await redis.enqueue_job("flaky_task", **kwargs)
    finally:
        await redis.aclose(close_connection_pool=True)
    worker = create_worker(
        settings, functions=[func(flaky_task, name="flaky_task")], cron_jobs=[], burst=True,
        handle_signals=False, poll_delay=0.01,
    )  # fmt: skip
    try:
        await worker.main()
    finally:
        await worker.close()


async def test_a_failing_job_is_retried_then_recorded_and_can_be_replayed(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, embedder: LocalEmbedder
) -> None:
    calls.clear()
    await run_flaky(redis_url, pg_dsn, embedder, user="ana")
    assert calls == [1, 2]  # max_tries = 2: one retry, then recorded
    [row] = await db.fetch("SELECT task, args, reason, tries, retried_at FROM job_failures")
    assert (row["task"], row["args"], row["tries"], row["retried_at"]) == (
        "flaky_task",
        {"user": "ana"},
        2,
        None,
    )
    assert row["reason"] == "ValueError: cannot handle ana"
    counted = redis_sync.Redis.from_url(redis_url)
    assert counted.hget("memoire:metrics:failures", "flaky_task") == b"1"  # what /metrics reports
    counted.close()

    calls.clear()
    await run_flaky(redis_url, pg_dsn, embedder, user="bo", hang=True)
    reasons = [r["reason"] for r in await db.fetch("SELECT reason FROM job_failures ORDER BY failed_at")]
    assert reasons[-1] == "timed out after 0.2 s"

    listed = _jobs(pg_dsn, redis_url, "failed")
    assert "flaky_task" in listed.stdout
    assert "cannot handle ana" in listed.stdout
    failure_id = await db.fetchval("SELECT id FROM job_failures WHERE args->>'user' = 'ana'")
    retried = _jobs(pg_dsn, redis_url, "retry", str(failure_id))
    assert retried.returncode == 0, retried.stderr
    assert f"queued again: {failure_id}" in retried.stdout
    assert await db.fetchval("SELECT retried_at IS NOT NULL FROM job_failures WHERE id = $1", failure_id)
    calls.clear()
    cfg = config(redis_url)
    worker = create_worker(
        worker_settings(cfg, pg_dsn), functions=[func(flaky_task, name="flaky_task")], cron_jobs=[],
        burst=True, handle_signals=False, poll_delay=0.01,
    )  # fmt: skip
    try:
        await worker.main()
    finally:
        await worker.close()
    assert calls == [1, 2]  # it ran again


def _jobs(pg_dsn: str, redis_url: str, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MEMOIRE_DATABASE_URL": pg_dsn, "MEMOIRE_REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "stack", "jobs", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_the_admin_api_runs_tasks_and_shows_and_replays_failures(
    start_proxy: ProxyFactory, db: asyncpg.Pool
) -> None:
    await failures.record(db, "decay_stale_facts", {"user": "ana"}, "TimeoutError: test", 5)
    server = start_proxy(auth={"enabled": True, "admin_key": ADMIN})
    admin = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        queued = await http.post("/v1/admin/jobs/decay_stale_facts", json={"user_id": "ana"})
        assert queued.status_code == 202, queued.text
        assert queued.json()["task"] == "decay_stale_facts"
        assert (await http.post("/v1/admin/jobs/drop_tables", json={})).status_code == 404
        [failed] = (await http.get("/v1/admin/jobs/failed")).json()["failed"]
        assert (failed["task"], failed["reason"], failed["args"]) == (
            "decay_stale_facts",
            "TimeoutError: test",
            {"user": "ana"},
        )
        retried = await http.post(f"/v1/admin/jobs/failed/{failed['id']}/retry")
        assert retried.status_code == 202
        assert (await http.get("/v1/admin/jobs/failed")).json()["failed"] == []
        assert (
            await http.get("/v1/admin/jobs/failed", headers={"authorization": "Bearer nope"})
        ).status_code == 401


async def test_a_care_page_that_fails_for_good_is_recorded_and_the_run_goes_on(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, embedder: LocalEmbedder
) -> None:
    from tests.support.jobs import run_burst

    # Six users in pages of two, each with a fact unused for 400 days. The first page cannot be written:
    # the database refuses one of its facts (as a broken row or a failing constraint would).
    cfg = make_config(
        redis={"url": redis_url}, database={"pool_min": 1}, care={"batch_users": 2},
        worker={"requeue_after": 0, "max_tries": 2, "retry_delay": 0.05},
    )  # fmt: skip
    await db.execute(
        """WITH u AS (
               INSERT INTO users (id, tenant_id, external_id)
               SELECT ('00000000-0000-0000-0000-00000000000' || n)::uuid, $1, 'user-' || n
               FROM generate_series(1, 6) n RETURNING tenant_id, id, external_id)
           INSERT INTO memory_facts (tenant_id, user_id, text, confidence, updated_at)
           SELECT tenant_id, id, 'Old news of ' || external_id, 0.8, now() - interval '400 days' FROM u""",
        DEFAULT_TENANT_ID,
    )
    await db.execute(
        """CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'refused: %', NEW.text; END $$;
           DROP TRIGGER IF EXISTS refuse_poison ON memory_facts;
           CREATE TRIGGER refuse_poison BEFORE UPDATE ON memory_facts FOR EACH ROW
           WHEN (NEW.text = 'Old news of user-1') EXECUTE FUNCTION refuse_poison()"""
    )
    try:
        redis = queue.connect(cfg.redis)
        try:
            await redis.enqueue_job("decay_stale_facts")
        finally:
            await redis.aclose(close_connection_pool=True)
        worker = await run_burst(cfg, pg_dsn, embedder)
        assert worker.jobs_failed == 0  # the page's last try is recorded, not raised
        faded = """SELECT array_agg(u.external_id ORDER BY u.id) FROM memory_facts f
                   JOIN users u ON u.id = f.user_id WHERE f.decay_days > 0"""
        assert await db.fetchval(faded) == ["user-3", "user-4", "user-5", "user-6"]
        [failed] = await db.fetch("SELECT id, task, args, reason, tries FROM job_failures")
        assert (failed["task"], failed["tries"]) == ("care_page", 2)
        assert failed["args"]["task"] == "decay_stale_facts"
        assert failed["args"]["single"] is True
        assert "refused: Old news of user-1" in failed["reason"]
    finally:
        await db.execute("DROP TRIGGER refuse_poison ON memory_facts; DROP FUNCTION refuse_poison()")

    # Repaired, the page is replayed alone: its two users are cared for, the others are not charged twice.
    retried = _jobs(pg_dsn, redis_url, "retry", str(failed["id"]))
    assert retried.returncode == 0, retried.stderr
    replay = await run_burst(cfg, pg_dsn, embedder)
    # The page, and the requeue cron: at startup, and once more if the burst spans its :00 or :30 tick.
    assert replay.jobs_failed == 0
    assert replay.jobs_complete in (2, 3)
    charged = await db.fetch("SELECT decay_days FROM memory_facts")
    assert [r["decay_days"] for r in charged] == [370] * 6
