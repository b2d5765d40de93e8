"""The facts API as a test client, and facts inserted straight into the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from memory import users
from memory.embeddings import LocalEmbedder
from memory.exchanges import DEFAULT_TENANT_ID
from tests.support.servers import ServerThread


class Api:
    def __init__(self, server: ServerThread) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=30)

    def facts(self, user: str, *facts: dict[str, Any], status: int = 200) -> list[dict[str, Any]]:
        response = self.client.post("/v1/facts", json={"user_id": user, "facts": list(facts)})
        assert response.status_code == status, response.text
        return response.json()["results"] if status == 200 else response.json()

    def recall(self, user: str, query: str = "", **body: Any) -> list[dict[str, Any]]:
        response = self.client.post("/v1/recall", json={"user_id": user, "query": query, **body})
        assert response.status_code == 200, response.text
        assert response.headers["x-memoire-status"] == "ok"
        facts: list[dict[str, Any]] = response.json()["facts"]
        return facts

    def listing(self, user: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(f"/v1/users/{user}/facts", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page


def texts(facts: list[dict[str, Any]]) -> list[str]:
    return [f["text"] for f in facts]


async def insert_facts(db: asyncpg.Pool, embedder: LocalEmbedder, user: str, *facts: dict[str, Any]) -> None:
    """Facts written straight into the table, past the write path: what care tasks must repair."""
    vectors = await embedder.embed([f["text"] for f in facts])
    async with db.acquire() as conn:
        user_id = await users.ensure(conn, DEFAULT_TENANT_ID, user)
        for fact, vector in zip(facts, vectors, strict=True):
            await conn.execute(
                """INSERT INTO memory_facts (tenant_id, user_id, text, slot, value, valid_from, observed_at,
                       source_chat_log_ids, embedding, embedding_model, embedding_dim, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'all-MiniLM-L6-v2', 384, $10)""",
                DEFAULT_TENANT_ID, user_id, fact["text"], fact.get("slot"), fact.get("value"),
                fact.get("valid_from"), fact.get("observed_at", datetime.now(UTC)), fact.get("sources", []),
                vector, fact.get("created_at", datetime.now(UTC)),
            )  # fmt: skip
