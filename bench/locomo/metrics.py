"""Recall@k of the gold evidence, per category and overall, and latency percentiles.

A question's recall@k is the share of its gold dia_ids found among the dia_ids of the top k facts (the
paper's measure). Questions with no usable gold are skipped (the paper scores them 1) and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.locomo.client import Answer
from bench.locomo.dataset import CATEGORIES

KS = (5, 10, 25)
#: The paper's overall figure leaves out category 5 (adversarial).
PAPER_CATEGORIES = (1, 2, 3, 4)
#: Paper Table 3, DRAGON retriever over observations.
DRAGON_OBSERVATIONS = {5: 56.2, 10: 61.3, 25: 67.5}


def recall_at(answer: Answer, k: int) -> float:
    found = {i for ids in answer.ranked[:k] for i in ids}
    return sum(1 for g in answer.gold if g in found) / len(answer.gold)


def first_hit(answer: Answer) -> int | None:
    """1-based rank of the first fact that carries a gold id, or None."""
    gold = set(answer.gold)
    for rank, ids in enumerate(answer.ranked, start=1):
        if gold.intersection(ids):
            return rank
    return None


@dataclass(frozen=True, slots=True)
class Score:
    questions: int
    recall: dict[int, float]
    """k → mean recall@k, in percent."""

    def as_dict(self) -> dict[str, object]:
        return {"questions": self.questions, **{f"R@{k}": round(v, 2) for k, v in self.recall.items()}}


def score(answers: Sequence[Answer], ks: Iterable[int] = KS) -> Score:
    usable = [a for a in answers if a.gold]
    recall = {
        k: (100.0 * sum(recall_at(a, k) for a in usable) / len(usable)) if usable else math.nan for k in ks
    }
    return Score(len(usable), recall)


def by_category(answers: Sequence[Answer]) -> dict[str, Score]:
    """Per category, then ``overall (1-4)`` and ``overall (1-5)``."""
    out: dict[str, Score] = {}
    for number, name in CATEGORIES.items():
        out[f"{number} {name}"] = score([a for a in answers if a.category == number])
    out["overall (1-4)"] = score([a for a in answers if a.category in PAPER_CATEGORIES])
    out["overall (1-5)"] = score(answers)
    return out


def coverage(answers: Sequence[Answer], reachable: dict[str, set[str]]) -> float:
    """Recall with k unbounded: the share of gold ids that any stored fact carries (the ceiling), %."""
    usable = [a for a in answers if a.gold]
    if not usable:
        return math.nan
    total = sum(sum(1 for g in a.gold if g in reachable[a.sample_id]) / len(a.gold) for a in usable)
    return 100.0 * total / len(usable)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    out = {f"p{q}": round(percentile(ms, q), 2) for q in (50, 95, 99)}
    out["mean"] = round(sum(ms) / len(ms), 2) if ms else math.nan
    out["max"] = round(max(ms), 2) if ms else math.nan
    return out
