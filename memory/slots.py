"""The slot vocabulary: what a fact is about, and whether the user can have one value of it or many.

This list is a stable API. Names are never renamed or removed; new slots may be added. The extractor is
shown the whole vocabulary and told to prefer it, but open slots (any other ``snake_case`` name) are
allowed: they are multi-valued, so they never supersede anything.

A single-valued slot holds one current value: a new current fact in it expires the previous one ("moved to
Denver" ends "lives in Austin"). A multi-valued slot holds many: a new value is added beside the others, and
only a fact that says a value no longer holds ends it.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

Cardinality = Literal["single", "multi"]


class Slot(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cardinality: Cardinality
    category: str
    description: str


def _slot(name: str, cardinality: Cardinality, category: str, description: str) -> Slot:
    return Slot(name=name, cardinality=cardinality, category=category, description=description)


#: Fact categories, for filtering recall.
CATEGORIES: tuple[str, ...] = (
    "identity",
    "location",
    "work",
    "education",
    "relationship",
    "preference",
    "health",
    "activity",
    "event",
    "plan",
    "other",
)

VOCABULARY: tuple[Slot, ...] = (
    # single-valued
    _slot("name", "single", "identity", "The user's name, as they want to be called."),
    _slot("age", "single", "identity", "The user's age or birth year."),
    _slot("birthday", "single", "identity", "The user's date of birth."),
    _slot("gender", "single", "identity", "The user's gender, as they state it."),
    _slot("home_city", "single", "location", "The city the user lives in now."),
    _slot("home_country", "single", "location", "The country the user lives in now."),
    _slot("nationality", "single", "identity", "The user's nationality."),
    _slot("employer", "single", "work", "The organisation the user works for (not the role)."),
    _slot("job_title", "single", "work", "The user's role or position (not the employer)."),
    _slot("school", "single", "education", "The school or university the user attends now."),
    _slot("field_of_study", "single", "education", "What the user studies now."),
    _slot("relationship_status", "single", "relationship", "Single, dating, engaged, married, divorced…"),
    _slot("partner", "single", "relationship", "The name of the user's partner or spouse."),
    _slot("diet", "single", "health", "The user's diet (vegetarian, vegan, keto…)."),
    _slot("timezone", "single", "location", "The user's time zone."),
    # multi-valued
    _slot("likes", "multi", "preference", "Something the user likes."),
    _slot("dislikes", "multi", "preference", "Something the user dislikes."),
    _slot("hobbies", "multi", "activity", "An activity the user does for fun."),
    _slot("pets", "multi", "relationship", "A pet of the user's (kind and name)."),
    _slot("languages", "multi", "identity", "A language the user speaks or is learning."),
    _slot("allergies", "multi", "health", "Something the user is allergic to."),
    _slot("health_conditions", "multi", "health", "A health condition the user mentions."),
    _slot("family", "multi", "relationship", "A family member (relation and name)."),
    _slot("friends", "multi", "relationship", "A friend of the user's."),
    _slot("skills", "multi", "work", "A skill the user has."),
    _slot("goals", "multi", "plan", "Something the user wants to achieve."),
    _slot("plans", "multi", "plan", "Something the user plans to do, with its date when known."),
    _slot("routines", "multi", "activity", "Something the user does regularly (recurring)."),
    _slot("possessions", "multi", "other", "Something notable the user owns (car, home…)."),
)

SLOTS: dict[str, Slot] = {slot.name: slot for slot in VOCABULARY}

_OPEN_SLOT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be a slot: a vocabulary slot or an open ``snake_case`` one."""
    return name in SLOTS or _OPEN_SLOT.fullmatch(name) is not None


def is_single(slot: str | None) -> bool:
    """Whether ``slot`` holds one current value. Open slots hold many."""
    known = SLOTS.get(slot) if slot else None
    return known is not None and known.cardinality == "single"


def normalize_value(value: str | None) -> str | None:
    """The form two values are compared in: case-folded, spaces collapsed, edge punctuation dropped."""
    if value is None:
        return None
    folded = " ".join(value.casefold().split()).strip(" .,;:!?\"'")
    return folded or None
