"""Running the worker's extraction over what the proxy stored, against the scripted extraction LLM."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx

from tests.conftest import eventually, make_config
from tests.support.llm import FakeLLM
from tests.worker.test_tasks import run_burst


async def extract_pending(llm_url: str, redis_url: str, pg_dsn: str, embedder: Any) -> None:
    """One burst of the worker over every queued extraction, with the fake LLM at ``llm_url``."""
    cfg = make_config(
        redis={"url": redis_url},
        database={"pool_min": 1},
        llm={"provider": "openai-compatible", "base_url": llm_url, "model": "fake"},
    )
    await run_burst(cfg, pg_dsn, embedder)


async def conversations_read(
    proxy_url: str,
    calls: list[tuple[str, dict[str, Any]]],
    *,
    llm: FakeLLM,
    llm_url: str,
    redis_url: str,
    pg_dsn: str,
    embedder: Any,
    db: asyncpg.Pool,
) -> list[list[dict[str, str]]]:
    """Make each ``(path, body)`` call through the proxy (each for its own user), extract them all, and
    return the conversation each extraction prompt showed the LLM, sorted by its last turn."""
    async with httpx.AsyncClient(base_url=proxy_url, timeout=30) as http:
        for i, (path, body) in enumerate(calls):
            response = await http.post(path, json=body, headers={"x-memoire-user": f"user-{i}"})
            assert response.status_code == 200, response.text

        async def stored() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM chat_logs") == len(calls))

        await eventually(stored)
    await extract_pending(llm_url, redis_url, pg_dsn, embedder)
    return sorted(
        (json.loads(prompt.split("Conversation (data):\n", 1)[1]) for prompt in llm.prompts()),
        key=lambda turns: str(turns[-1]["content"]),
    )
