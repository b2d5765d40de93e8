"""Recall as the proxy asks for it: the query is embedded while the user is looked up."""

from __future__ import annotations

import asyncio

import pytest

from memory import db, embeddings, recall
from memory.facts import NewFact
from memory.service import Memory
from tests.support.config import make_config
from tests.support.llm import FakeLLM


@pytest.mark.usefixtures("db")
async def test_a_slow_embedder_holds_no_database_connection(pg_dsn: str, llm: FakeLLM, llm_url: str) -> None:
    config = make_config(
        embeddings={"provider": "openai", "base_url": llm_url, "model": "fake-embed"},
        database={"pool_min": 1, "pool_max": 1},
    )
    pool = await db.create_pool(config.database, pg_dsn, stateless=True)
    memory = Memory(config, pool, lambda: embeddings.create(config))
    await memory.start(None)
    try:
        tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE name = 'default'")
        await memory.remember(tenant_id, "ana", [NewFact(text="Plays the cello in an orchestra")])
        llm.embed_delay = 0.8
        query = recall.Query(text="Who plays the cello?", limit=5)
        asking = asyncio.create_task(memory.recall_for_call(tenant_id, "ana", query))
        await asyncio.sleep(0.3)  # the user is found; the embedding is still on its way
        assert not asking.done()
        async with asyncio.timeout(0.4):  # the pool's one connection is free meanwhile
            assert await pool.fetchval("SELECT 1") == 1
        found = await asking
        assert [fact.text for fact in found.facts or []] == ["Plays the cello in an orchestra"]
        assert found.degraded == []
        assert found.embed_ms >= 700
    finally:
        await memory.close()
        await db.close_pool(pool)
