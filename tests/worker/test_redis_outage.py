"""The worker rides out a Redis outage: it stays up, connects again once Redis is back, and works on; the
API shows in ``/readyz`` and ``/metrics`` whether a worker runs."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory.exchanges import DEFAULT_TENANT_ID
from tests.support.db import fetch_sync
from tests.support.servers import ProxyFactory
from tests.support.services import StoppableRedis
from tests.support.waiting import wait_until
from tests.support.worker_process import enqueue, start_worker

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def private_redis() -> Iterator[StoppableRedis]:
    server = StoppableRedis().start()
    yield server
    server.stop()


def worker_state(url: str) -> tuple[str, str]:
    """What ``/readyz`` says of the worker, and the ``memoire_worker_up`` line of ``/metrics``."""
    ready = httpx.get(f"{url}/readyz", timeout=5).json()["worker"]
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    up = next((line for line in metrics.splitlines() if line.startswith("memoire_worker_up ")), "absent")
    return ready, up


@pytest.mark.timeout(120)
def test_the_worker_stays_up_through_a_redis_outage_and_works_after_it(
    pg_dsn: str, private_redis: StoppableRedis, start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    api = start_proxy(redis={"url": private_redis.url})
    assert worker_state(api.url) == ("not running", "memoire_worker_up 0.0")

    log = tmp_path / "worker.log"
    worker = start_worker(pg_dsn, private_redis.url, log)
    try:
        wait_until(lambda: worker_state(api.url)[0] == "ok" or worker.poll() is not None, timeout=60)
        assert worker.poll() is None, log.read_text()
        assert worker_state(api.url) == ("ok", "memoire_worker_up 1.0")

        private_redis.stop()
        time.sleep(4)  # arq's own worker had exited within a second
        assert worker.poll() is None, log.read_text()
        assert worker_state(api.url) == ("unknown", "absent")  # Redis cannot say

        private_redis.start()  # the same port
        fetch_sync(
            pg_dsn,
            """WITH u AS (INSERT INTO users (tenant_id, external_id) VALUES ($1, 'after-outage')
                          RETURNING tenant_id, id)
               INSERT INTO memory_facts (tenant_id, user_id, text, confidence, updated_at)
               SELECT tenant_id, id, 'Likes old things', 0.8, now() - interval '400 days' FROM u""",
            DEFAULT_TENANT_ID,
        )
        asyncio.run(enqueue(private_redis.url, "decay_stale_facts", "decay-after-outage"))
        # Connected again (within its backoff, at most 10 s), it runs the job.
        wait_until(
            lambda: fetch_sync(pg_dsn, "SELECT count(*) AS n FROM memory_facts WHERE decay_days > 0")[0]["n"],
            timeout=30,
        )
        wait_until(lambda: worker_state(api.url)[0] == "ok", timeout=15)
        assert "Redis is unreachable" in log.read_text()

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
