"""What a fact is: the shape callers give (:class:`NewFact`) and the shape Mémoire returns (:class:`Fact`).

A fact is one atomic statement about an end user ("Lives in Denver"), with an optional slot and value
(``home_city`` = ``Denver``, see :mod:`memory.slots`), a temporal status, world time (``valid_from``,
``valid_to``: when it holds) and system time (``observed_at``: when the user said it; ``created_at`` and
``expired_at``: when Mémoire started and stopped believing it).

The *effective* temporal status is judged at query time: a future fact whose ``valid_from`` has passed is
current, and a current fact whose ``valid_to`` has passed, or that was superseded, is past.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from memory import slots

TemporalStatus = Literal["current", "past", "future", "recurring"]
FactStatus = Literal["active", "superseded", "archived", "deleted"]
Outcome = Literal["added", "merged", "superseded_existing"]

TEMPORAL_STATUSES: tuple[TemporalStatus, ...] = ("current", "past", "future", "recurring")

#: No NUL: PostgreSQL text cannot hold it.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=NO_NUL)]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
#: A moment with its time zone (e.g. 2026-11-21T10:00:00Z).
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
SlotName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Category = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


def check_range(moment: datetime | None, name: str) -> None:
    """Refuse a moment PostgreSQL cannot hold once in UTC (year 1 or 9999 with an offset)."""
    if moment is None:
        return
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} is out of range") from None
    if not 1 <= utc.year <= 9998:
        raise ValueError(f"{name} is out of range")


class NewFact(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A fact to remember, from ``POST /v1/facts`` or from extraction."""

    text: Text
    category: Category | None = None
    slot: SlotName | None = None
    value: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | None = None
    temporal_status: TemporalStatus = "current"
    valid_from: Moment | None = None
    valid_to: Moment | None = None
    observed_at: Moment | None = None
    confidence: Unit = 0.8
    importance: Unit = 0.5
    ends: bool = False
    """The user says this no longer holds ("I quit my job"): the matching current fact is ended."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("valid_from", "valid_to", "observed_at"):
            check_range(getattr(self, name), name)
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        if self.category is None and self.slot in slots.SLOTS:
            self.category = slots.SLOTS[self.slot].category


class Fact(msgspec.Struct, kw_only=True):
    """A stored fact, as the API returns it."""

    id: uuid.UUID
    user_id: str
    text: str
    category: str | None
    slot: str | None
    value: str | None
    temporal_status: TemporalStatus
    """Effective at the time of the query (see the module docstring)."""
    stored_temporal_status: TemporalStatus
    valid_from: datetime | None
    valid_to: datetime | None
    observed_at: datetime
    created_at: datetime
    expired_at: datetime | None
    status: FactStatus
    superseded_by: uuid.UUID | None
    confidence: float
    importance: float
    recall_count: int
    last_recalled_at: datetime | None
    source_chat_log_ids: list[uuid.UUID]
    embedding_model: str | None
    metadata: dict[str, Any]
    pinned: bool = False
    """Set by the app (``PATCH``): the fact never decays."""
    essential: bool = False
    """Promoted by ``optimize_memory``: the fact never decays."""
    score: float | None = None
    """Recall's ranking score (only in recall results)."""


#: The effective temporal status as SQL, over a row aliased ``f`` (see the module docstring).
EFFECTIVE_TEMPORAL = """(CASE
    WHEN f.status = 'superseded' THEN 'past'
    WHEN f.temporal_status = 'future' AND f.valid_from IS NOT NULL AND f.valid_from <= now()
         AND (f.valid_to IS NULL OR f.valid_to > now()) THEN 'current'
    WHEN f.temporal_status IN ('current', 'future') AND f.valid_to IS NOT NULL AND f.valid_to <= now()
         THEN 'past'
    ELSE f.temporal_status END)"""

#: The columns :func:`from_row` reads, over a row aliased ``f`` joined to its user ``u``.
COLUMNS = f"""f.id, u.external_id AS user_external_id, f.text, f.category, f.slot, f.value,
    {EFFECTIVE_TEMPORAL} AS effective_temporal, f.temporal_status, f.valid_from, f.valid_to, f.observed_at,
    f.created_at, f.expired_at, f.status, f.superseded_by, f.confidence, f.importance, f.recall_count,
    f.last_recalled_at, f.source_chat_log_ids, f.embedding_model, f.metadata, f.pinned, f.essential"""


def from_row(row: Any, score: float | None = None) -> Fact:
    return Fact(
        id=row["id"],
        user_id=row["user_external_id"],
        text=row["text"],
        category=row["category"],
        slot=row["slot"],
        value=row["value"],
        temporal_status=row["effective_temporal"],
        stored_temporal_status=row["temporal_status"],
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        observed_at=row["observed_at"],
        created_at=row["created_at"],
        expired_at=row["expired_at"],
        status=row["status"],
        superseded_by=row["superseded_by"],
        confidence=round(float(row["confidence"]), 4),
        importance=round(float(row["importance"]), 4),
        recall_count=row["recall_count"],
        last_recalled_at=row["last_recalled_at"],
        source_chat_log_ids=list(row["source_chat_log_ids"]),
        embedding_model=row["embedding_model"],
        metadata=row["metadata"],
        pinned=row["pinned"],
        essential=row["essential"],
        score=score,
    )
