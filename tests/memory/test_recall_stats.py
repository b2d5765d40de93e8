"""Recall statistics: counted in memory, then added to the facts in one statement."""

from __future__ import annotations

import uuid

import asyncpg
import numpy as np

from memory.recall_stats import RecallStats


async def _facts(pool: asyncpg.Pool, count: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A user with ``count`` facts as wide as real ones (a 384-dimension embedding each)."""
    tenant_id = await pool.fetchval("INSERT INTO tenants (name) VALUES ('stats') RETURNING id")
    user_id = await pool.fetchval(
        "INSERT INTO users (tenant_id, external_id) VALUES ($1, 'u') RETURNING id", tenant_id
    )
    rng = np.random.default_rng(3)
    ids = []
    for n in range(count):
        vector = rng.standard_normal(384).astype(np.float32)
        ids.append(
            await pool.fetchval(
                """INSERT INTO memory_facts (tenant_id, user_id, text, category, embedding, embedding_model,
                                             embedding_dim)
                   VALUES ($1, $2, $3, 'preferences', $4, 'all-MiniLM-L6-v2', 384) RETURNING id""",
                tenant_id,
                user_id,
                f"Likes dish number {n} at the place on the corner of the square",
                vector / np.linalg.norm(vector),
            )
        )
    return tenant_id, ids


async def _counts(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await pool.fetch("SELECT id, recall_count FROM memory_facts WHERE id = ANY($1)", ids)
    return {r["id"]: r["recall_count"] for r in rows}


async def test_recall_counts_reach_the_facts_once_each(db: asyncpg.Pool) -> None:
    tenant_id, ids = await _facts(db, 60)
    stats = RecallStats(db)
    for round_ in range(3):
        stats.add(tenant_id, ids)
        stats.add(tenant_id, ids[:10])
        await stats.flush()
        assert await _counts(db, ids) == {i: (round_ + 1) * (2 if i in ids[:10] else 1) for i in ids}
    await stats.flush()  # nothing pending: nothing added twice
    assert await _counts(db, ids) == {i: 3 * (2 if i in ids[:10] else 1) for i in ids}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM memory_facts WHERE last_recalled_at IS NULL AND id = ANY($1)", ids
        )
        == 0
    )


async def test_counts_of_another_tenant_do_not_touch_its_facts(db: asyncpg.Pool) -> None:
    _, ids = await _facts(db, 3)
    stats = RecallStats(db)
    stats.add(uuid.uuid4(), ids)
    await stats.flush()
    assert await _counts(db, ids) == dict.fromkeys(ids, 0)
