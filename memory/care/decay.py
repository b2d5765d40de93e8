"""``decay_stale_facts``: the confidence of facts nobody uses fades, and the faded are archived.

The curve. A fact is *used* when it is recalled, reinforced or corrected (``last_recalled_at``,
``updated_at``). After ``care.decay_grace_days`` whole days without use, each further day multiplies its
confidence by ``0.5 ** (1 / care.decay_half_life_days)``: with the defaults, 30 days free, then half the
confidence every 90 days. Days are whole days, and ``decay_days`` records the days already charged, so a
run charges only new days: running twice, or every hour, gives what one daily run gives. A fact used again
starts a new grace period; it keeps the confidence it has.

Below ``care.archive_below`` a fact is archived: ``status = 'archived'`` and ``expired_at`` set. Recall
skips it; the facts API and history still show it. Nothing is deleted. Pinned and essential facts, and
facts not active, never decay.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime

import asyncpg

from memory import db
from memory.care.pages import UserKey, sweep
from memory.config import CareConfig

_DECAY = """
WITH changed AS (
    SELECT tenant_id, id, last_use, due, confidence AS was,
           (confidence * power(0.5, (due - charged) / $5::float8))::real AS confidence
    FROM (
        SELECT f.tenant_id, f.id, f.confidence, use.last_use,
               -- Days already charged count only since the same last use.
               CASE WHEN f.decay_anchor IS DISTINCT FROM use.last_use THEN 0 ELSE f.decay_days END AS charged,
               greatest(0, floor(extract(epoch FROM $3::timestamptz - use.last_use) / 86400)::int - $4::int)
                 AS due
        FROM memory_facts f
        JOIN unnest($1::uuid[], $2::uuid[]) AS u (tenant_id, user_id)
          ON f.tenant_id = u.tenant_id AND f.user_id = u.user_id
        CROSS JOIN LATERAL (
            SELECT greatest(f.updated_at, coalesce(f.last_recalled_at, f.updated_at)) AS last_use
        ) AS use
        WHERE f.status = 'active' AND NOT f.pinned AND NOT f.essential
    ) AS facts
    WHERE due > charged
    LIMIT $7
)
UPDATE memory_facts f
SET decay_days = c.due,
    decay_anchor = c.last_use,
    confidence = c.confidence,
    status = CASE WHEN c.confidence < $6 THEN 'archived' ELSE f.status END,
    expired_at = CASE WHEN c.confidence < $6 THEN $3 ELSE f.expired_at END
FROM changed c
WHERE f.tenant_id = c.tenant_id AND f.id = c.id
  -- Rechecked on the row as it is when locked: a fact reinforced, recalled, pinned, superseded or merged
  -- since the snapshot is left alone (it is looked at again next run).
  AND f.status = 'active' AND NOT f.pinned AND NOT f.essential AND f.confidence = c.was
  AND greatest(f.updated_at, coalesce(f.last_recalled_at, f.updated_at)) = c.last_use
RETURNING f.status = 'archived' AS archived
"""

#: Facts one statement decays at most: each batch is its own short transaction.
BATCH = 1000


async def decay_page(
    pool: asyncpg.Pool, config: CareConfig, page: list[UserKey], now: datetime
) -> Counter[str]:
    """Decay the page's users' facts, :data:`BATCH` at a time, until none is due."""
    changes: Counter[str] = Counter()
    while True:
        async with db.transaction(pool) as conn:
            rows = await conn.fetch(
                _DECAY,
                [t for t, _ in page],
                [u for _, u in page],
                now,
                config.decay_grace_days,
                config.decay_half_life_days,
                config.archive_below,
                BATCH,
            )
        for row in rows:
            changes["archived" if row["archived"] else "decayed"] += 1
        if len(rows) < BATCH:
            return changes


async def decay_stale_facts(
    pool: asyncpg.Pool,
    config: CareConfig,
    now: datetime,
    *,
    user: str | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Counter[str]:
    """Decay every user's unused facts as of ``now``; returns how many facts decayed and were archived,
    and how many users were looked at."""
    return await sweep(
        pool,
        config.batch_users,
        lambda page: decay_page(pool, config, page, now),
        user=user,
        tenant_id=tenant_id,
    )
