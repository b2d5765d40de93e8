"""The extractor's structured output, validated with msgspec, and its translation into :class:`NewFact`.

The schema sent to the LLM is generated from these structs, so the prompt, the provider's structured-output
mode and the validation can never disagree.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

import msgspec

from memory.facts import NewFact, check_range

Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class ExtractedFact(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One fact as the LLM gives it. Lenient where the LLM is sloppy (a slot written "Home City", a long
    value, a category that is not text): :func:`to_new_fact` tidies those, rather than losing the fact."""

    text: Annotated[str, msgspec.Meta(min_length=1)]
    """One atomic fact about the user, third person, self-contained: "Lives in Denver"."""
    category: str | int | float | None = None
    slot: str | None = None
    value: str | None = None
    temporal_status: Literal["current", "past", "future", "recurring"] = "current"
    valid_from: str | None = None
    """ISO date (YYYY-MM-DD) or date-time when the fact starts to hold."""
    valid_to: str | None = None
    """ISO date or date-time when it stops holding."""
    ends: bool = False
    """True when the user says a fact that held is no longer true (quit a job, moved away)."""
    confidence: Confidence = 0.8
    importance: Confidence = 0.5


class Extraction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    facts: list[ExtractedFact]


def json_schema() -> dict[str, Any]:
    """The output's JSON schema, self-contained (no ``$ref``), for providers' structured-output modes."""
    schema = msgspec.json.schema(Extraction)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return inline(defs[ref.rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    resolved: dict[str, Any] = inline(schema)
    return resolved


_decoder = msgspec.json.Decoder(Extraction)


def parse(text: str) -> Extraction:
    """Validate the LLM's answer. Tolerates a Markdown code fence around the JSON; raises ValueError."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        extraction = _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from exc
    return extraction


def parse_moment(raw: str) -> datetime | None:
    """An ISO date or date-time as an aware datetime (dates at midnight UTC, a month or a year at its first
    day); None if unreadable, so that an odd date never costs the fact."""
    raw = raw.strip()
    try:
        if len(raw) == 4 and raw.isdigit():
            return datetime(int(raw), 1, 1, tzinfo=UTC)
        if len(raw) == 7 and raw[4] == "-":
            return datetime(int(raw[:4]), int(raw[5:]), 1, tzinfo=UTC)
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        check_range(moment, "date")
    except ValueError:
        return None
    return moment


def _snake(raw: str | int | float | None, limit: int) -> str | None:
    """``raw`` in the API's ``snake_case`` form ("Home City" -> "home_city"), or None if nothing is left."""
    if raw is None or isinstance(raw, bool):
        return None
    cleaned = re.sub(r"[^a-z0-9]+", "_", str(raw).strip().lower()).strip("_")[:limit]
    return cleaned if cleaned and cleaned[0].isalpha() else None


def _category(raw: str | int | float | None) -> str | None:
    """The LLM's category in the API's form, or ``other`` when it gave one that cannot be."""
    if raw is None or raw == "":
        return None
    return _snake(raw, 32) or "other"


def to_new_fact(fact: ExtractedFact, observed_at: datetime) -> NewFact | None:
    """The fact to remember, observed when the exchange happened; None if it cannot be one."""
    valid_from = parse_moment(fact.valid_from) if fact.valid_from else None
    valid_to = parse_moment(fact.valid_to) if fact.valid_to else None
    if valid_from and valid_to and valid_to < valid_from:
        valid_to = None
    category = _category(fact.category)
    try:
        return msgspec.convert(
            {
                "text": fact.text.strip()[:2000],
                "category": category or None,
                "slot": _snake(fact.slot, 64),
                "value": fact.value.strip()[:500] or None if fact.value else None,
                "temporal_status": fact.temporal_status,
                "valid_from": valid_from,
                "valid_to": valid_to,
                "observed_at": observed_at,
                "confidence": fact.confidence,
                "importance": fact.importance,
                "ends": fact.ends,
            },
            NewFact,
        )
    except msgspec.ValidationError:
        return None
