"""``POST /v1/ingest``: an app's own exchange goes through the tee's pipeline, timestamps honoured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from memory.embeddings import LocalEmbedder
from tests.support.config import make_config
from tests.support.jobs import run_burst
from tests.support.llm import FakeLLM
from tests.support.servers import ServerThread
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
async def client(proxy: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        yield http


BACKDATED = {
    "user_id": "nina",
    "session_id": "support-42",
    "messages": [
        {"role": "user", "content": "I moved to Lyon last week", "timestamp": "2024-03-10T09:00:00Z"},
        {"role": "assistant", "content": "Bienvenue!", "timestamp": "2024-03-10T09:00:05Z"},
    ],
    "metadata": {"channel": "email"},
    "idempotency_key": "ticket-42-msg-1",
}


async def test_an_ingested_backdated_exchange_yields_facts_dated_when_it_happened(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    llm: FakeLLM,
    llm_url: str,
    redis_url: str,
    pg_dsn: str,
    embedder: LocalEmbedder,
) -> None:
    llm.on("moved to Lyon", {"facts": [{"text": "Lives in Lyon", "slot": "home_city", "value": "Lyon"}]})
    response = await client.post("/v1/ingest", json=BACKDATED)
    assert response.status_code == 202
    assert response.headers["x-memoire-status"] == "ok"
    exchange_id = response.json()["id"]
    # Sent again (a retry): the same id, and still one chat log.
    assert (await client.post("/v1/ingest", json=BACKDATED)).json()["id"] == exchange_id

    async def stored() -> Any:
        return await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", exchange_id)

    log = await eventually(stored)
    assert log["source"] == "api"
    assert log["occurred_at"].isoformat() == "2024-03-10T09:00:05+00:00"
    assert log["metadata"] == {"channel": "email"}
    assert [m["role"] for m in log["messages"]] == ["user", "assistant"]

    cfg = make_config(
        redis={"url": redis_url},
        database={"pool_min": 1},
        llm={"provider": "openai-compatible", "base_url": llm_url, "model": "fake"},
    )
    await run_burst(cfg, pg_dsn, embedder)
    assert await db.fetchval("SELECT count(*) FROM chat_logs") == 1
    fact = await db.fetchrow("SELECT * FROM memory_facts")
    assert fact["text"] == "Lives in Lyon"
    assert fact["observed_at"].isoformat() == "2024-03-10T09:00:05+00:00"
    assert "Conversation date: 2024-03-10" in llm.prompts()[-1]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "user_id"),
        ({"user_id": "x", "messages": []}, "messages"),
        ({"user_id": "x", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"user_id": "x", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"user_id": "x", "messages": [{"role": "user", "content": "a", "timestamp": "yesterday"}]},
         "messages[0].timestamp"),
    ],
)  # fmt: skip
async def test_bad_ingest_names_the_field_and_stores_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, Any], param: str
) -> None:
    response = await client.post("/v1/ingest", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await db.fetchval("SELECT count(*) FROM chat_logs") == 0


async def test_malformed_json_is_a_clear_400(client: httpx.AsyncClient) -> None:
    for path in ("/v1/ingest", "/v1/facts", "/v1/recall"):
        response = await client.post(path, content=b'{"user_id": "x",')
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"
