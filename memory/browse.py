"""Reading facts as stored: a user's facts with filters and keyset pagination, and a fact's history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from memory import slots
from memory.db import Connection
from memory.facts import COLUMNS, EFFECTIVE_TEMPORAL, Fact, FactStatus, TemporalStatus, from_row


@dataclass(frozen=True, slots=True)
class Filters:
    statuses: Sequence[FactStatus] = ("active",)
    temporal: Sequence[TemporalStatus] | None = None
    slot: str | None = None
    category: str | None = None
    slots: Sequence[str] | None = None
    """Any of these slots (with ``slot``, both must hold)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after this (created_at, id), newest first."""

    created_at: datetime
    id: uuid.UUID


_LIST = f"""
SELECT {COLUMNS}
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = ANY($3::text[])
  AND ($4::text[] IS NULL OR {EFFECTIVE_TEMPORAL} = ANY($4::text[]))
  AND ($5::text IS NULL OR f.slot = $5)
  AND ($6::text IS NULL OR f.category = $6)
  AND ($7::timestamptz IS NULL OR (f.created_at, f.id) < ($7, $8::uuid))
  AND ($10::text[] IS NULL OR f.slot = ANY($10::text[]))
ORDER BY f.created_at DESC, f.id DESC
LIMIT $9
"""

# Back through what a fact superseded, forward through what superseded it: one slot's story.
_HISTORY = f"""
WITH RECURSIVE back AS (
    SELECT f.id, 0 AS depth FROM memory_facts f WHERE f.tenant_id = $1 AND f.id = $2
    UNION
    SELECT f.id, back.depth - 1 FROM memory_facts f JOIN back ON f.superseded_by = back.id
    WHERE f.tenant_id = $1 AND back.depth > -1000
), forward AS (
    SELECT f.id, f.superseded_by, 0 AS depth FROM memory_facts f WHERE f.tenant_id = $1 AND f.id = $2
    UNION
    SELECT f.id, f.superseded_by, forward.depth + 1 FROM memory_facts f
    JOIN forward ON f.id = forward.superseded_by
    WHERE f.tenant_id = $1 AND forward.depth < 1000
), chain AS (
    SELECT id, depth FROM back UNION SELECT id, depth FROM forward
)
SELECT {COLUMNS}
FROM chain c
JOIN memory_facts f ON f.tenant_id = $1 AND f.id = c.id
JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
ORDER BY c.depth, coalesce(f.valid_from, f.observed_at), f.created_at
"""


async def list_facts(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    filters: Filters,
    *,
    limit: int,
    after: Cursor | None = None,
) -> tuple[list[Fact], Cursor | None]:
    """One page of the user's facts, newest first, and the cursor of the next page (None at the end)."""
    rows = await conn.fetch(
        _LIST,
        tenant_id,
        user_id,
        list(filters.statuses),
        list(filters.temporal) if filters.temporal else None,
        filters.slot,
        filters.category,
        after.created_at if after else None,
        after.id if after else None,
        limit + 1,
        list(filters.slots) if filters.slots is not None else None,
    )
    facts = [from_row(row) for row in rows[:limit]]
    more = len(rows) > limit
    return facts, Cursor(facts[-1].created_at, facts[-1].id) if more else None


async def history(conn: Connection, tenant_id: uuid.UUID, fact_id: uuid.UUID) -> list[Fact]:
    """The fact with those it superseded (before it) and those that superseded it (after), oldest first."""
    return [from_row(row) for row in await conn.fetch(_HISTORY, tenant_id, fact_id)]


class Profile(msgspec.Struct, kw_only=True):
    """What Mémoire holds about one end user, at a glance."""

    user_id: str
    created_at: datetime
    last_seen_at: datetime
    metadata: dict[str, Any]
    facts: dict[str, int]
    """How many facts the user has, by status."""
    core: list[Fact]
    """The current facts in single-valued slots (name, home, employer, role …): who the user is now."""
    essential: list[Fact]
    """The facts put first into every call (see ``optimize_memory``)."""
    summary: str | None
    """The LLM's summary of the user, written weekly by ``consolidate_user_memory``."""
    summary_generated_at: datetime | None


_CORE = f"""
SELECT {COLUMNS}
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active' AND f.slot = ANY($3::text[])
  AND {EFFECTIVE_TEMPORAL} = 'current'
ORDER BY f.slot, coalesce(f.valid_from, f.observed_at) DESC, f.created_at DESC
"""


async def profile(conn: Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Profile | None:
    """The user's profile; None if the user is gone."""
    user = await conn.fetchrow(
        "SELECT external_id, created_at, last_seen_at, metadata FROM users WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        user_id,
    )
    if user is None:
        return None
    counts = await conn.fetch(
        """SELECT status, count(*) AS n FROM memory_facts WHERE tenant_id = $1 AND user_id = $2
           GROUP BY status""",
        tenant_id,
        user_id,
    )
    single = [name for name in slots.SLOTS if slots.is_single(name)]
    core = [from_row(row) for row in await conn.fetch(_CORE, tenant_id, user_id, single)]
    written = await conn.fetchrow(
        "SELECT summary, generated_at FROM user_profiles WHERE tenant_id = $1 AND user_id = $2",
        tenant_id,
        user_id,
    )
    return Profile(
        user_id=user["external_id"],
        created_at=user["created_at"],
        last_seen_at=user["last_seen_at"],
        metadata=user["metadata"],
        facts={row["status"]: row["n"] for row in counts},
        core=core,
        essential=await essential(conn, tenant_id, user_id, 1000),
        summary=written["summary"] if written else None,
        summary_generated_at=written["generated_at"] if written else None,
    )


_ESSENTIAL = f"""
SELECT {COLUMNS}
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.essential AND f.status = 'active'
  AND {EFFECTIVE_TEMPORAL} IN ('current', 'recurring')
ORDER BY f.slot IS NULL, f.importance DESC, f.recall_count DESC, f.id
LIMIT $3
"""


async def essential(conn: Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, limit: int) -> list[Fact]:
    """The user's essential facts (see :mod:`memory.care.optimize`): their profile."""
    return [from_row(row) for row in await conn.fetch(_ESSENTIAL, tenant_id, user_id, limit)]
