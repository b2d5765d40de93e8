"""Numbered migrations: applied once, in order, under a lock, recorded, and append-only."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from memory.errors import MigrationError
from memory.migrations import available, migrate, pending


async def test_session_schema_is_fully_migrated_and_rerun_is_a_no_op(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await pending(conn) == []
        assert await migrate(conn) == []
        versions = [
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    assert versions == [m.version for m in available()]


async def test_every_table_carries_tenant_id(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """SELECT t.table_name, bool_or(c.column_name = 'tenant_id') AS scoped
           FROM information_schema.tables t JOIN information_schema.columns c USING (table_schema, table_name)
           WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           GROUP BY t.table_name"""
    )
    tables = {r["table_name"]: r["scoped"] for r in rows}
    assert {"tenants", "users", "sessions", "chat_logs", "memory_facts"} <= set(tables)
    unscoped = {name for name, scoped in tables.items() if not scoped} - {"tenants", "schema_migrations"}
    assert unscoped == set()


async def test_concurrent_runners_on_a_fresh_database_apply_each_migration_once(pg_dsn: str) -> None:
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute("DROP DATABASE IF EXISTS migrate_race")
    await admin.execute("CREATE DATABASE migrate_race")
    dsn = pg_dsn.replace("/postgres?", "/migrate_race?")
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(available())]
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(available())
        assert await conns[0].fetchval("SELECT name FROM tenants") == "default"
    finally:
        for c in conns:
            await c.close()
        await admin.execute("DROP DATABASE migrate_race")
        await admin.close()


async def test_an_applied_migration_that_changed_stops_the_run(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn)
        await conn.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = 1", available()[0].checksum
        )
