"""When two facts say the same thing, and how their metadata combine when they do.

Embeddings put "Is vegetarian" and "Is not vegetarian" (0.93), or "Visited Paris in 2019" and "… in 2021"
(0.90), very close. Closeness alone must never merge them, so two facts are only the same when, beyond their
meaning, nothing concrete tells them apart: the same numbers (dates, years, counts), the same negation, no
conflicting dates, and no conflicting slot.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|without|cannot|can't|won't|isn't|aren't|wasn't|"
    r"weren't|doesn't|don't|didn't|hasn't|haven't|hadn't|no longer|any ?more)\b|n't\b",
    re.IGNORECASE,
)


def _numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def _negated(text: str) -> bool:
    return _NEGATION.search(text) is not None


def _same_day(a: datetime | None, b: datetime | None) -> bool:
    return a is None or b is None or a.astimezone(UTC).date() == b.astimezone(UTC).date()


def _overlap(
    start: datetime | None, end: datetime | None, other_start: datetime | None, other_end: datetime | None
) -> bool:
    """Whether two spans of world time (open where a bound is unknown) share a moment."""
    if end is not None and other_start is not None and end < other_start:
        return False
    return not (other_end is not None and start is not None and other_end < start)


def compatible(
    text: str,
    other_text: str,
    *,
    slot: str | None,
    other_slot: str | None,
    valid_from: datetime | None,
    other_valid_from: datetime | None,
    valid_to: datetime | None,
    other_valid_to: datetime | None,
) -> bool:
    """Whether nothing concrete tells two close facts apart (see the module docstring)."""
    if slot and other_slot and slot != other_slot:
        return False
    if _numbers(text) != _numbers(other_text):
        return False
    if _negated(text) != _negated(other_text):
        return False
    if not _overlap(valid_from, valid_to, other_valid_from, other_valid_to):
        return False
    return _same_day(valid_from, other_valid_from) and _same_day(valid_to, other_valid_to)


def merge_metadata(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Both facts' metadata: keys of either; where both have a key with different values, all the values
    (as a list without repeats), so that nothing either source said is lost."""
    merged = dict(existing)
    for key, value in new.items():
        if key not in merged or merged[key] == value:
            merged[key] = value
            continue
        values: list[Any] = []
        for item in (merged[key], value):
            for element in item if isinstance(item, list) else [item]:
                if element not in values:
                    values.append(element)
        merged[key] = values
    return merged


def dates_agree(row: Any, fact: Any) -> bool:
    """Two facts of one slot and value are one fact unless their dates say otherwise (two stays in Austin)."""
    if not _overlap(fact.valid_from, fact.valid_to, row["valid_from"], row["valid_to"]):
        return False
    return _same_day(fact.valid_from, row["valid_from"]) and _same_day(fact.valid_to, row["valid_to"])
