"""One extraction: ask the LLM, validate, retry bad output, and account for every token spent.

Bad or partial output (invalid JSON, a wrong shape, an answer cut at the token limit) is retried with the
problem stated, up to ``llm.max_attempts`` calls. After that :class:`ExtractionFailed` carries the reason,
and the caller records the chat log as failed, to be seen and replayed. A provider that cannot be reached
raises :class:`LLMUnavailable` at once: that is not the output's fault, and the job is retried later. A
provider that refuses the request itself (400, 413, 422: too long, malformed) fails it at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memory.extraction import prompt, schema
from memory.extraction.llm import LLM, Rejected
from memory.facts import Fact, NewFact

log = logging.getLogger(__name__)


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    model: str | None = None

    def add(self, usage: dict[str, int], model: str) -> None:
        self.calls += 1
        self.prompt_tokens += usage.get("prompt_tokens", 0)
        self.completion_tokens += usage.get("completion_tokens", 0)
        self.total_tokens += usage.get("total_tokens", 0)
        self.model = model

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "model": self.model,
        }


@dataclass
class Extracted:
    facts: list[NewFact]
    usage: Usage
    unusable: list[str] = field(default_factory=list)
    """Facts the LLM gave that could not be stored (each with why), kept for the chat log's record."""
    answer: str | None = None
    """The LLM's answer the facts were read from (None when the LLM was not asked): kept with the chat log
    so that a retried job reads it again (:func:`reread`) rather than asking again."""


class ExtractionFailed(Exception):
    def __init__(self, reason: str, usage: Usage) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage


_SCHEMA = schema.json_schema()


async def extract(
    llm: LLM,
    *,
    messages: list[dict[str, Any]],
    reply: dict[str, Any] | None,
    known: list[Fact],
    occurred_at: datetime,
    max_attempts: int,
) -> Extracted:
    """The facts in one exchange. Raises ExtractionFailed or LLMUnavailable."""
    usage = Usage()
    turns = prompt.conversation(messages, reply)
    if not any(t["role"] == "user" for t in turns):
        return Extracted([], usage)
    base = prompt.user_prompt(turns, known, occurred_at)
    request = base
    problem = "no answer"
    for attempt in range(1, max_attempts + 1):
        try:
            completion = await llm.complete(prompt.SYSTEM, request, _SCHEMA)
        except Rejected as exc:
            raise ExtractionFailed(str(exc), usage) from exc
        usage.add(completion.usage, completion.model)
        if completion.truncated:
            problem = "the answer was cut off at the output-token limit"
        else:
            try:
                return reread(completion.text, usage, occurred_at)
            except ValueError as exc:
                problem = f"invalid output: {exc}"
        log.info("extraction attempt %d/%d unusable: %s", attempt, max_attempts, problem)
        request = base + prompt.retry_prompt(completion.text, problem)
    raise ExtractionFailed(f"{problem} (after {max_attempts} attempts)", usage)


def reread(answer: str, usage: Usage, occurred_at: datetime) -> Extracted:
    """The facts in an answer of the LLM (raises ValueError if it is not a valid one)."""
    parsed = schema.parse(answer)
    facts: list[NewFact] = []
    unusable: list[str] = []
    for item in parsed.facts:
        fact = schema.to_new_fact(item, occurred_at)
        if fact is None:
            unusable.append(item.text)
        else:
            facts.append(fact)
    return Extracted(facts, usage, unusable, answer)
