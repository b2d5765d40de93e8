"""``run_deduplication``: active facts of a user that say the same thing become one.

The rules are the write path's (:mod:`memory.writer`, :mod:`memory.sameness`): the same slot and value, or
embeddings closer than ``memory.dedup_similarity`` with nothing concrete (numbers, negation, dates, slot
value) telling them apart, and the same effective temporal status. The older fact is kept and takes the
other's sources, the earliest ``valid_from`` and both metadata; the newer one is marked ``deleted`` with
``superseded_by`` pointing at the one kept, so its history stays readable. A second run finds nothing.

Facts are taken in pages of :data:`PAGE`, each in one short transaction under the user's write lock.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg

from memory import db, sameness, slots, users
from memory.db import Connection
from memory.facts import EFFECTIVE_TEMPORAL

#: Facts looked at in one transaction (under the user's write lock: kept short).
PAGE = 50

_FIELDS = f"""f.id, f.slot, f.value, f.text, f.confidence, f.source_chat_log_ids, f.metadata, f.valid_from,
    f.valid_to, f.created_at, f.embedding, f.embedding_model, f.embedding_dim,
    {EFFECTIVE_TEMPORAL} AS temporal"""

_PAGE = f"""
SELECT {_FIELDS} FROM memory_facts f
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active'
  AND ($3::timestamptz IS NULL OR f.updated_at >= $3)
  AND ($4::timestamptz IS NULL OR (f.created_at, f.id) > ($4, $5::uuid))
ORDER BY f.created_at, f.id LIMIT $6
"""

_NEIGHBOURS = f"""
SELECT {_FIELDS}, 1 - (f.embedding <=> $3) AS similarity, false AS by_value FROM memory_facts f
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active' AND f.id <> $4
  AND {EFFECTIVE_TEMPORAL} = $5 AND f.embedding_model = $6 AND f.embedding_dim = $7
ORDER BY f.embedding <=> $3 LIMIT 5
"""

# For users with more facts than memory.hnsw_threshold: neighbours from the HNSW index (migration 0003),
# with an iterative scan so the user filter still fills the list; the model is a literal for the partial
# index.
_NEIGHBOURS_HNSW = f"""
SELECT {_FIELDS}, 1 - (f.embedding::vector(384) <=> $3::vector(384)) AS similarity, false AS by_value
FROM memory_facts f
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active' AND f.id <> $4
  AND {EFFECTIVE_TEMPORAL} = $5 AND f.embedding_model = 'all-MiniLM-L6-v2'
ORDER BY f.embedding::vector(384) <=> $3::vector(384) LIMIT 5
"""

_SAME_VALUE = f"""
SELECT {_FIELDS}, NULL::float8 AS similarity, true AS by_value FROM memory_facts f
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active' AND f.id <> $3 AND f.slot = $4
  AND lower(btrim(f.value)) = lower(btrim($6))
  AND {EFFECTIVE_TEMPORAL} = $5
