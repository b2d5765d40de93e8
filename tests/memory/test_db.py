"""The database pool: statements are planned for the tenant and user they serve, on every connection."""

from __future__ import annotations

from memory import db
from tests.conftest import make_config


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
