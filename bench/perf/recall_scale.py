"""Recall at scale: 1,000 users whose facts grow to each size in turn (10k, 100k, 1M in all), with real
all-MiniLM-L6-v2 embeddings of generated sentences (:mod:`bench.perf.corpus`), then ``POST /v1/recall``
asked one at a time with questions it has not seen (so the query is embedded), timed end to end by the
client and split by the server (``Server-Timing``: embedding and database).

Facts are bulk-loaded with COPY, as an import would: the table's secondary indexes are dropped first and
built again from their own definitions afterwards (the time it takes is reported), so the schema measured
is the migrated one.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
from pgvector.asyncpg import register_vector

from bench.perf import corpus
from bench.perf.stats import summary
from memory import embeddings
from memory.config import Config, EmbeddingsConfig

USERS = 1000
#: Distinct sentences embedded; each fact takes one at random (people share habits and cities).
POOL = 20_000
COLUMNS = [
    "tenant_id", "user_id", "text", "category", "embedding", "embedding_model", "embedding_dim", "created_at",
    "confidence",
]  # fmt: skip
CATEGORIES = ["identity", "location", "work", "relationships", "preferences", "health", "events", "other"]


async def embed_pool(model_dir: str, size: int) -> tuple[list[str], list[np.ndarray], Any]:
    """The fact sentences and their embeddings, and the embedder (for timing queries alone)."""
    embedder = embeddings.create(Config(embeddings=EmbeddingsConfig(model_dir=model_dir)))
    texts = corpus.fact_pool(size)
    vectors: list[np.ndarray] = []
    for start in range(0, len(texts), 256):
        vectors.extend(await embedder.embed(texts[start : start + 256]))
    return texts, vectors, embedder


async def query_embedding(embedder: Any, count: int) -> dict[str, float]:
    """Embedding one query, alone, in process (its own cache bypassed: every question is new)."""
    times = []
    for n, text in enumerate(corpus.questions(count, seed=99)):
        started = time.perf_counter()
        await embedder.embed_query(f"{text} ({n})", scope="bench")
        times.append(time.perf_counter() - started)
    return summary(times)


async def _users(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """INSERT INTO users (tenant_id, external_id)
           SELECT $1, 'scale-' || n FROM generate_series(1, $2) n
           ON CONFLICT (tenant_id, external_id) DO UPDATE SET last_seen_at = now() RETURNING id""",
        tenant_id,
        USERS,
    )
    return [r["id"] for r in rows]


async def grow(
    dsn: str, tenant_id: uuid.UUID, texts: list[str], vectors: list[np.ndarray], total: int, seed: int
) -> dict[str, float]:
    """Add facts until the table holds ``total`` of them, spread evenly over the users; returns timings."""
    conn = await asyncpg.connect(dsn)
    try:
        await register_vector(conn)
        ids = await _users(conn, tenant_id)
        have = int(
            await conn.fetchval(
                "SELECT count(*) FROM memory_facts WHERE tenant_id = $1 AND user_id = ANY($2)", tenant_id, ids
            )
        )
        rng = random.Random(seed)
        now = datetime.now(UTC)
        indexes = await conn.fetch(
            """SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memory_facts'
               AND indexname NOT IN (SELECT conname FROM pg_constraint)"""
        )
        started = time.perf_counter()
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')

        def records(count: int) -> Any:
            for n in range(count):
                pick = rng.randrange(len(texts))
                yield (
                    tenant_id, ids[n % len(ids)], texts[pick], rng.choice(CATEGORIES), vectors[pick],
                    "all-MiniLM-L6-v2", 384, now - timedelta(days=rng.randint(0, 900)),
                    round(rng.uniform(0.5, 1.0), 2),
                )  # fmt: skip

        await conn.copy_records_to_table("memory_facts", records=records(total - have), columns=COLUMNS)
        loaded = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        for row in indexes:
            await conn.execute(row["indexdef"])
        await conn.execute("ANALYZE memory_facts")
        return {"load_s": loaded - started, "index_s": time.perf_counter() - loaded}
    finally:
        await conn.close()


async def measure(url: str, key: str, requests: int, seed: int) -> dict[str, Any]:
    """``requests`` recalls, one at a time, for random users, each with a question not asked before."""
    rng = random.Random(seed)
    asked = corpus.questions(requests + 20, seed=seed)
    end_to_end, db, embed = [], [], []
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}) as http:
        for n, question in enumerate(asked):
            body = {
                "user_id": f"scale-{rng.randint(1, USERS)}",
                "query": f"{question} #{seed}-{n}",
                "limit": 10,
            }
            started = time.perf_counter()
            answer = await http.post("/v1/recall", json=body)
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"recall answered {answer.status_code}: {answer.text}")
            if n < 20:
                continue  # warm-up
            timing = dict(p.strip().split(";dur=") for p in answer.headers["server-timing"].split(","))
            end_to_end.append(elapsed)
            db.append(float(timing["db"]) / 1000)
            embed.append(float(timing["embed"]) / 1000)
    return {"end_to_end": summary(end_to_end), "db": summary(db), "embed": summary(embed)}


async def run(
    dsn: str, tenant_id: uuid.UUID, url: str, key: str, model_dir: str, sizes: list[int], requests: int
) -> dict[str, Any]:
    texts, vectors, embedder = await embed_pool(model_dir, POOL)
    try:
        alone = await query_embedding(embedder, 300)
    finally:
        await embedder.close()
    levels = []
    for n, size in enumerate(sizes):
        load = await grow(dsn, tenant_id, texts, vectors, size, seed=n)
        found = await measure(url, key, requests, seed=n)
        levels.append({"facts": size, "users": USERS, **load, **found})
    return {"pool": len(texts), "query_embedding_in_process": alone, "levels": levels}


def main_sync(*args: Any) -> dict[str, Any]:
    return asyncio.run(run(*args))


async def load_user(
    dsn: str, tenant_id: uuid.UUID, external_id: str, texts: list[str], vectors: list[np.ndarray]
) -> None:
    """One user holding ``texts`` as facts (the proxy's recall-on user)."""
    conn = await asyncpg.connect(dsn)
    try:
        await register_vector(conn)
        user_id = await conn.fetchval(
            "INSERT INTO users (tenant_id, external_id) VALUES ($1, $2) RETURNING id",
            tenant_id,
            external_id,
        )
        rng = random.Random(4)
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "memory_facts",
            records=[
                (tenant_id, user_id, text, rng.choice(CATEGORIES), vector, "all-MiniLM-L6-v2", 384,
                 now - timedelta(days=rng.randint(0, 900)), round(rng.uniform(0.5, 1.0), 2))
                for text, vector in zip(texts, vectors, strict=True)
            ],
            columns=COLUMNS,
        )  # fmt: skip
        await conn.execute("ANALYZE memory_facts")
    finally:
        await conn.close()
