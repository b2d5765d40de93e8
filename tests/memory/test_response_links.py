"""Response links: a response id is found only under the tenant that created it, and is forgotten with its
user or once the provider no longer keeps the response."""

from __future__ import annotations

import asyncpg
import pytest

from memory import exchanges, keys, purge, response_links
from memory.exchanges import DEFAULT_TENANT_ID
from memory.response_links import Link, encode
from tests.support.jobs import said


async def test_a_link_is_found_only_under_its_tenant(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        other = (await keys.create(conn, "other")).info.tenant_id
        await response_links.record(conn, [encode(DEFAULT_TENANT_ID, "resp_a", "alice", "resp_a")])
        await response_links.record(
            conn,
            [
                encode(DEFAULT_TENANT_ID, "resp_a", "mallory", "x"),  # the id linked again: the first stays
                encode(other, "resp_b", 'o\'brien "the" ü', "s\\1"),  # one batch, two tenants
            ],
        )
        assert await response_links.find(conn, DEFAULT_TENANT_ID, "resp_a") == Link("alice", "resp_a")
        assert await response_links.find(conn, other, "resp_a") is None
        assert await response_links.find(conn, other, "resp_b") == Link('o\'brien "the" ü', "s\\1")
        assert await response_links.find(conn, DEFAULT_TENANT_ID, "resp_b") is None
        async with conn.transaction():  # a batch written again, inside the caller's transaction
            await response_links.record(
                conn, [encode(other, "resp_b", 'o\'brien "the" ü', "s\\1"), encode(other, "resp_c", "c", "c")]
            )
        assert await response_links.find(conn, other, "resp_b") == Link('o\'brien "the" ü', "s\\1")
        assert await response_links.find(conn, other, "resp_c") == Link("c", "c")


async def test_a_batch_with_a_link_the_database_refuses_stores_none_of_it(db: asyncpg.Pool) -> None:
    """The proxy then writes that batch link by link (tests/proxy/test_response_owners.py); nothing of it may
    be left half-stored."""
    async with db.acquire() as conn:
        batch = [
            encode(DEFAULT_TENANT_ID, "resp_ok", "u", "s"),
            encode(DEFAULT_TENANT_ID, "resp_bad", "u\0", "s"),  # text PostgreSQL cannot hold
        ]
        with pytest.raises(asyncpg.PostgresError):
            await response_links.record(conn, batch)
        assert await response_links.find(conn, DEFAULT_TENANT_ID, "resp_ok") is None
        lone = encode(DEFAULT_TENANT_ID, "resp_lone", "\ud800", "s")  # encodes without raising
        with pytest.raises(asyncpg.PostgresError):
            await response_links.record(conn, [lone])


async def test_links_go_with_their_user_and_with_age(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await exchanges.record(conn, [said("alice", "hello")])
        await response_links.record(
            conn,
            [
                encode(DEFAULT_TENANT_ID, f"resp_{n}", user, f"resp_{n}")
                for n, user in enumerate(("alice", "bob", "bob"), 1)
            ],
        )
        async with conn.transaction():
            purged = await purge.purge_user(conn, DEFAULT_TENANT_ID, "alice")
        assert purged is not None
        assert purged.response_links == 1
        await conn.execute(
            "UPDATE response_links SET created_at = now() - interval '32 days' WHERE response_id = 'resp_2'"
        )
        assert await response_links.purge_expired(conn) == 1
        left = await conn.fetch("SELECT response_id FROM response_links ORDER BY response_id")
    assert [r["response_id"] for r in left] == ["resp_3"]
