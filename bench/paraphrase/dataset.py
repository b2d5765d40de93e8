"""The paraphrase set: users' facts as extraction writes them, and questions a person would ask of them.

Written for Mémoire (no public benchmark's items). Each ``data/*.json`` file holds some users::

    {"users": [{"id": "u01", "persona": "...",
                "facts": [{"key": "job", "text": "Works as a nurse at St. Mary's Hospital",
                           "category": "work", "slot": "job_title", "temporal_status": "current"}],
                "questions": [{"kind": "paraphrase", "text": "What do I do for a living?", "gold": ["job"]},
                              {"kind": "followup", "history": ["..."], "text": "And hers?", "gold": [...]},
                              {"kind": "unanswerable", "text": "...", "gold": []}]}]}

Kinds: ``paraphrase`` (no content word in common with its gold facts), ``multi`` (two or more topics in one
message, a gold fact each), ``followup`` (names its subject only through ``history``, the previous user
turns, oldest first) and ``unanswerable`` (nothing stored answers it; ``gold`` is empty).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

DATA = Path(__file__).parent / "data"
Kind = Literal["paraphrase", "multi", "followup", "unanswerable"]
KINDS: tuple[Kind, ...] = ("paraphrase", "multi", "followup", "unanswerable")


class FactItem(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    text: str
    category: str
    slot: str | None = None
    temporal_status: str = "current"


class Question(msgspec.Struct, forbid_unknown_fields=True):
    kind: Kind
    text: str
    gold: list[str]
    history: list[str] = msgspec.field(default_factory=list)


class User(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    facts: list[FactItem]
    questions: list[Question]
    persona: str = ""


class _File(msgspec.Struct, forbid_unknown_fields=True):
    users: list[User]


# Words that carry no topic: a paraphrase may share these with its fact.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours out over own same she should so some such than that
    the their theirs them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves ever still
    also any anything something thing things get got go going gone one ones much many lot lots again really
    s t d ll m re ve don didn doesn isn aren wasn weren haven hasn hadn won wouldn shouldn couldn can't
    let us tell remind know remember like""".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def shares_word(a: str, b: str) -> set[str]:
    """Content words of ``a`` that match one of ``b``: equal, or a shared stem of five letters or more
    ("nursing" and "nurse" share "nurs" only, so four letters count where one word is a prefix of the
    other)."""
    shared: set[str] = set()
    theirs = content_words(b)
    for word in content_words(a):
        for other in theirs:
            short, long_ = sorted((word, other), key=len)
            if (
                word == other
                or (len(short) >= 4 and long_.startswith(short[: max(4, len(short) - 1)]))
                or (len(word) >= 5 and len(other) >= 5 and word[:5] == other[:5])
            ):
                shared.add(word)
    return shared


@dataclass(frozen=True)
class Problem:
    where: str
    what: str


def check(users: list[User]) -> list[Problem]:
    """Everything wrong with the set: unknown gold keys, paraphrases that share a word with their facts,
    kinds without the shape they need."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for user in users:
        if user.id in seen:
            problems.append(Problem(user.id, "user id used twice"))
        seen.add(user.id)
        keys = [f.key for f in user.facts]
        if len(set(keys)) != len(keys):
            problems.append(Problem(user.id, "a fact key is used twice"))
        texts = {f.key: f.text for f in user.facts}
        for n, q in enumerate(user.questions):
            where = f"{user.id} question {n} ({q.kind}: {q.text!r})"
            unknown = [g for g in q.gold if g not in texts]
            if unknown:
                problems.append(Problem(where, f"unknown gold keys {unknown}"))
            if q.kind == "unanswerable" and q.gold:
                problems.append(Problem(where, "an unanswerable question has gold facts"))
            if q.kind != "unanswerable" and not q.gold:
                problems.append(Problem(where, "no gold facts"))
            if q.kind == "multi" and len(q.gold) < 2:
                problems.append(Problem(where, "a multi-topic question needs two gold facts or more"))
            if q.kind == "followup" and not q.history:
                problems.append(Problem(where, "a follow-up needs history"))
            if q.kind == "paraphrase":
                for key in q.gold:
                    if key in texts and (shared := shares_word(q.text, texts[key])):
                        problems.append(Problem(where, f"shares {sorted(shared)} with {key!r}"))
    return problems


def load(data: Path = DATA) -> list[User]:
    users: list[User] = []
    for path in sorted(data.glob("*.json")):
        users.extend(msgspec.json.decode(path.read_bytes(), type=_File).users)
    return users


def main() -> int:
    """``python -m bench.paraphrase.dataset [FILE ...]``: check the set (or some files of it) and count it."""
    paths = [Path(p) for p in sys.argv[1:]]
    users = (
        [u for p in paths for u in msgspec.json.decode(p.read_bytes(), type=_File).users] if paths else load()
    )
    problems = check(users)
    for problem in problems:
        print(f"{problem.where}: {problem.what}")
    counts = {kind: sum(q.kind == kind for u in users for q in u.questions) for kind in KINDS}
    facts = sum(len(u.facts) for u in users)
    print(f"{len(users)} users, {facts} facts, questions {counts}, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
