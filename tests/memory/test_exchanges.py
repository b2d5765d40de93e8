"""Recording exchanges: idempotent, and scoped by tenant."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg
import msgspec

from memory import exchanges
from memory.config import RedisConfig, SpoolConfig
from memory.exchanges import DEFAULT_TENANT_ID, Exchange, new_id, now
from memory.health import Health
from memory.intake import Intake
from memory.queue import extraction_id
from memory.spool import Spool
from tests.support.waiting import eventually
from worker import queue


def exchange(
    user: str = "alice", tenant: uuid.UUID = DEFAULT_TENANT_ID, session: str | None = "s1"
) -> Exchange:
    return Exchange(
        id=new_id(), tenant_id=tenant, user=user, session=session, model="m",
        messages=[{"role": "user", "content": f"hello from {user}"}],
        reply={"role": "assistant", "content": "hi"}, occurred_at=now(),
    )  # fmt: skip


async def test_recording_the_same_exchange_twice_leaves_one_row(db: asyncpg.Pool) -> None:
    first, second = exchange(), exchange()
    async with db.acquire() as conn:
        assert set(await exchanges.record(conn, [first, second])) == {first.id, second.id}
        assert await exchanges.record(conn, [first, second, first]) == []
    assert await db.fetchval("SELECT count(*) FROM chat_logs") == 2
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    assert await db.fetchval("SELECT count(*) FROM sessions") == 1


async def test_the_same_user_id_under_two_tenants_is_two_people(db: asyncpg.Pool) -> None:
    other = await db.fetchval("INSERT INTO tenants (name) VALUES ('other') RETURNING id")
    async with db.acquire() as conn:
        await exchanges.record(conn, [exchange("alice"), exchange("alice", tenant=other)])
    users = await db.fetch("SELECT tenant_id, id FROM users WHERE external_id = 'alice'")
    assert len({u["id"] for u in users}) == 2
    assert {u["tenant_id"] for u in users} == {DEFAULT_TENANT_ID, other}


async def test_a_nul_character_is_stored_not_fatal(db: asyncpg.Pool) -> None:
    ex = msgspec.structs.replace(exchange(), messages=[{"role": "user", "content": "a\x00b"}])
    async with db.acquire() as conn:
        await exchanges.record(conn, [ex])
    assert await db.fetchval("SELECT messages->0->>'content' FROM chat_logs") == "a\ufffdb"


async def deliver_leftovers(
    db: asyncpg.Pool, redis_url: str, path: Path, entries: list[tuple[str, bytes]], delivered: uuid.UUID
) -> set[str]:
    """Leave ``entries`` in a spool as a dead process would, start an intake on it, and wait until
    ``delivered`` is stored. Returns the ARQ job ids then queued."""
    spool = Spool(path)
    await spool.put(entries)
    await spool.close()
    jobs = queue.ArqQueue.connect(RedisConfig(url=redis_url))
    intake = Intake(spool=Spool(path), pool=db, queue=jobs, config=SpoolConfig(), health=Health())
    await intake.start()
    try:
        await eventually(lambda: db.fetchval("SELECT count(*) FROM chat_logs WHERE id = $1", delivered))
        await intake.flush()
        return {m.decode() for m in await jobs.redis.zrange("memoire:queue", 0, -1)}
    finally:
        await intake.close(grace=0.5)
        await jobs.aclose()


def spooled(path: Path) -> set[str]:
    with sqlite3.connect(path) as check:
        return {row[0] for row in check.execute("SELECT id FROM spool")}


async def test_a_poison_exchange_does_not_hold_back_the_others(
    db: asyncpg.Pool, redis_url: str, tmp_path: Path
) -> None:
    good, bad = exchange("good"), msgspec.structs.replace(exchange("bad"), source="bogus")  # type: ignore[arg-type]
    entries = [
        ("unreadable", b"not msgpack"),
        (str(bad.id), msgspec.msgpack.encode(bad)),
        (str(good.id), msgspec.msgpack.encode(good)),
    ]
    await deliver_leftovers(db, redis_url, tmp_path / "spool.sqlite3", entries, good.id)
    # The bad and the unreadable are kept for an operator, never dropped.
    assert spooled(tmp_path / "spool.sqlite3") == {"unreadable", str(bad.id)}


async def test_intake_delivers_what_a_previous_process_left_in_the_spool(
    db: asyncpg.Pool, redis_url: str, tmp_path: Path
) -> None:
    left_behind = exchange("crashed")
    entries = [(str(left_behind.id), msgspec.msgpack.encode(left_behind))]
    queued = await deliver_leftovers(db, redis_url, tmp_path / "spool.sqlite3", entries, left_behind.id)
    assert queued == {extraction_id(DEFAULT_TENANT_ID, left_behind.id)}
    assert spooled(tmp_path / "spool.sqlite3") == set()
