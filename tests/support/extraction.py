"""Running the worker's extraction over what the proxy stored, against the scripted extraction LLM."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from tests.support.config import make_config
from tests.support.jobs import run_burst
from tests.support.llm import FakeLLM
from tests.support.waiting import eventually


async def extract_pending(llm_url: str, redis_url: str, pg_dsn: str, embedder: Any) -> None:
    """One burst of the worker over every queued extraction, with the fake LLM at ``llm_url``."""
    cfg = make_config(
        redis={"url": redis_url},
        database={"pool_min": 1},
        llm={"provider": "openai-compatible", "base_url": llm_url, "model": "fake"},
    )
    await run_burst(cfg, pg_dsn, embedder)


#: A call's body, or a function of the previous call's JSON answer that gives it (for a continuation).
Body = dict[str, Any] | Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class Extracted:
    """What extraction made of one user's exchanges."""

    conversations: list[list[dict[str, str]]]
    """The conversation each extraction prompt showed the LLM, in order."""
    facts: list[tuple[str, str | None, str | None, str]]
    """The user's facts as ``(text, slot, value, status)``, sorted."""


async def extracted(
    proxy_url: str,
    user: str,
    calls: list[tuple[str, Body]],
    *,
    headers: dict[str, str],
    llm: FakeLLM,
    llm_url: str,
    redis_url: str,
    pg_dsn: str,
    embedder: Any,
    db: asyncpg.Pool,
) -> Extracted:
    """Make ``calls`` in order through the proxy for ``user``, one ``(path, body)`` at a time, then run the
    worker over them: the conversations the LLM was shown and the facts the user was left with."""
    seen = len(llm.prompts())
    async with httpx.AsyncClient(base_url=proxy_url, timeout=30) as http:
        answer: Any = None
        for path, body in calls:
            sent = body(answer) if callable(body) else body
            response = await http.post(path, json=sent, headers={"x-memoire-user": user, **headers})
            assert response.status_code == 200, response.text
            json_answer = response.headers["content-type"].startswith("application/json")
            answer = response.json() if json_answer else None

        async def stored() -> bool:
            count = await db.fetchval(
                "SELECT count(*) FROM chat_logs c JOIN users u ON (u.tenant_id, u.id) = (c.tenant_id,"
                " c.user_id) WHERE u.external_id = $1",
                user,
            )
            return bool(count == len(calls))

        await eventually(stored)
    await extract_pending(llm_url, redis_url, pg_dsn, embedder)
    rows = await db.fetch(
        "SELECT f.text, f.slot, f.value, f.status FROM memory_facts f JOIN users u"
        " ON (u.tenant_id, u.id) = (f.tenant_id, f.user_id) WHERE u.external_id = $1",
        user,
    )
    return Extracted(
        [json.loads(p.split("Conversation (data):\n", 1)[1]) for p in llm.prompts()[seen:]],
        sorted((r["text"], r["slot"], r["value"], r["status"]) for r in rows),
    )
