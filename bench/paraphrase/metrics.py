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
    separability: float
    """The chance that an answerable question's top score beats an unanswerable one's (ROC AUC): 0.5 means
    no ``min_score`` can cut the unanswerable ones without cutting as many answerable ones."""

    def as_dict(self) -> dict[str, object]:
        return {
            "questions": self.questions,
            "got any fact %": round(self.any_fact, 2),
            "mean facts injected": round(self.mean_facts, 2),
            "mean top score": round(self.mean_top_score, 4),
            "answerable mean top score": round(self.answerable_top_score, 4),
            "top score AUC": round(self.separability, 4),
        }


def unanswerable(answers: Sequence[Answer], injected: int) -> Unanswerable:
    none = [a for a in answers if not a.gold]
    some = [a for a in answers if a.gold]

    def top(items: Sequence[Answer]) -> float:
        return sum(_top(a) for a in items) / len(items) if items else math.nan

    if not none:
        return Unanswerable(0, math.nan, math.nan, math.nan, top(some), math.nan)
    return Unanswerable(
        len(none),
        100.0 * sum(1 for a in none if a.ranked[:injected]) / len(none),
        sum(len(a.ranked[:injected]) for a in none) / len(none),
        top(none),
        top(some),
        auc([_top(a) for a in some], [_top(a) for a in none]),
    )


def _top(answer: Answer) -> float:
    return answer.scores[0] if answer.scores else 0.0


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """ROC AUC: the chance that a positive outranks a negative, ties counting half (Mann-Whitney U)."""
    if not positive or not negative:
        return math.nan
    ordered = sorted([(v, 1) for v in positive] + [(v, 0) for v in negative])
    rank_sum = 0.0
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        mid = (i + j + 1) / 2  # the mean of ranks i+1 .. j
        rank_sum += mid * sum(1 for _, label in ordered[i:j] if label)
        i = j
    n, m = len(positive), len(negative)
    return (rank_sum - n * (n + 1) / 2) / (n * m)


def server_timing(header: str) -> dict[str, float]:
    """A ``Server-Timing`` header's durations by name, in milliseconds."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";dur=")
        if rest:
            out[name] = float(rest)
    return out
