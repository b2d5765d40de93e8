"""Endings: a fact that says another no longer holds ("I quit my job", "not moving to Lisbon after all").

Only a fact that had started by the moment of ending can end then, so a backdated "I quit" never ends a job
taken later. What holds now comes before a plan, and a plan only ends when the ending names it. An ending
in the future schedules the end instead. Replaying an ending finds the fact it ended and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from rapidfuzz import fuzz

from memory import slots
from memory.db import Connection
from memory.embeddings import Vector
from memory.facts import EFFECTIVE_TEMPORAL, NewFact

#: Least fuzzy similarity (0-100) of two slot values for "I quit" to end a fact whose value it names.
END_VALUE_MATCH = 85
#: Least cosine similarity for an ending fact without a slot to find the fact it ends.
END_TEXT_SIMILARITY = 0.75


def start_of(row: Any) -> datetime:
    """When a stored fact started to hold: its valid_from, else when it was said."""
    start: datetime = row["valid_from"] or row["observed_at"]
    return start


class Endings:
    """The ending half of the writer (see :mod:`memory.writer`); mixed into it."""

    conn: Connection
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    model: str
    now: datetime

    async def _in_slot(self, slot: str, temporal: tuple[str, ...] = ("current",)) -> list[Any]:
        raise NotImplementedError

    async def _expire(self, fact_id: uuid.UUID, valid_to: datetime, superseded_by: uuid.UUID | None) -> None:
        raise NotImplementedError

    async def _end(self, fact: NewFact, vector: Vector, observed: datetime) -> uuid.UUID | None:
        """End the current (or planned) fact that ``fact`` says no longer holds; its id, or None.

        Only a fact that had started by the moment of ending can end then: a backdated "I quit" does not end
        a job taken later. A named value must match.
        """
        moment = fact.valid_to or fact.valid_from or observed
        value = slots.normalize_value(fact.value)
        target: Any | None = None
        if fact.slot:
            rows = await self._in_slot(fact.slot, ("current", "future"))
            # What holds now comes before a plan ("I quit" is about the job, not the one to come), and a
            # plan only ends when the ending names it.
            started = [r for r in rows if r["effective"] == "current" and start_of(r) <= moment]
            planned = [r for r in rows if r["effective"] == "future"]
            if value is None:
                if slots.is_single(fact.slot) and started:
                    target = started[0]
            else:
                candidates = started + planned
                exact = [r for r in candidates if slots.normalize_value(r["value"]) == value]
                scored = [
                    (fuzz.ratio(value, other), r)
                    for r in candidates
                    if (other := slots.normalize_value(r["value"]))
                ]
                best = max(scored, key=lambda pair: pair[0], default=None)
                if exact:
                    target = exact[0]
                elif best is not None and best[0] >= END_VALUE_MATCH:
                    target = best[1]
        if target is None and not (fact.slot and value):
            row = await self.conn.fetchrow(
                f"""SELECT f.id, f.valid_from, f.observed_at, {EFFECTIVE_TEMPORAL} AS effective,
                           1 - (f.embedding <=> $4) AS similarity
                    FROM memory_facts f
                    WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status = 'active'
                      AND f.embedding_model = $3 AND f.embedding_dim = $5
                      AND {EFFECTIVE_TEMPORAL} IN ('current', 'recurring', 'future')
                    ORDER BY f.embedding <=> $4 LIMIT 1""",
                self.tenant_id,
                self.user_id,
                self.model,
                vector,
                int(vector.shape[0]),
            )
            began = row is not None and (row["effective"] == "future" or start_of(row) <= moment)
            if row is not None and began and row["similarity"] >= END_TEXT_SIMILARITY:
                target = row
        if target is None:
            return None
        if moment > self.now and target["effective"] != "future":
            # "I will quit in May": it holds until then.
            await self.conn.execute(
                """UPDATE memory_facts
                   SET valid_to = greatest($3, coalesce(valid_from, $3)), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2""",
                self.tenant_id,
                target["id"],
                moment,
            )
            scheduled: uuid.UUID = target["id"]
            return scheduled
        if target["effective"] == "future":
            # A cancelled plan: what it was to replace goes on.
            await self.conn.execute(
                """UPDATE memory_facts SET valid_to = NULL, superseded_by = NULL, updated_at = now()
                   WHERE tenant_id = $1 AND superseded_by = $2 AND status = 'active'""",
                self.tenant_id,
                target["id"],
            )
        await self._expire(target["id"], moment, None)
        ended: uuid.UUID = target["id"]
        return ended

    async def _already_ended(self, fact: NewFact, observed: datetime) -> uuid.UUID | None:
        """The fact this ending ended before (a replayed request or exchange), so that a replay is a no-op."""
        if not fact.slot:
            return None
        moment = fact.valid_to or fact.valid_from or observed
        rows = await self.conn.fetch(
            """SELECT id, value FROM memory_facts
               WHERE tenant_id = $1 AND user_id = $2 AND slot = $3 AND status = 'superseded'
                 AND superseded_by IS NULL AND valid_to = greatest($4, coalesce(valid_from, $4))
               ORDER BY expired_at DESC LIMIT 10""",
            self.tenant_id,
            self.user_id,
            fact.slot,
            moment,
        )
        value = slots.normalize_value(fact.value)
        for row in rows:
            if value is None or slots.normalize_value(row["value"]) == value:
                found: uuid.UUID = row["id"]
                return found
        return None
