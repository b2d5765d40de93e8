"""Memory never breaks the call: with Redis or PostgreSQL down, calls succeed and every exchange is stored
exactly once when the service returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import openai
import pytest
import redis.asyncio as aioredis

from tests.support.servers import ProxyFactory, ServerThread
from tests.support.services import StoppablePostgres, StoppableRedis
from tests.support.waiting import eventually

QUEUE = "memoire:queue"


@pytest.fixture
def private_redis() -> Iterator[StoppableRedis]:
    server = StoppableRedis().start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[StoppablePostgres]:
    server = StoppablePostgres(tmp_path / "pg")
    yield server
    server.cleanup()


async def call(proxy: ServerThread, text: str, *, stream: bool = False) -> str | None:
    """One chat call through the proxy; returns the x-memoire-degraded header, if any."""
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0) as client:
        messages = [{"role": "user", "content": text}]
        if stream:
            raw = await client.chat.completions.with_raw_response.create(
                model="fake-chat",
                messages=messages,
                stream=True,  # type: ignore[arg-type]
            )
            chunks = [c async for c in raw.parse()]
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "
            )
        else:
            raw = await client.chat.completions.with_raw_response.create(
                model="fake-chat",
                messages=messages,  # type: ignore[arg-type]
            )
            assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
        return raw.headers.get("x-memoire-degraded")


async def queued_jobs(url: str) -> set[str]:
    client = aioredis.Redis.from_url(url)
    try:
        return {m.decode() for m in await client.zrange(QUEUE, 0, -1)}
    finally:
        await client.aclose()


async def test_redis_down_calls_succeed_and_jobs_are_queued_when_it_returns(
    start_proxy: ProxyFactory, private_redis: StoppableRedis, db: asyncpg.Pool
) -> None:
    proxy = start_proxy(redis={"url": private_redis.url})
    await call(proxy, "before")
    await eventually(lambda: _count(queued_jobs(private_redis.url), 1))

    private_redis.stop()
    headers = [await call(proxy, f"during {i}", stream=i % 2 == 1) for i in range(4)]
    headers.append(await eventually(lambda: call(proxy, "during 4")))  # the proxy says memory is degraded
    assert headers[-1] == "redis"

    # PostgreSQL is up, so the exchanges are recorded; their jobs wait in the spool.
    rows = await eventually(lambda: _rows_if(db, 6))
    assert sorted(r["text"] for r in rows) == sorted(["before", *(f"during {i}" for i in range(5))])

    private_redis.start()  # a fresh, empty Redis
    jobs = await eventually(lambda: _count(queued_jobs(private_redis.url), 5))
    during = {str(r["id"]) for r in rows if r["text"] != "before"}
    assert {job.rsplit(":", 1)[1] for job in jobs} == during
    # Once Redis answers again, the proxy stops saying memory is degraded.
    assert await eventually(lambda: _healthy(proxy))


async def _healthy(proxy: ServerThread) -> bool:
    return await call(proxy, "after") is None


async def test_postgres_down_calls_succeed_and_exchanges_are_stored_once_when_it_returns(
    start_proxy: ProxyFactory, private_postgres: StoppablePostgres, tmp_path: Path
) -> None:
    proxy = start_proxy(dsn=private_postgres.dsn)
    await call(proxy, "before")
    pool = await asyncpg.create_pool(private_postgres.dsn, min_size=0, max_size=2)
    try:
        await eventually(lambda: _rows_if(pool, 1))
        await pool.expire_connections()

        private_postgres.stop()
        for i in range(3):
            await call(proxy, f"during {i}", stream=i == 1)
        assert await eventually(lambda: call(proxy, "during 3")) == "database"
        # The proxy restarts while PostgreSQL is still down: the spool keeps what it held.
        proxy.stop()
        proxy = start_proxy(dsn=private_postgres.dsn)
        await call(proxy, "during 4")

        private_postgres.start()
        rows = await eventually(lambda: _rows_if(pool, 6), timeout=15)
        texts = sorted(r["text"] for r in rows)
        assert texts == sorted(["before", *(f"during {i}" for i in range(5))])
        assert len({r["id"] for r in rows}) == 6
        # Later calls are stored too, and nothing twice.
        await call(proxy, "after")
        rows = await eventually(lambda: _rows_if(pool, 7))
        assert len({r["text"] for r in rows}) == 7
    finally:
        await pool.close()


async def _rows_if(pool: asyncpg.Pool, n: int) -> list[asyncpg.Record] | None:
    try:
        rows = await pool.fetch("SELECT id, messages->0->>'content' AS text FROM chat_logs")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    return rows if len(rows) == n else None


async def _count(jobs: object, n: int) -> set[str] | None:
    found: set[str] = await jobs  # type: ignore[misc]
    return found if len(found) == n else None
