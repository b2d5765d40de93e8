"""The one write path for facts: embed → dedup → supersede, under a per-user lock.

``POST /v1/facts`` and the extraction job both go through :func:`remember`. For each new fact, in order:

1. **End.** A fact that says something no longer holds (``ends``) ends the matching current fact: status
   ``superseded``, ``valid_to`` and ``expired_at`` set, ``superseded_by`` NULL. Nothing is added.
2. **Dedup.** A fact that means the same as an active one of the same temporal status (same slot and value,
   or embeddings closer than ``memory.dedup_similarity`` without a conflicting slot value) reinforces it:
   sources are merged and confidence raised (noisy-or) once per new source; no row is added. A fact whose
   sources are all already on the existing fact changes nothing, so re-ingesting an exchange is a no-op.
3. **Supersede.** A current fact in a single-valued slot expires the current one (``superseded``,
   ``valid_to`` = the new fact's start, ``superseded_by`` = the new fact), unless it is dated before it: then
   it is stored as a past fact. A future fact schedules the end of the current one (its ``valid_to``).
4. Otherwise the fact is added.

Writes for one user are serialised by a transaction-level advisory lock, so two jobs cannot race.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory import sameness, slots, users
from memory.db import Connection
from memory.embeddings import Vector
from memory.endings import Endings
from memory.facts import EFFECTIVE_TEMPORAL, NewFact, Outcome


@dataclass(frozen=True, slots=True)
class Result:
    id: uuid.UUID
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Policy:
    dedup_similarity: float


async def remember(
    conn: Connection,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    facts: Sequence[NewFact],
    vectors: Sequence[Vector],
    model: str,
    policy: Policy,
    sources: Sequence[uuid.UUID] = (),
    now: datetime,
) -> list[Result]:
    """Apply ``facts`` (with their ``vectors``, embedded by ``model``) in the caller's transaction."""
    await users.lock(conn, tenant_id, user_id)
    writer = _Writer(conn, tenant_id, user_id, model, policy, list(sources), now)
    return [await writer.apply(fact, vector) for fact, vector in zip(facts, vectors, strict=True)]


