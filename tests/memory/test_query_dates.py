"""Dates a question names, as the windows recall boosts: each form, the most precise grain only, and
what is not a date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memory.query_dates import DAY_SLACK, windows


def day(y: int, m: int, d: int) -> tuple[datetime, datetime]:
    start = datetime(y, m, d, tzinfo=UTC)
    return start, start + timedelta(days=DAY_SLACK)


@pytest.mark.parametrize(
    "text",
    [
        "What did I do on 2022-07-09?",
        "What did I do on 9 July 2022?",
        "What did I do on the 9th of July, 2022?",
        "What did I do on July 9, 2022?",
        "What did I do on Jul. 9th 2022?",
        "WHAT DID I DO ON 9 JULY 2022",
    ],
)
def test_a_day_in_any_of_its_forms_is_one_window_reaching_a_few_days_past_it(text: str) -> None:
    # A fact is dated when it was told, on or a little after the day it happened.
    assert windows(text) == [day(2022, 7, 9)]


def test_a_month_and_a_year() -> None:
    assert windows("Where was I in January 2023?") == [
        (datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 2, 1, tzinfo=UTC))
    ]
    assert windows("in December of 2022") == [
        (datetime(2022, 12, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC))  # the year turns
    ]
    assert windows("What happened in 2021?") == [
        (datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
    ]


def test_a_date_is_counted_at_its_most_precise_grain_only() -> None:
    # "9 July 2022" is not also July 2022 and 2022; two dates are two windows, the precise first.
    found = windows("Between 9 July 2022 and March 2023, or in 2024?")
    assert found == [
        day(2022, 7, 9),
        (datetime(2023, 3, 1, tzinfo=UTC), datetime(2023, 4, 1, tzinfo=UTC)),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Where do I live?",
        "I have 3000 photos",  # not a year: outside 1900-2099
        "Call me at 555-2022-11",
        "APRİL 2022",  # a dotted capital I is not "april"
    ],
)
def test_what_is_not_a_date_names_no_day_or_month(text: str) -> None:
    assert all(end - start >= timedelta(days=365) for start, end in windows(text))
    assert all(start.month == 1 and start.day == 1 for start, _ in windows(text))


def test_a_day_that_does_not_exist_falls_back_to_its_month() -> None:
    assert windows("on 31 February 2022") == [
        (datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC))
    ]
