"""``GET /metrics``: request, upstream and recall latency, queue depth and extraction outcomes."""

from __future__ import annotations

import re

import asyncpg
import httpx
import pytest

from memory.embeddings import LocalEmbedder
from tests.support.jobs import config, run_burst
from tests.support.llm import FakeLLM
from tests.support.servers import ServerThread
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("db")


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus's text format (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return 0.0


async def test_metrics_show_latency_queue_depth_and_extraction_outcomes(
    proxy: ServerThread, db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str,
    embedder: LocalEmbedder,
) -> None:  # fmt: skip
    llm.on("Denver", {"facts": [{"text": "Lives in Denver", "slot": "home_city", "value": "Denver"}]})
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        before = (await http.get("/metrics")).text
        await http.post("/v1/facts", json={"user_id": "ana", "facts": [{"text": "Likes jazz"}]})
        for text in ("I moved to Denver", "Any jazz tonight?"):
            reply = await http.post(
                "/v1/chat/completions",
                json={"model": "fake-chat", "user": "ana", "messages": [{"role": "user", "content": text}]},
            )
            assert reply.status_code == 200

        async def queued() -> bool:
            return await db.fetchval("SELECT count(*) FROM chat_logs") == 2

        await eventually(queued)
        waiting = (await http.get("/metrics")).text
        await run_burst(config(redis_url, llm_url), pg_dsn, embedder)
        scraped = await http.get("/metrics")
        after = scraped.text

    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    requests = "memoire_http_request_duration_seconds_count"
    chat = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    assert sample(after, requests, **chat) - sample(before, requests, **chat) == 2
    facts = {"method": "POST", "route": "/v1/facts", "status": "200"}
    assert sample(after, requests, **facts) - sample(before, requests, **facts) == 1
    upstream = "memoire_upstream_duration_seconds_count"
    assert sample(after, upstream, status="200") - sample(before, upstream, status="200") == 2
    recalls = "memoire_recall_duration_seconds_count"
    assert sample(after, recalls, outcome="ok") - sample(before, recalls, outcome="ok") == 2
    assert sample(waiting, "memoire_queue_depth", queue="redis") == 2
    assert sample(after, "memoire_queue_depth", queue="redis") == 0
    assert sample(after, "memoire_queue_depth", queue="spool") == 0
    # A job extracts its user's earlier pending exchanges first, so the second job may find its own done.
    extracted = sample(after, "memoire_extractions_total", outcome="extracted")
    assert extracted >= 1
    assert extracted + sample(after, "memoire_extractions_total", outcome="already-extracted") == 2
    assert sample(after, "memoire_job_failures_total", task="decay_stale_facts") == 0


async def test_metrics_show_jobs_failed_for_good(proxy: ServerThread, redis_url: str) -> None:
    from memory.config import RedisConfig
    from worker import queue

    redis = queue.connect(RedisConfig(url=redis_url))
    try:
        await queue.count_failure(redis, "decay_stale_facts")  # as a worker does after the last try
    finally:
        await redis.aclose(close_connection_pool=True)
    async with httpx.AsyncClient(base_url=proxy.url) as http:
        scraped = (await http.get("/metrics")).text
    assert sample(scraped, "memoire_job_failures_total", task="decay_stale_facts") == 1