class _Writer(Endings):
    def __init__(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        model: str,
        policy: Policy,
        sources: list[uuid.UUID],
        now: datetime,
    ) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.model = model
        self.policy = policy
        self.sources = sources
        self.now = now

    async def apply(self, fact: NewFact, vector: Vector) -> Result:
        observed = fact.observed_at or self.now
        # Judged as of now, like stored facts: a plan whose day has come is current, a fact whose end has
        # passed is past (a backdated exchange, a replay).
        if fact.temporal_status == "future" and fact.valid_from is not None and fact.valid_from <= self.now:
            fact.temporal_status = "current"
        over = fact.valid_to is not None and fact.valid_to <= self.now
        if fact.temporal_status in ("current", "future") and over and not fact.ends:
            fact.temporal_status = "past"
        if fact.ends:
            ended = await self._already_ended(fact, observed) or await self._end(fact, vector, observed)
            if ended is not None:
                return Result(ended, "superseded_existing")
            fact.temporal_status = "past"
        same = await self._same(fact, vector)
        if same is not None:
            await self._reinforce(same, fact)
            return Result(same["id"], "merged")
        if slots.is_single(fact.slot) and fact.temporal_status in ("current", "future"):
            return await self._supersede(fact, vector, observed)
        return Result(await self._insert(fact, vector, observed), "added")

    # -- finding ---------------------------------------------------------------------------------------

    async def _in_slot(self, slot: str, temporal: tuple[str, ...] = ("current",)) -> list[Any]:
        """Active facts of ``slot`` whose effective temporal status is in ``temporal``, newest first."""
        return await self.conn.fetch(
            f"""SELECT f.id, f.value, f.valid_from, f.valid_to, f.observed_at, f.temporal_status,
                       {EFFECTIVE_TEMPORAL} AS effective
                FROM memory_facts f
                WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.slot = $3 AND f.status = 'active'
                  AND {EFFECTIVE_TEMPORAL} = ANY($4::text[])
                ORDER BY coalesce(f.valid_from, f.observed_at) DESC""",
            self.tenant_id,
            self.user_id,
            slot,
            list(temporal),
        )

    async def _same(self, fact: NewFact, vector: Vector) -> Any | None:
        """An active fact, of the same effective temporal status, that says what ``fact`` says."""
        value = slots.normalize_value(fact.value)
        if fact.slot and value:
            rows = await self.conn.fetch(
                f"""SELECT f.id, f.slot, f.value, f.text, f.confidence, f.source_chat_log_ids, f.metadata,
                           f.valid_from, f.valid_to
                    FROM memory_facts f
                    WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.slot = $3 AND f.status = 'active'
                      AND {EFFECTIVE_TEMPORAL} = $4""",
                self.tenant_id,
                self.user_id,
                fact.slot,
                fact.temporal_status,
            )
            for candidate in rows:
                if slots.normalize_value(candidate["value"]) == value and sameness.dates_agree(
                    candidate, fact
                ):
                    return candidate
        row = await self.conn.fetchrow(
            f"""SELECT f.id, f.slot, f.value, f.text, f.confidence, f.source_chat_log_ids, f.metadata,
                       f.valid_from, f.valid_to, 1 - (f.embedding <=> $5) AS similarity
                FROM memory_facts f
                WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active'
                  AND {EFFECTIVE_TEMPORAL} = $3 AND f.embedding_model = $4 AND f.embedding_dim = $6
                ORDER BY f.embedding <=> $5 LIMIT 1""",
            self.tenant_id,
            self.user_id,
            fact.temporal_status,
            self.model,
            vector,
            int(vector.shape[0]),
        )
        if row is None or row["similarity"] < self.policy.dedup_similarity:
            return None
        if fact.slot and row["slot"] == fact.slot and value and slots.normalize_value(row["value"]) != value:
            return None  # close in wording, different value: "works at Google" vs "works at Apple"
        agrees = sameness.compatible(
            fact.text,
            row["text"],
            slot=fact.slot,
            other_slot=row["slot"],
            valid_from=fact.valid_from,
            other_valid_from=row["valid_from"],
            valid_to=fact.valid_to,
            other_valid_to=row["valid_to"],
        )
        return row if agrees else None

    # -- writing ---------------------------------------------------------------------------------------

    async def _supersede(self, fact: NewFact, vector: Vector, observed: datetime) -> Result:
        start = fact.valid_from or observed
        assert fact.slot is not None
        current = await self._in_slot(fact.slot)
        value = slots.normalize_value(fact.value)
        for row in current:
            if value and slots.normalize_value(row["value"]) == value and fact.temporal_status == "current":
                await self._reinforce(await self._reload(row["id"]), fact)
                return Result(row["id"], "merged")
        newest = max((row["valid_from"] or row["observed_at"] for row in current), default=None)
        if newest is not None and start < newest:
            # Dated before what we know now: it cannot supersede it, so it is history.
            fact.temporal_status = "past"
            if fact.valid_to is None or fact.valid_to > newest:
                fact.valid_to = max(newest, fact.valid_from) if fact.valid_from else newest
            same = await self._same(fact, vector)
            if same is not None:
                await self._reinforce(same, fact)
                return Result(same["id"], "merged")
            return Result(await self._insert(fact, vector, observed), "added")
        new_id = await self._insert(fact, vector, observed)
        plans = await self._in_slot(fact.slot, ("future",))
        if fact.temporal_status == "future":
            # One plan per single-valued slot: a new plan replaces the earlier ones, and what they would
            # have ended goes on until the new one starts.
            replaced = [row["id"] for row in plans if row["id"] != new_id]
            if replaced:
                await self.conn.execute(
                    """UPDATE memory_facts SET valid_to = NULL, superseded_by = NULL, updated_at = now()
                       WHERE tenant_id = $1 AND superseded_by = ANY($2::uuid[]) AND status = 'active'""",
                    self.tenant_id,
                    replaced,
                )
                for plan in replaced:
                    await self._expire(plan, self.now, new_id)
                current = await self._in_slot(fact.slot)
            if fact.valid_from is not None:
                for row in current:
                    if row["valid_to"] is None or row["valid_to"] > fact.valid_from:
                        # Scheduled: it stays current until the planned fact starts.
                        await self.conn.execute(
                            """UPDATE memory_facts
                               SET valid_to = greatest($3, coalesce(valid_from, $3)), superseded_by = $4,
                                   updated_at = now()
                               WHERE tenant_id = $1 AND id = $2""",
                            self.tenant_id,
                            row["id"],
                            fact.valid_from,
                            new_id,
                        )
            return Result(new_id, "superseded_existing" if replaced else "added")
        for row in current:
            await self._expire(row["id"], start, new_id)
        # A plan that came true (the same value, now current) is done; one for another value still stands.
        fulfilled = [row["id"] for row in plans if value and slots.normalize_value(row["value"]) == value]
        for plan in fulfilled:
            await self._expire(plan, start, new_id)
        return Result(new_id, "superseded_existing" if current or fulfilled else "added")

    async def _reload(self, fact_id: uuid.UUID) -> Any:
        return await self.conn.fetchrow(
            """SELECT id, value, confidence, source_chat_log_ids, metadata, valid_from, valid_to
               FROM memory_facts
               WHERE tenant_id = $1 AND id = $2""",
            self.tenant_id,
            fact_id,
        )

    async def _expire(self, fact_id: uuid.UUID, valid_to: datetime, superseded_by: uuid.UUID | None) -> None:
        await self.conn.execute(
            """UPDATE memory_facts
               SET status = 'superseded', expired_at = $3, superseded_by = $5, updated_at = now(),
                   valid_to = CASE WHEN valid_to IS NULL OR valid_to > $4
                                   THEN greatest($4, coalesce(valid_from, $4)) ELSE valid_to END
               WHERE tenant_id = $1 AND id = $2""",
            self.tenant_id,
            fact_id,
            self.now,
            valid_to,
            superseded_by,
        )

    async def _reinforce(self, row: Any, fact: NewFact) -> None:
        known = set(row["source_chat_log_ids"])
        new_sources = [s for s in self.sources if s not in known]
        confidence = float(row["confidence"])
        if new_sources:
            # Noisy-or: each independent source that says it again makes it likelier.
            for _ in new_sources:
                confidence = 1 - (1 - confidence) * (1 - fact.confidence)
            confidence = min(confidence, 0.99)
        else:
            confidence = max(confidence, fact.confidence)
        metadata = sameness.merge_metadata(row["metadata"], fact.metadata)
        valid_from = min((d for d in (row["valid_from"], fact.valid_from) if d is not None), default=None)
        if valid_from is not None and row["valid_to"] is not None and valid_from > row["valid_to"]:
            valid_from = row["valid_from"]
        if (
            not new_sources
            and confidence == float(row["confidence"])
            and metadata == row["metadata"]
            and valid_from == row["valid_from"]
        ):
            return  # nothing new: a replay
        await self.conn.execute(
            """UPDATE memory_facts
               SET confidence = $3, source_chat_log_ids = source_chat_log_ids || $4::uuid[], metadata = $5,
                   valid_from = $6, updated_at = now()
               WHERE tenant_id = $1 AND id = $2""",
            self.tenant_id,
            row["id"],
            confidence,
            new_sources,
            metadata,
            valid_from,
        )

    async def _insert(self, fact: NewFact, vector: Vector, observed: datetime) -> uuid.UUID:
        fact_id: uuid.UUID = await self.conn.fetchval(
            """INSERT INTO memory_facts
                   (tenant_id, user_id, text, category, slot, value, temporal_status, valid_from, valid_to,
                    observed_at, confidence, importance, embedding, embedding_model, embedding_dim,
                    source_chat_log_ids, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
               RETURNING id""",
            self.tenant_id,
            self.user_id,
            fact.text,
            fact.category,
            fact.slot,
            fact.value,
            fact.temporal_status,
            fact.valid_from,
            fact.valid_to,
            observed,
            fact.confidence,
            fact.importance,
            vector,
            self.model,
            int(vector.shape[0]),
            self.sources,
            fact.metadata,
        )
        return fact_id
