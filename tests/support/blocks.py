"""Facts remembered through the API, and the memory block read back out of a sent message."""

from __future__ import annotations

from typing import Any

import httpx

from proxy.memory_block import CLOSE, OPEN


def remember(client: httpx.Client, user: str, *facts: dict[str, Any]) -> None:
    response = client.post("/v1/facts", json={"user_id": user, "facts": list(facts)})
    assert response.status_code == 200, response.text


def block_of(message: dict[str, Any]) -> str:
    content = message["content"]
    text = content if isinstance(content, str) else content[-1]["text"]
    assert text.count(OPEN) == 1
    assert text.count(CLOSE) == 1
    return text[text.index(OPEN) : text.index(CLOSE) + len(CLOSE)]
