"""A worker killed (SIGKILL) in the middle of a care task, then started again: the interrupted job runs
again and completes, and the end state is that of an uninterrupted run, with nothing duplicated or lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from memory.exchanges import DEFAULT_TENANT_ID
from tests.support import worker_process
from tests.support.db import fetch_sync

pytestmark = pytest.mark.usefixtures("db")

USERS = 3000
#: The confidence of a fact unused for 400 days: 370 days past the grace, over four half-lives of 90 days.
DECAYED = round(0.8 * 0.5 ** (370 / 90), 4)


def start_worker(pg_dsn: str, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    return worker_process.start_worker(
        pg_dsn,
        redis_url,
        log,
        MEMOIRE_CARE_BATCH_USERS="3",  # many short transactions: a kill lands between two of them
        # A job of a killed worker runs again once its lease (its timeout and 10 s) has expired.
        MEMOIRE_WORKER_JOB_TIMEOUT="3",
    )


def decayed(pg_dsn: str) -> int:
    return int(fetch_sync(pg_dsn, "SELECT count(*) AS n FROM memory_facts WHERE decay_days > 0")[0]["n"])


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_task_leaves_the_state_of_an_uninterrupted_run(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    fetch_sync(
        pg_dsn,
        """WITH u AS (
               INSERT INTO users (tenant_id, external_id)
               SELECT $1, 'user-' || n FROM generate_series(1, $2) n RETURNING tenant_id, id
           )
           INSERT INTO memory_facts (tenant_id, user_id, text, confidence, updated_at)
           SELECT tenant_id, id, 'Likes old things', 0.8, now() - interval '400 days' FROM u""",
        DEFAULT_TENANT_ID,
        USERS,
    )
    asyncio.run(worker_process.enqueue(redis_url, "decay_stale_facts", "decay-crash-test"))

    log = tmp_path / "worker.log"
    first = start_worker(pg_dsn, redis_url, log)
    try:
        deadline = time.monotonic() + 60
        while decayed(pg_dsn) < 30 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    done_before = decayed(pg_dsn)
    assert 0 < done_before < USERS, log.read_text()

    second = start_worker(pg_dsn, redis_url, log)
    try:
        deadline = time.monotonic() + 90
        while decayed(pg_dsn) < USERS and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)

    rows = fetch_sync(
        pg_dsn,
        """SELECT count(*) AS facts, count(DISTINCT user_id) AS users, min(confidence) AS low,
                  max(confidence) AS high, bool_and(status = 'archived') AS archived,
                  bool_and(decay_days = 370) AS charged_once
           FROM memory_facts""",
    )[0]
    assert rows["facts"] == USERS, log.read_text()
    assert rows["users"] == USERS
    assert round(float(rows["low"]), 4) == round(float(rows["high"]), 4) == DECAYED
    assert rows["archived"]
    assert rows["charged_once"]
