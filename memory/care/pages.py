"""Users in keyset pages: how care tasks walk any number of users without loading a table."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from memory import db

UserKey = tuple[uuid.UUID, uuid.UUID]
"""(tenant_id, user_id)."""

_PAGE = """
SELECT tenant_id, id FROM users
WHERE ($1::uuid IS NULL OR (tenant_id, id) > ($1, $2::uuid))
  AND ($3::text IS NULL OR external_id = $3)
  AND ($4::uuid IS NULL OR tenant_id = $4)
ORDER BY tenant_id, id LIMIT $5
"""


async def next_page(
    pool: asyncpg.Pool,
    size: int,
    after: UserKey | None,
    *,
    user: str | None = None,
    tenant_id: uuid.UUID | None = None,
) -> list[UserKey]:
    """The ``size`` users after ``after`` (from the first with None), in (tenant, id) order."""
    async with db.connection(pool) as conn:
        rows = await conn.fetch(
            _PAGE, after[0] if after else None, after[1] if after else None, user, tenant_id, size
        )
    return [(r["tenant_id"], r["id"]) for r in rows]


async def user_pages(
    pool: asyncpg.Pool, size: int, *, user: str | None = None, tenant_id: uuid.UUID | None = None
) -> AsyncIterator[list[UserKey]]:
    """Every user (or those named ``user``, in ``tenant_id``), ``size`` at a time, in (tenant, id) order."""
    after: UserKey | None = None
    while page := await next_page(pool, size, after, user=user, tenant_id=tenant_id):
        yield page
        after = page[-1]


async def sweep(
    pool: asyncpg.Pool,
    size: int,
    handle: Callable[[list[UserKey]], Awaitable[Counter[str]]],
    *,
    user: str | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Counter[str]:
    """``handle`` every page of users in turn; the sum of their reports, with the users looked at."""
    report: Counter[str] = Counter()
    async for page in user_pages(pool, size, user=user, tenant_id=tenant_id):
        report["users"] += len(page)
        report.update(await handle(page))
    return report
