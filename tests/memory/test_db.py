"""The database pool: statements are planned for the tenant and user they serve, on every connection."""

from __future__ import annotations

from memory import db
from tests.support.config import make_config


async def test_pooled_connections_plan_each_statement_for_its_own_values(pg_dsn: str) -> None:
    pool = await db.create_pool(make_config().database, pg_dsn)
    try:
        for _ in range(3):  # the pool's reset on release must not undo it
            async with pool.acquire() as conn:
                assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await db.close_pool(pool)
    plain = await db.create_pool(make_config(database={"custom_plans": False}).database, pg_dsn)
    try:
        assert await plain.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await db.close_pool(plain)


async def test_a_request_pool_rolls_back_what_a_request_left_open(pg_dsn: str) -> None:
    pool = await db.create_pool(
        make_config(database={"pool_min": 1, "pool_max": 1}).database, pg_dsn, stateless=True
    )
    try:
        async with pool.acquire() as conn:  # a request cancelled inside its transaction, say
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO tenants (name) VALUES ('left-open')")
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM tenants WHERE name = 'left-open'") == 0
            await again.execute("SET application_name = 'kept'")
        async with pool.acquire() as third:  # and nothing else is reset: no statement on release
            assert await third.fetchval("SHOW application_name") == "kept"
    finally:
        await db.close_pool(pool)


async def test_the_worker_pool_releases_session_locks_with_the_connection(pg_dsn: str) -> None:
    pool = await db.create_pool(make_config(database={"pool_min": 1, "pool_max": 1}).database, pg_dsn)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(7031)")
        other = await db.create_pool(make_config(database={"pool_min": 1, "pool_max": 1}).database, pg_dsn)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock(7031)") is True
        finally:
            await db.close_pool(other)
    finally:
        await db.close_pool(pool)
