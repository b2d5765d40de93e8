"""``run_supersession``: each single-valued slot of a user holds one current fact.

The write path supersedes as facts arrive; this sweep repairs what slipped through (facts imported or
merged out of order). In each single-valued slot with more than one effective current fact, the one that
started last (``valid_from``, else ``observed_at``; then the newest) stays current, and each other one is
superseded by it: status ``superseded``, ``valid_to`` its start, ``superseded_by`` it. A second run finds
nothing. One short transaction per user, under the user's write lock.
"""

from __future__ import annotations

import uuid
from collections import Counter

import asyncpg

from memory import db, slots, users
from memory.facts import EFFECTIVE_TEMPORAL

_CURRENT = f"""
SELECT f.id, f.slot, coalesce(f.valid_from, f.observed_at) AS start, f.valid_from
FROM memory_facts f
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active' AND f.slot = ANY($3::text[])
  AND {EFFECTIVE_TEMPORAL} = 'current'
ORDER BY f.slot, coalesce(f.valid_from, f.observed_at) DESC, f.created_at DESC, f.id DESC
"""

_SINGLE = [name for name in slots.SLOTS if slots.is_single(name)]


async def supersede_user(pool: asyncpg.Pool, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Counter[str]:
    report: Counter[str] = Counter()
    async with db.transaction(pool) as conn:
        await users.lock(conn, tenant_id, user_id)
        rows = await conn.fetch(_CURRENT, tenant_id, user_id, _SINGLE)
        newest: dict[str, asyncpg.Record] = {}
        for row in rows:
            current = newest.setdefault(row["slot"], row)
            if current is row:
                continue
            # valid_to never before the fact's own start (a check constraint): the later of the two.
            end = max(current["start"], row["valid_from"]) if row["valid_from"] else current["start"]
            await conn.execute(
                """UPDATE memory_facts SET status = 'superseded', valid_to = $3, superseded_by = $4,
                          expired_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2""",
                tenant_id,
                row["id"],
                end,
                current["id"],
            )
            report["superseded"] += 1
    return report
