"""The two REST calls the benchmark makes: import a conversation's observations, ask its questions."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.locomo.dataset import Conversation, Observation

#: Most facts one ``POST /v1/facts`` takes.
MAX_FACTS = 1000
#: Facts asked for per question; recall@5 and @10 are read off the top of the same list.
RECALL_LIMIT = 25


@dataclass(slots=True)
class Imported:
    """One conversation's import."""

    sample_id: str
    seconds: float
    outcomes: Counter[str]
    fact_ids: dict[str, tuple[str, ...]]
    """Stored fact id → the dia_ids its metadata holds, read back after the import."""
    merged_ids_lost: int
    """Dia_ids of merged observations that the fact they merged into does not carry."""


@dataclass(slots=True)
class Answer:
    """One question's recall: the dia_ids of each returned fact, best first."""

    sample_id: str
    index: int
    category: int
    gold: tuple[str, ...]
    ranked: list[list[str]]
    seconds: float
    scores: list[float] = field(default_factory=list)


def fact(obs: Observation, sample_id: str) -> dict[str, Any]:
    when = obs.when.isoformat()
    return {
        "text": obs.text,
        "valid_from": when,
        "observed_at": when,
        "metadata": {
            "dia_ids": list(obs.dia_ids),
            "speaker": obs.speaker,
            "session": obs.session,
            "locomo": sample_id,
        },
    }


def import_conversation(client: httpx.Client, conv: Conversation) -> Imported:
    outcomes: Counter[str] = Counter()
    merged: list[tuple[str, Observation]] = []
    started = time.perf_counter()
    observations = list(conv.observations)
    for start in range(0, len(observations), MAX_FACTS):
        chunk = observations[start : start + MAX_FACTS]
        body = {"user_id": conv.sample_id, "facts": [fact(o, conv.sample_id) for o in chunk]}
        response = client.post("/v1/facts", json=body)
        response.raise_for_status()
        results = response.json()["results"]
        if len(results) != len(chunk):
            raise RuntimeError(f"{conv.sample_id}: {len(chunk)} facts sent, {len(results)} results")
        for obs, result in zip(chunk, results, strict=True):
            outcomes[result["outcome"]] += 1
            if result["outcome"] == "merged":
                merged.append((str(result["id"]), obs))
    seconds = time.perf_counter() - started
    stored = stored_dia_ids(client, conv.sample_id)
    lost = sum(1 for fact_id, obs in merged for i in obs.dia_ids if i not in stored.get(fact_id, ()))
    return Imported(conv.sample_id, seconds, outcomes, stored, lost)


def stored_dia_ids(client: httpx.Client, user_id: str) -> dict[str, tuple[str, ...]]:
    """Every stored fact of ``user_id`` (active or superseded) → the dia_ids in its metadata."""
    out: dict[str, tuple[str, ...]] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": ["active", "superseded"], "limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/v1/users/{user_id}/facts", params=params)
        response.raise_for_status()
        page = response.json()
        for item in page["facts"]:
            out[str(item["id"])] = _dia_ids(item.get("metadata"))
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def _dia_ids(metadata: dict[str, Any] | None) -> tuple[str, ...]:
    value = (metadata or {}).get("dia_ids", [])
    items = value if isinstance(value, list) else [value]
    return tuple(str(i) for i in items)


def ask(client: httpx.Client, conv: Conversation, limit: int = RECALL_LIMIT) -> list[Answer]:
    answers: list[Answer] = []
    for question in conv.questions:
        body = {"user_id": conv.sample_id, "query": question.text, "limit": limit, "temporal": ["all"]}
        started = time.perf_counter()
        response = client.post("/v1/recall", json=body)
        seconds = time.perf_counter() - started
        response.raise_for_status()
        facts = response.json()["facts"]
        answers.append(
            Answer(
                sample_id=conv.sample_id,
                index=question.index,
                category=question.category,
                gold=question.gold,
                ranked=[list(_dia_ids(f.get("metadata"))) for f in facts],
                seconds=seconds,
                scores=[float(f.get("score") or 0.0) for f in facts],
            )
        )
    return answers


def warm_up(client: httpx.Client, conv: Conversation, times: int = 5) -> None:
    """A few recalls not measured: the first calls pay for connections and lazy imports."""
    for question in conv.questions[:times]:
        body = {"user_id": conv.sample_id, "query": f"warm-up {question.text}", "limit": 5}
        client.post("/v1/recall", json=body).raise_for_status()
