"""Explicit dates in a query ("on 9 July, 2022", "in January 2023", "in 2022"), as time windows.

Facts carry their date in ``valid_from`` (world time), not in their text, so a question that names a date
cannot find it by meaning or wording. Recall boosts facts that fall in a window the query names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
            ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
            ("october", "oct"), ("november", "nov"), ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YEAR = r"(19\d\d|20\d\d)"
_FLAGS = re.IGNORECASE | re.ASCII  # ASCII: "APRİL" must not match "april" and then miss the month table
_PATTERNS = (
    # 2022-07-09
    ("day", re.compile(rf"\b{_YEAR}-(\d\d)-(\d\d)\b", re.ASCII)),
    # 9 July 2022, 9th of July, 2022
    (
        "day",
        re.compile(
            rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+({_MONTH})\.?,?\s+{_YEAR}\b", re.I | re.ASCII
        ),
    ),
    # July 9, 2022
    ("day", re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+{_YEAR}\b", _FLAGS)),
    # July 2022
    ("month", re.compile(rf"\b({_MONTH})\.?,?\s+(?:of\s+)?{_YEAR}\b", _FLAGS)),
    # 2022
    ("year", re.compile(rf"\b{_YEAR}\b", re.ASCII)),
)

Window = tuple[datetime, datetime]
#: Days a day's window reaches past it.
DAY_SLACK = 3


def _next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1)
    return moment.replace(month=moment.month + 1)


def windows(text: str) -> list[Window]:
    """The windows the dates in ``text`` name, most precise first; dates inside a matched one are not
    counted again at a coarser grain ("9 July 2022" is one day, not also a month and a year)."""
    found: list[Window] = []
    taken: list[tuple[int, int]] = []
    for grain, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(start <= match.start() < end for start, end in taken):
                continue
            window = _window(grain, match)
            if window is not None:
                found.append(window)
                taken.append(match.span())
    return found


def _window(grain: str, match: re.Match[str]) -> Window | None:
    groups = match.groups()
    try:
        if grain == "day":
            if groups[0].isdigit() and len(groups[0]) == 4:
                start = datetime(int(groups[0]), int(groups[1]), int(groups[2]), tzinfo=UTC)
            elif groups[0].isdigit():
                start = datetime(int(groups[2]), _MONTHS[groups[1].lower()], int(groups[0]), tzinfo=UTC)
            else:
                start = datetime(int(groups[2]), _MONTHS[groups[0].lower()], int(groups[1]), tzinfo=UTC)
            # A fact is dated when it was told, which is on or a little after the day it happened.
            return start, start + timedelta(days=DAY_SLACK)
        if grain == "month":
            start = datetime(int(groups[1]), _MONTHS[groups[0].lower()], 1, tzinfo=UTC)
            return start, _next_month(start)
        start = datetime(int(groups[0]), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    except (ValueError, KeyError):
        return None
