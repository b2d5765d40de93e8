"""When two close facts are one: numbers, negation, dates and slots tell them apart; metadata of both is
kept when they merge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from memory.sameness import compatible, dates_agree, merge_metadata

JAN = datetime(2024, 1, 10, tzinfo=UTC)
JUN = datetime(2024, 6, 1, tzinfo=UTC)


def same(a: str, b: str, **dates: Any) -> bool:
    spans = {"valid_from": None, "other_valid_from": None, "valid_to": None, "other_valid_to": None} | dates
    slots = {"slot": dates.pop("slot", None), "other_slot": dates.pop("other_slot", None)}
    spans = {k: v for k, v in spans.items() if k not in slots}
    return compatible(a, b, **slots, **spans)


def test_rewordings_are_the_same_fact() -> None:
    assert same("Lives in Denver", "Is living in Denver")
    assert same("Has 2 cats", "Owns 2 cats")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is vegetarian", "Is not vegetarian"),
        ("Eats meat", "Doesn't eat meat"),
        ("Works at Google", "No longer works at Google"),
        ("Visited Paris in 2019", "Visited Paris in 2021"),
        ("Has 2 cats", "Has 3 cats"),
    ],
)
def test_negation_and_numbers_tell_close_facts_apart(a: str, b: str) -> None:
    assert not same(a, b)


def test_dates_and_slots_tell_them_apart() -> None:
    assert not same("Lives in Austin", "Lives in Austin", valid_from=JAN, valid_to=JAN, other_valid_from=JUN)
    assert not same("Lives in Austin", "Lives in Austin", valid_from=JAN, other_valid_from=JUN)
    assert same("Lives in Austin", "Lives in Austin", valid_from=JAN, other_valid_from=JAN.replace(hour=23))
    assert same("Lives in Austin", "Lives in Austin", valid_from=JAN)  # one date unknown: no conflict
    assert not same("Likes Austin", "Likes Austin", slot="home_city", other_slot="favourite_city")


def test_two_stays_in_one_city_are_two_facts() -> None:
    row = {"valid_from": JAN, "valid_to": JAN.replace(month=3)}

    class Fact:
        valid_from, valid_to = JUN, None

    assert not dates_agree(row, Fact())
    Fact.valid_from = JAN
    Fact.valid_to = JAN.replace(month=3)
    assert dates_agree(row, Fact())


def test_merged_metadata_keeps_what_either_source_said() -> None:
    merged = merge_metadata(
        {"source": "chat", "tags": ["a"], "mood": "glad"}, {"source": "chat", "tags": "b", "city": "Oslo"}
    )
    assert merged == {"source": "chat", "tags": ["a", "b"], "mood": "glad", "city": "Oslo"}
    assert merge_metadata({"tags": ["a", "b"]}, {"tags": ["b", "c"]}) == {"tags": ["a", "b", "c"]}
