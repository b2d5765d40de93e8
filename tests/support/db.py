"""Reading the test database from outside the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


def fetch_sync(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query from a synchronous test."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())
