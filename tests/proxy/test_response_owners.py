"""The response-link writer: while the database is away links wait, and are not retried in a tight loop; a
link the database refuses costs only itself."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from memory import db, response_links
from memory.config import DatabaseConfig
from memory.health import Health
from memory.response_links import Link
from proxy.response_owners import BATCH, WRITE_INTERVAL, ResponseOwners
from tests.support.services import free_port


async def test_a_full_batch_that_failed_waits_out_the_interval_before_it_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dsn = f"postgresql://memoire@127.0.0.1:{free_port()}/none"  # nothing listens there
    pool = await db.create_pool(DatabaseConfig(pool_min=0, connect_timeout=0.2), dsn)
    owners = ResponseOwners(pool, Health())
    tenant = uuid.uuid4()
    caplog.set_level(logging.WARNING, logger="proxy.response_owners")
    try:
        for n in range(BATCH * 3):  # more than a batch pending, as under load when the database went away
            owners.link(tenant, f"resp_{n}", Link("u", "s"))
        await asyncio.sleep(WRITE_INTERVAL * 1.5)
        tries = [r for r in caplog.records if "wait for the database" in r.getMessage()]
        assert 1 <= len(tries) <= 2, [r.getMessage() for r in tries]
        # Nothing was lost meanwhile: every link is still known here.
        assert await owners.find(tenant, f"resp_{BATCH * 3 - 1}", recheck=False) == Link("u", "s")
    finally:
        await owners.close()
        await pool.close()


async def test_a_link_the_database_refuses_does_not_sink_its_batch(
    db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    owners = ResponseOwners(db, Health())
    tenant = uuid.uuid4()
    caplog.set_level(logging.ERROR, logger="proxy.response_owners")
    try:
        owners.link(tenant, "resp_before", Link("u", "s"))
        owners.link(tenant, "resp_nul", Link("u\0", "s"))  # text PostgreSQL cannot hold
        owners.link(tenant, "resp_after", Link("v", "t"))
    finally:
        await owners.close()  # writes what is pending
    async with db.acquire() as conn:
        assert await response_links.find(conn, tenant, "resp_before") == Link("u", "s")
        assert await response_links.find(conn, tenant, "resp_after") == Link("v", "t")
        assert await response_links.find(conn, tenant, "resp_nul") is None
    assert any("kept in process only" in r.getMessage() for r in caplog.records)
