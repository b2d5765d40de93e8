"""R@k, MRR and the empty rate of answerable questions; what unanswerable questions get back."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

KS = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class Answer:
    """One question's recall: the keys of the facts returned, best first, and their scores."""

    user: str
    index: int
    kind: str
    gold: tuple[str, ...]
    ranked: list[str]
    scores: list[float]
    seconds: float
    server_ms: dict[str, float]


def recall_at(answer: Answer, k: int) -> float:
    top = set(answer.ranked[:k])
    return sum(1 for g in answer.gold if g in top) / len(answer.gold)


def reciprocal_rank(answer: Answer) -> float:
    gold = set(answer.gold)
    for rank, key in enumerate(answer.ranked, start=1):
        if key in gold:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True, slots=True)
class Score:
    questions: int
    recall: dict[int, float]
    """k → mean recall@k, in percent."""
    mrr: float
    empty: float
    """Percent of questions that got no fact at all."""

    def as_dict(self) -> dict[str, object]:
        return {
            "questions": self.questions,
            **{f"R@{k}": round(v, 2) for k, v in self.recall.items()},
            "MRR": round(self.mrr, 4),
            "empty %": round(self.empty, 2),
        }


def score(answers: Sequence[Answer]) -> Score:
    usable = [a for a in answers if a.gold]
    n = len(usable)
    if not n:
        return Score(0, {k: math.nan for k in KS}, math.nan, math.nan)
    return Score(
        n,
        {k: 100.0 * sum(recall_at(a, k) for a in usable) / n for k in KS},
        sum(reciprocal_rank(a) for a in usable) / n,
        100.0 * sum(1 for a in usable if not a.ranked) / n,
    )


@dataclass(frozen=True, slots=True)
class Unanswerable:
    questions: int
    any_fact: float
    """Percent of unanswerable questions given at least one fact within ``injected`` (the proxy's limit)."""
    mean_facts: float
    """Facts they got, on average, within ``injected``."""
    mean_top_score: float
    """The best returned fact's score, on average (0 for none): low means "low-ranked"."""
    answerable_top_score: float
    """The same for answerable questions, to compare with."""

    def as_dict(self) -> dict[str, object]:
        return {
            "questions": self.questions,
            "got any fact %": round(self.any_fact, 2),
            "mean facts injected": round(self.mean_facts, 2),
            "mean top score": round(self.mean_top_score, 4),
            "answerable mean top score": round(self.answerable_top_score, 4),
        }


def unanswerable(answers: Sequence[Answer], injected: int) -> Unanswerable:
    none = [a for a in answers if not a.gold]
    some = [a for a in answers if a.gold]

    def top(items: Sequence[Answer]) -> float:
        return sum(a.scores[0] if a.scores else 0.0 for a in items) / len(items) if items else math.nan

    if not none:
        return Unanswerable(0, math.nan, math.nan, math.nan, top(some))
    return Unanswerable(
        len(none),
        100.0 * sum(1 for a in none if a.ranked[:injected]) / len(none),
        sum(len(a.ranked[:injected]) for a in none) / len(none),
        top(none),
        top(some),
    )


def server_timing(header: str) -> dict[str, float]:
    """A ``Server-Timing`` header's durations by name, in milliseconds."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if rest:
            out[name] = float(rest)
    return out