"""


def _same(fact: Any, other: Any, threshold: float) -> bool:
    value, other_value = slots.normalize_value(fact["value"]), slots.normalize_value(other["value"])
    same_slot = bool(fact["slot"]) and fact["slot"] == other["slot"]
    if other["by_value"]:  # found by slot: one only when both name the same value, on agreeing dates
        dates = SimpleNamespace(valid_from=fact["valid_from"], valid_to=fact["valid_to"])
        return same_slot and bool(value) and value == other_value and sameness.dates_agree(other, dates)
    if same_slot and value and other_value and value != other_value:
        return False  # close in wording, different value
    if other["similarity"] is None or float(other["similarity"]) < threshold:
        return False
    return sameness.compatible(
        fact["text"],
        other["text"],
        slot=fact["slot"],
        other_slot=other["slot"],
        valid_from=fact["valid_from"],
        other_valid_from=other["valid_from"],
        valid_to=fact["valid_to"],
        other_valid_to=other["valid_to"],
    )


async def _duplicate_of(
    conn: Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, fact: Any, threshold: float, large: bool
) -> Any:
    """An older active fact that says what ``fact`` says, if any."""
    candidates: list[Any] = []
    if fact["slot"] and fact["value"]:
        candidates += await conn.fetch(
            _SAME_VALUE, tenant_id, user_id, fact["id"], fact["slot"], fact["temporal"], fact["value"]
        )
    indexed = fact["embedding_model"] == "all-MiniLM-L6-v2" and fact["embedding_dim"] == 384
    if fact["embedding"] is not None and large and indexed:
        candidates += await conn.fetch(
            _NEIGHBOURS_HNSW, tenant_id, user_id, fact["embedding"], fact["id"], fact["temporal"]
        )
    elif fact["embedding"] is not None:
        candidates += await conn.fetch(
            _NEIGHBOURS, tenant_id, user_id, fact["embedding"], fact["id"], fact["temporal"],
            fact["embedding_model"], fact["embedding_dim"],
        )  # fmt: skip
    older = [c for c in candidates if (c["created_at"], c["id"]) < (fact["created_at"], fact["id"])]
    return next((c for c in older if _same(fact, c, threshold)), None)


async def _merge(conn: Connection, tenant_id: uuid.UUID, kept: Any, dropped: Any) -> None:
    sources = [s for s in dropped["source_chat_log_ids"] if s not in set(kept["source_chat_log_ids"])]
    confidence = max(float(kept["confidence"]), float(dropped["confidence"]))
    for _ in sources:  # noisy-or, as the write path: each independent source makes it likelier
        confidence = min(0.99, 1 - (1 - confidence) * (1 - float(dropped["confidence"])))
    starts = [d for d in (kept["valid_from"], dropped["valid_from"]) if d is not None]
    valid_from = min(starts, default=None)
    if valid_from is not None and kept["valid_to"] is not None and valid_from > kept["valid_to"]:
        valid_from = kept["valid_from"]
    # The one kept inherits what the app and use said of the other: pinned, essential, importance, recalls.
    await conn.execute(
        """UPDATE memory_facts k
           SET source_chat_log_ids = k.source_chat_log_ids || $3::uuid[], confidence = $4,
                  valid_from = $5, metadata = $6, updated_at = now(),
                  pinned = k.pinned OR d.pinned, essential = k.essential OR d.essential,
                  importance = greatest(k.importance, d.importance),
                  recall_count = k.recall_count + d.recall_count,
                  last_recalled_at = greatest(k.last_recalled_at, d.last_recalled_at)
           FROM memory_facts d
           WHERE k.tenant_id = $1 AND k.id = $2 AND d.tenant_id = $1 AND d.id = $7""",
        tenant_id, kept["id"], sources, confidence, valid_from,
        sameness.merge_metadata(kept["metadata"], dropped["metadata"]), dropped["id"],
    )  # fmt: skip
    await conn.execute(
        """UPDATE memory_facts SET status = 'deleted', superseded_by = $3, expired_at = now()
           WHERE tenant_id = $1 AND id = $2""",
        tenant_id,
        dropped["id"],
        kept["id"],
    )


#: Where a user's pass stopped: the last fact looked at, by (created_at, id).
Cursor = tuple[datetime, uuid.UUID]


async def deduplicate_user(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    threshold: float,
    since: datetime | None = None,
    hnsw_threshold: int = 20_000,
) -> Counter[str]:
    """Merge the user's duplicate facts into older ones: every fact, or those changed ``since``. A user
    with more than ``hnsw_threshold`` facts is searched through the HNSW index (approximate)."""
    report, _ = await deduplicate_until(
        pool, tenant_id, user_id, threshold, since=since, hnsw_threshold=hnsw_threshold
    )
    return report


async def deduplicate_until(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    threshold: float,
    *,
    since: datetime | None = None,
    hnsw_threshold: int = 20_000,
    after: Cursor | None = None,
    deadline: float | None = None,
) -> tuple[Counter[str], Cursor | None]:
    """As :func:`deduplicate_user`, from the fact after ``after``, stopping after the fact during which
    ``deadline`` (a :func:`time.monotonic` time) passed: what it did, and where to go on from (None: done).
    A pass over a user with tens of thousands of facts thus spans several jobs, each within its timeout."""
    report: Counter[str] = Counter()
    async with db.connection(pool) as conn:
        large = bool(
            await conn.fetchval(
                """SELECT count(*) > $3 FROM (SELECT 1 FROM memory_facts
                   WHERE tenant_id = $1 AND user_id = $2 AND status = 'active' LIMIT $3 + 1) AS f""",
                tenant_id, user_id, hnsw_threshold,
            )
        )  # fmt: skip
    while True:
        async with db.transaction(pool) as conn:
            await users.lock(conn, tenant_id, user_id)
            if large:
                await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                await conn.execute("SET LOCAL hnsw.ef_search = 100")
            page = await conn.fetch(
                _PAGE, tenant_id, user_id, since,
                after[0] if after else None, after[1] if after else None, PAGE,
            )  # fmt: skip
            for fact in page:
                after = (fact["created_at"], fact["id"])
                if (
                    await conn.fetchval(
                        "SELECT status FROM memory_facts WHERE tenant_id = $1 AND id = $2",
                        tenant_id,
                        fact["id"],
                    )
                    == "active"  # not merged away earlier in this page
                ):
                    kept = await _duplicate_of(conn, tenant_id, user_id, fact, threshold, large)
                    if kept is not None:
                        await _merge(conn, tenant_id, kept, fact)
                        report["merged"] += 1
                if deadline is not None and time.monotonic() >= deadline:
                    break
            else:
                if len(page) < PAGE:
                    return report, None
                continue
        return report, after  # out of time: the batch so far is committed
