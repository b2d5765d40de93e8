"""Reading locomo10.json: observations as dated facts, questions with normalised gold evidence.

Evidence and observation ids are normalised with ``D(\\d+):(\\d+)`` (so ``"D8:6; D9:17"`` and
``"D26:14, D26:34"`` give two ids each); a string with no such id (``"D"``, ``"D:11:26"``) is skipped, and an
id that names no turn of the conversation is dropped. Everything skipped or dropped is counted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/work/shared/datasets/locomo/locomo10.json")
#: The session date format: "1:56 pm on 8 May, 2023".
DATE_FORMAT = "%I:%M %p on %d %B, %Y"
CATEGORIES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
_DIA_ID = re.compile(r"D(\d+):(\d+)")
_SESSION_OBS = re.compile(r"session_(\d+)_observation")


@dataclass(frozen=True, slots=True)
class Observation:
    text: str
    speaker: str
    session: int
    dia_ids: tuple[str, ...]
    when: datetime


@dataclass(frozen=True, slots=True)
class Question:
    index: int
    """Position in the conversation's ``qa`` list."""
    text: str
    category: int
    gold: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Conversation:
    sample_id: str
    observations: tuple[Observation, ...]
    questions: tuple[Question, ...]


@dataclass(slots=True)
class Counts:
    """What the loader normalised, skipped or dropped."""

    conversations: int = 0
    sessions: int = 0
    observations: int = 0
    observations_multi_id: int = 0
    observations_without_id: int = 0
    observation_ids_unknown: int = 0
    """Observation ids (after normalising) that name no turn of the conversation."""
    questions: int = 0
    evidence_strings: int = 0
    evidence_split: int = 0
    """Evidence strings that held more than one id."""
    evidence_skipped: list[str] = field(default_factory=list)
    """Evidence strings with no usable id."""
    evidence_ids_unknown: int = 0
    """Evidence ids that name no turn of the conversation (dropped from the gold)."""
    questions_without_evidence: int = 0


def dia_ids(text: str) -> list[str]:
    """The normalised dialogue ids in ``text``: ``"D8:6; D9:17"`` → ``["D8:6", "D9:17"]``."""
    return [f"D{int(s)}:{int(t)}" for s, t in _DIA_ID.findall(text)]


def parse_date(text: str) -> datetime:
    """A session's date, taken as UTC: ``"1:56 pm on 8 May, 2023"`` → 2023-05-08T13:56:00+00:00."""
    return datetime.strptime(text.strip(), DATE_FORMAT).replace(tzinfo=UTC)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path = DEFAULT_PATH, limit: int | None = None) -> tuple[list[Conversation], Counts]:
    raw: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    counts = Counts()
    conversations = [_conversation(item, counts) for item in raw[:limit]]
    return conversations, counts


def _turn_ids(conversation: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for key, value in conversation.items():
        if re.fullmatch(r"session_\d+", key) and isinstance(value, list):
            ids.update(i for turn in value for i in dia_ids(str(turn.get("dia_id", ""))))
    return ids


def _cited(value: Any) -> Iterable[str]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        yield from dia_ids(str(item))


def _conversation(item: dict[str, Any], counts: Counts) -> Conversation:
    conversation = item["conversation"]
    turns = _turn_ids(conversation)
    counts.conversations += 1
    observations: list[Observation] = []
    sessions = sorted(
        (int(m.group(1)), value)
        for key, value in item["observation"].items()
        if (m := _SESSION_OBS.fullmatch(key))
    )
    for number, by_speaker in sessions:
        when = parse_date(conversation[f"session_{number}_date_time"])
        counts.sessions += 1
        for speaker, facts in by_speaker.items():
            for text, cited in facts:
                counts.observations += 1
                ids = tuple(dict.fromkeys(_cited(cited)))
                if not ids:
                    counts.observations_without_id += 1
                if len(ids) > 1:
                    counts.observations_multi_id += 1
                counts.observation_ids_unknown += sum(1 for i in ids if i not in turns)
                observations.append(Observation(str(text), str(speaker), number, ids, when))
    questions = [_question(index, qa, turns, counts) for index, qa in enumerate(item["qa"])]
    return Conversation(str(item["sample_id"]), tuple(observations), tuple(questions))


def _question(index: int, qa: dict[str, Any], turns: set[str], counts: Counts) -> Question:
    counts.questions += 1
    gold: list[str] = []
    for evidence in qa.get("evidence") or []:
        counts.evidence_strings += 1
        ids = dia_ids(str(evidence))
        if not ids:
            counts.evidence_skipped.append(str(evidence))
            continue
        if len(ids) > 1:
            counts.evidence_split += 1
        for one in ids:
            if one not in turns:
                counts.evidence_ids_unknown += 1
            elif one not in gold:
                gold.append(one)
    if not gold:
        counts.questions_without_evidence += 1
    return Question(index, str(qa["question"]), int(qa["category"]), tuple(gold))
