"""``memoire worker`` as its own process, and a job queued for it, for the tests that stop or kill it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from memory.config import RedisConfig
from tests.support.config import MODEL_DIR
from worker.queue import connect


def start_worker(pg_dsn: str, redis_url: str, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    """``memoire worker`` on the test database and ``redis_url``; ``settings`` are more environment
    variables (``MEMOIRE_…``). Its output goes to ``log``."""
    env = {
        **os.environ,
        "MEMOIRE_DATABASE_URL": pg_dsn,
        "MEMOIRE_REDIS_URL": redis_url,
        "MEMOIRE_EMBEDDINGS_MODEL_DIR": str(MODEL_DIR),
        "MEMOIRE_WORKER_POLL_DELAY": "0.05",
        **settings,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stack", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def enqueue(redis_url: str, task: str, job_id: str) -> None:
    redis = connect(RedisConfig(url=redis_url))
    try:
        await redis.enqueue_job(task, _job_id=job_id)
    finally:
        await redis.aclose(close_connection_pool=True)
