"""``optimize_memory``: each user's essential facts, the profile injected on every call.

A fact is essential while it is active and currently true (current or recurring) and any of:

1. it fills a single-valued slot (name, home, employer, role, partner …): who the user is now;
2. its importance is at least ``care.essential_importance``;
3. it was recalled at least ``care.essential_recalls`` times and used within
   ``care.essential_stale_days``.

At most ``care.profile_facts`` per user are kept, in that order of reasons, then by importance, recalls
and recency. Facts that no longer qualify (ended, superseded, archived, stale, or pushed out) are demoted.
Essential facts never decay. The run is set-based per page of users, reports promotions and demotions, and
a second run changes nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime

import asyncpg

from memory import db, slots
from memory.care.pages import UserKey, sweep
from memory.config import CareConfig
from memory.facts import EFFECTIVE_TEMPORAL

_SINGLE = [name for name in slots.SLOTS if slots.is_single(name)]

_OPTIMIZE = f"""
WITH facts AS (
    SELECT f.tenant_id, f.id, f.user_id, f.essential,
           CASE WHEN f.status <> 'active' OR {EFFECTIVE_TEMPORAL} NOT IN ('current', 'recurring') THEN NULL
                WHEN f.slot = ANY($3::text[]) THEN 1
                WHEN f.importance >= $4 THEN 2
                WHEN f.recall_count >= $5
                     AND greatest(f.updated_at, coalesce(f.last_recalled_at, f.updated_at))
                         >= $7::timestamptz - make_interval(days => $6) THEN 3
           END AS reason,
           f.importance, f.recall_count, coalesce(f.valid_from, f.observed_at) AS start
    FROM memory_facts f
    JOIN unnest($1::uuid[], $2::uuid[]) AS u (tenant_id, user_id)
      ON f.tenant_id = u.tenant_id AND f.user_id = u.user_id
    WHERE (f.status = 'active' AND {EFFECTIVE_TEMPORAL} IN ('current', 'recurring')) OR f.essential
), ranked AS (
    SELECT tenant_id, id, essential, reason,
           row_number() OVER (PARTITION BY tenant_id, user_id
                              ORDER BY reason, importance DESC, recall_count DESC, start DESC, id) AS rank
    FROM facts WHERE reason IS NOT NULL
), wanted AS (
    SELECT f.tenant_id, f.id, f.essential,
           coalesce(r.rank <= $8 AND r.reason IS NOT NULL, false) AS should
    FROM facts f LEFT JOIN ranked r ON r.tenant_id = f.tenant_id AND r.id = f.id
)
UPDATE memory_facts m SET essential = w.should
FROM wanted w
WHERE m.tenant_id = w.tenant_id AND m.id = w.id AND m.essential <> w.should
RETURNING w.should
"""


async def optimize_page(
    pool: asyncpg.Pool, config: CareConfig, page: list[UserKey], now: datetime
) -> Counter[str]:
    async with db.transaction(pool) as conn:
        rows = await conn.fetch(
            _OPTIMIZE, [t for t, _ in page], [u for _, u in page], _SINGLE, config.essential_importance,
            config.essential_recalls, config.essential_stale_days, now, config.profile_facts,
        )  # fmt: skip
    report: Counter[str] = Counter()
    for row in rows:
        report["promoted" if row["should"] else "demoted"] += 1
    return report


async def optimize_memory(
    pool: asyncpg.Pool,
    config: CareConfig,
    now: datetime,
    *,
    user: str | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Counter[str]:
    """Promote and demote essential facts for every user (or those named ``user``)."""
    return await sweep(
        pool,
        config.batch_users,
        lambda page: optimize_page(pool, config, page, now),
        user=user,
        tenant_id=tenant_id,
    )
