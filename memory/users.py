"""End users as the memory core sees them: found or created by the app's id, and locked for writing."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from memoire.rules import storable
from memory.db import Connection


async def lock(conn: Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Serialise fact writes for one user until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2::uuid::text, 7))",
        tenant_id,
        user_id,
    )


async def lock_names(conn: Connection, names: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Serialise, until the transaction ends, storing exchanges of these users (tenant, external id) with
    forgetting them: across every process, since the lock is PostgreSQL's."""
    pairs = sorted(set(names))
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtextextended(t::text || ':' || n, 11))
           FROM unnest($1::uuid[], $2::text[]) AS x(t, n) ORDER BY t, n""",
        [t for t, _ in pairs],
        [n for _, n in pairs],
    )


async def ensure(conn: Connection, tenant_id: uuid.UUID, external_id: str) -> uuid.UUID:
    user_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO users (tenant_id, external_id) VALUES ($1, $2)
           ON CONFLICT (tenant_id, external_id) DO UPDATE SET last_seen_at = now()
           RETURNING id""",
        tenant_id,
        external_id,
    )
    return user_id


async def find(conn: Connection, tenant_id: uuid.UUID, external_id: str) -> uuid.UUID | None:
    external_id = storable(external_id)
    user_id: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM users WHERE tenant_id = $1 AND external_id = $2", tenant_id, external_id
    )
    return user_id
