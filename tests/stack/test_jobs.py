"""``memoire jobs run extract_facts``: pending exchanges extracted on demand, with no worker running."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import asyncpg
import httpx

from memory import exchanges
from tests.support.config import MODEL_DIR
from tests.support.jobs import said
from tests.support.llm import FakeLLM
from tests.support.servers import ProxyFactory


def run_jobs(
    pg_dsn: str, llm_url: str, *args: str, task: str = "extract_facts"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEMOIRE_DATABASE_URL": pg_dsn,
        "MEMOIRE_LLM_PROVIDER": "openai-compatible",
        "MEMOIRE_LLM_BASE_URL": llm_url,
        "MEMOIRE_LLM_MODEL": "fake",
        "MEMOIRE_EMBEDDINGS_MODEL_DIR": str(MODEL_DIR),
    }
    return subprocess.run(
        [sys.executable, "-m", "stack", "jobs", "run", task, *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_pending_exchanges_are_extracted_on_demand_and_failed_ones_replayed(
    db: asyncpg.Pool, pg_dsn: str, llm: FakeLLM, llm_url: str
) -> None:
    llm.on("Kyoto", {"facts": [{"text": "Lives in Kyoto", "slot": "home_city", "value": "Kyoto"}]})
    llm.on("cellist", "garbage", "garbage", "garbage")
    waiting = [said("oli", "I live in Kyoto"), said("pia", "I am a cellist")]
    async with db.acquire() as conn:
        await exchanges.record(conn, waiting)

    result = run_jobs(pg_dsn, llm_url)
    assert result.returncode == 3, result.stderr  # one log failed
    assert result.stdout.strip().splitlines()[-1] == "extract_facts: 1 extracted, 1 failed"
    assert await db.fetchval("SELECT text FROM memory_facts") == "Lives in Kyoto"

    # The model does better now: --retry-failed replays the failed log, and only it.
    llm.reset()
    llm.on("cellist", {"facts": [{"text": "Is a cellist", "slot": "job_title", "value": "cellist"}]})
    result = run_jobs(pg_dsn, llm_url, "--retry-failed", "--user", "pia")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "extract_facts: 1 extracted"
    statuses = await db.fetch("SELECT status FROM chat_logs")
    assert {r["status"] for r in statuses} == {"extracted"}
    assert len(llm.requests) == 1


def test_without_an_llm_the_command_says_what_to_set(pg_dsn: str) -> None:
    env = {**os.environ, "MEMOIRE_DATABASE_URL": pg_dsn, "MEMOIRE_LLM_PROVIDER": "none"}
    result = subprocess.run(
        [sys.executable, "-m", "stack", "jobs", "run", "extract_facts"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "MEMOIRE_LLM_PROVIDER" in result.stderr


def test_reembed_facts_brings_another_models_facts_back_to_search_by_meaning(
    start_proxy: ProxyFactory, pg_dsn: str, llm_url: str
) -> None:
    remote = start_proxy(embeddings={"provider": "openai", "base_url": llm_url, "model": "fake-embed"})
    local = start_proxy()
    with (
        httpx.Client(base_url=remote.url, timeout=30) as a,
        httpx.Client(base_url=local.url, timeout=30) as b,
    ):
        added = a.post("/v1/facts", json={"user_id": "rae", "facts": [{"text": "Plays the cello"}]})
        assert added.status_code == 200

        def by_meaning() -> list[dict[str, Any]]:
            body = {"user_id": "rae", "query": "string instrument music"}
            facts: list[dict[str, Any]] = b.post("/v1/recall", json=body).json()["facts"]
            return facts

        assert by_meaning() == []  # the local model cannot compare the remote model's vector
        first = run_jobs(pg_dsn, llm_url, "--user", "rae", task="reembed_facts")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip().splitlines()[-1] == "reembed_facts: 1 re-embedded"
        [fact] = by_meaning()
        assert fact["embedding_model"] == "all-MiniLM-L6-v2"
        again = run_jobs(pg_dsn, llm_url, task="reembed_facts")
        assert again.stdout.strip().splitlines()[-1] == "reembed_facts: nothing to do"


async def test_decay_runs_on_demand_and_reports_what_it_changed(
    db: asyncpg.Pool, pg_dsn: str, llm_url: str
) -> None:
    async with db.acquire() as conn:
        await exchanges.record(conn, [said("old", "hello")])
        await conn.execute(
            """INSERT INTO memory_facts (tenant_id, user_id, text, confidence, updated_at)
               SELECT tenant_id, id, 'Likes old things', 0.8, now() - interval '400 days' FROM users"""
        )
    first = run_jobs(pg_dsn, llm_url, task="decay_stale_facts")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "decay_stale_facts: 1 archived, 1 users"
    again = run_jobs(pg_dsn, llm_url, task="decay_stale_facts")
    assert again.stdout.strip() == "decay_stale_facts: 1 users"


async def test_deduplication_and_supersession_run_on_demand_over_every_user(
    db: asyncpg.Pool, pg_dsn: str, llm_url: str, embedder: Any
) -> None:
    from tests.support.facts import insert_facts

    await insert_facts(db, embedder, "ana", {"text": "Likes jazz"}, {"text": "Likes jazz"})
    await insert_facts(
        db, embedder, "bo",
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
        {"text": "Works at Apple", "slot": "employer", "value": "Apple"},
    )  # fmt: skip
    dedup = run_jobs(pg_dsn, llm_url, task="run_deduplication")
    assert dedup.stdout.strip() == "run_deduplication: 1 merged, 2 users", dedup.stderr
    supersede = run_jobs(pg_dsn, llm_url, task="run_supersession")
    assert supersede.stdout.strip() == "run_supersession: 1 superseded, 2 users", supersede.stderr
    assert run_jobs(pg_dsn, llm_url, task="run_supersession").stdout.strip() == "run_supersession: 2 users"
