"""Recall's server time for long messages: one user with 1,000 facts, asked messages of every length up to
the proxy's query cap (``proxy.remember.MAX_QUERY_CHARS``), each with two earlier user turns as context.

A message is chit-chat (generated fact sentences told in the first person) ending in one of the set's
questions, so that it reads as people write to a chatbot: context first, the question last. Lengths are
in characters; every message is new, so the query-embedding cache never helps.
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from bench.locomo.metrics import percentile
from bench.paraphrase import dataset, metrics
from bench.perf import corpus

USER = "long-messages"
FACTS = 1000
#: Characters of a message; the last is the proxy's cap on the query it recalls for.
LENGTHS = (100, 500, 1000, 2000)
PER_LENGTH = 60
#: Facts per ``POST /v1/facts`` call.
BATCH = 250


def _chatter(rng: random.Random, pool: list[str], length: int, question: str) -> str:
    """First-person chit-chat of about ``length`` characters, ending in ``question``."""
    sentences: list[str] = []
    size = len(question)
    while size < length:
        sentence = rng.choice(pool)
        sentence = f"I {sentence[0].lower()}{sentence[1:]}."
        sentences.append(sentence)
        size += len(sentence) + 1
    text = " ".join([*sentences, question])
    return text[-length:] if len(text) > length else text


def messages(users: list[dataset.User], seed: int = 5) -> list[tuple[int, str, list[str]]]:
    """``(length, message, context)`` for every length, :data:`PER_LENGTH` each."""
    rng = random.Random(seed)
    pool = corpus.fact_pool(3000, seed=seed)
    questions = [q.text for u in users for q in u.questions if len(q.text) < 200]
    out: list[tuple[int, str, list[str]]] = []
    seen: set[str] = set()
    for length in LENGTHS:
        while len([m for m in out if m[0] == length]) < PER_LENGTH:
            text = _chatter(rng, pool, length, rng.choice(questions))
            if text not in seen:  # every message new: the query cache must not help
                seen.add(text)
                context = [_chatter(rng, pool, length // 2, rng.choice(questions)) for _ in range(2)]
                out.append((length, text, context))
    return out


def load(http: httpx.Client) -> None:
    facts = [{"text": text, "category": "other"} for text in corpus.fact_pool(FACTS, seed=3)]
    for start in range(0, len(facts), BATCH):
        response = http.post("/v1/facts", json={"user_id": USER, "facts": facts[start : start + BATCH]})
        response.raise_for_status()


def run(http: httpx.Client, users: list[dataset.User], *, history: bool) -> dict[str, Any]:
    """Server time (``Server-Timing`` embed + db) per message length, in milliseconds."""
    load(http)
    times: dict[int, list[float]] = {length: [] for length in LENGTHS}
    for length, text, context in messages(users):
        body: dict[str, Any] = {"user_id": USER, "query": text}
        if history:
            body["context"] = context
        response = http.post("/v1/recall", json=body)
        response.raise_for_status()
        if not response.json()["facts"]:
            raise RuntimeError(f"a long message recalled nothing for a user with {FACTS} facts")
        timing = metrics.server_timing(response.headers.get("server-timing", ""))
        times[length].append(timing.get("embed", 0.0) + timing.get("db", 0.0))
    every = [t for ts in times.values() for t in ts]
    return {
        "facts": FACTS,
        "by_length": {
            str(length): {f"p{q}": round(percentile(ts, q), 2) for q in (50, 95, 99)}
            for length, ts in times.items()
        },
        "all": {f"p{q}": round(percentile(every, q), 2) for q in (50, 95, 99)},
    }
