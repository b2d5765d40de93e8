"""Ingest: how fast ``POST /v1/ingest`` accepts an exchange (it answers once the exchange is in the spool on
disk), and how fast the worker turns exchanges into stored facts when the extraction LLM answers at once
(what is left is ours: embedding, the write path's dedup and supersession, and the chained care steps)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

import asyncpg

from bench.perf import corpus
from bench.perf.loadgen import Target, closed_loop
from bench.perf.stack import PerfStack, free_port, wait_http
from bench.perf.stats import summary

USERS = 200


def target(stack: PerfStack, count: int) -> Target:
    rng = random.Random(21)
    said = corpus.fact_pool(2000, seed=21)
    bodies: list[dict[str, object]] = [
        {
            "user_id": f"ingest-{rng.randint(1, USERS)}",
            "messages": [
                {"role": "user", "content": f"{rng.choice(said)}. {rng.choice(said)}, by the way."},
                {"role": "assistant", "content": "Thanks, I will keep that in mind."},
            ],
        }
        for _ in range(count)
    ]
    return Target(f"{stack.memoire}/v1/ingest", bodies, {"authorization": f"Bearer {stack.key}"})


async def acceptance(stack: PerfStack, levels: list[int], duration: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for level in levels:
        started = time.monotonic()
        samples = await closed_loop(target(stack, 5000), level, duration=duration)
        elapsed = time.monotonic() - started
        stack.ingested += sum(s.status == 202 for s in samples)
        report[str(level)] = {
            **summary([s.latency for s in samples]),
            "errors": sum(s.status != 202 for s in samples),
            "exchanges_per_s": round(sum(s.status == 202 for s in samples) / elapsed, 1),
        }
    return report


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def worker_throughput(stack: PerfStack, seconds: float) -> dict[str, Any]:
    """Start a worker on the exchanges ingested so far (once all are in PostgreSQL); count what it does in
    ``seconds`` (or until it is done)."""
    deadline = time.monotonic() + 60
    while await _count(stack.dsn, "SELECT count(*) FROM chat_logs") < stack.ingested:
        if time.monotonic() > deadline:
            raise RuntimeError("the spool did not reach PostgreSQL within 60 s")
        await asyncio.sleep(0.2)
    port = free_port()
    llm = stack.spawn(
        "extractor", [sys.executable, "-m", "bench.perf.upstream", "--port", str(port), "--extract"]
    )
    wait_http(f"http://127.0.0.1:{port}/health", 10, llm)
    env = {
        **stack.memoire_env(),
        "MEMOIRE_LLM_PROVIDER": "openai-compatible",
        "MEMOIRE_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "MEMOIRE_LLM_MODEL": "fake-extractor",
    }
    pending = "SELECT count(*) FROM chat_logs WHERE status = 'pending'"
    facts_sql = "SELECT count(*) FROM memory_facts"
    worker = stack.spawn("worker", [sys.executable, "-m", "stack", "worker"], env)
    try:
        # The clock starts once the worker has stored its first exchange (the embedder has loaded).
        first = await _count(stack.dsn, pending)
        while (before := await _count(stack.dsn, pending)) == first:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode})")
            await asyncio.sleep(0.05)
        facts_before = await _count(stack.dsn, facts_sql)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if await _count(stack.dsn, pending) == 0:
                break
            await asyncio.sleep(0.25)
        elapsed = time.monotonic() - started
        done = before - await _count(stack.dsn, pending)
        facts = await _count(stack.dsn, facts_sql) - facts_before
    finally:
        worker.terminate()
        worker.wait(30)
    return {
        "seconds": round(elapsed, 1),
        "exchanges": done,
        "exchanges_per_s": round(done / elapsed, 1),
        "facts_written": facts,
        "facts_per_s": round(facts / elapsed, 1),
        "ms_per_fact": round(elapsed * 1000 / facts, 2) if facts else None,
        "worker_jobs_at_once": 16,
    }
