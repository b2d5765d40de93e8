"""Steady traffic for the fault suite: lanes of distinct chat calls, memory on, through one pooled client.

Every call's words carry a marker (``fault-call-<n>``, :data:`bench.faults.provider.MARKER`), so that its
exchange can be found in ``chat_logs`` and in the extraction LLM's counts. A client pools its connections
as the OpenAI SDK does; a call is timed from its send to the end of its answer, and a failure is a status
other than 200 or a transport error.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True, slots=True)
class Call:
    marker: str
    started: float
    ended: float
    failure: str | None
    """None when answered 200."""


@dataclass
class Traffic:
    url: str
    key: str
    lanes: int
    users: int = 20
    calls: list[Call] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def run(self, stop: asyncio.Event) -> None:
        """Send calls from :attr:`lanes` loops until ``stop`` is set."""
        limits = httpx.Limits(max_connections=self.lanes, max_keepalive_connections=self.lanes)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            await asyncio.gather(*(self._lane(client, stop) for _ in range(self.lanes)))

    async def _lane(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            n = next(self._numbers)
            marker = f"fault-call-{n}"
            headers = {"authorization": f"Bearer {self.key}", "x-memoire-user": f"user-{n % self.users}"}
            words = f"Note {marker}: my locker number is {n} and I keep my spare key in it."
            body = {"model": "fake-chat", "messages": [{"role": "user", "content": words}]}
            started = time.monotonic()
            try:
                answer = await client.post(f"{self.url}/v1/chat/completions", headers=headers, json=body)
                failure = None if answer.status_code == 200 else f"{answer.status_code} {answer.text[:120]}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"[:160]
            self.calls.append(Call(marker, started, time.monotonic(), failure))
