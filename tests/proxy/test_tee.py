"""What the tee keeps of each API's exchanges reads, to extraction, as the same conversation sent to chat.

One conversation, two turns: the user works at Google, then starts at Apple (which supersedes it). It goes
through chat completions, the Responses API (the client sending the history, or continuing the stored
response with ``previous_response_id``) and Anthropic's Messages API, plain and streamed. The fake
provider gives every dialect the same reply, so each must show the extraction LLM exactly what chat does
and leave the user with the same facts.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.support.extraction import Body, extracted
from tests.support.llm import FakeLLM
from tests.support.servers import ServerThread
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.usefixtures("db")

FIRST = "I work at Google as a data engineer."
SECOND = "Big news: I just started a new job at Apple!"
REPLY = "Congratulations, that is good to hear."


def _chat(stream: bool) -> list[tuple[str, Body]]:
    history = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": REPLY}]
    return [
        ("/v1/chat/completions", {"model": "fake-chat", "stream": stream, "messages": history[:1]}),
        (
            "/v1/chat/completions",
            {
                "model": "fake-chat",
                "stream": stream,
                "messages": [*history, {"role": "user", "content": SECOND}],
            },
        ),
    ]


def _responses(stream: bool) -> list[tuple[str, Body]]:
    history = [
        {"role": "user", "content": FIRST},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": REPLY}]},
        {"role": "user", "content": [{"type": "input_text", "text": SECOND}]},
    ]
    return [
        ("/v1/responses", {"model": "fake-chat", "stream": stream, "input": FIRST}),
        ("/v1/responses", {"model": "fake-chat", "stream": stream, "input": history}),
    ]


def _continued(first: Any) -> dict[str, Any]:
    return {"model": "fake-chat", "previous_response_id": first["id"], "input": SECOND}


def _anthropic(stream: bool) -> list[tuple[str, Body]]:
    body = {"model": "claude-fake", "max_tokens": 64, "stream": stream}
    history = [
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": [{"type": "text", "text": REPLY}]},
        {"role": "user", "content": [{"type": "text", "text": SECOND}]},
    ]
    return [
        ("/anthropic/v1/messages", {**body, "messages": history[:1]}),
        ("/anthropic/v1/messages", {**body, "messages": history}),
    ]


VARIANTS: dict[str, list[tuple[str, Body]]] = {
    "chat-streamed": _chat(True),
    "responses": _responses(False),
    "responses-streamed": _responses(True),
    "responses-continued": [_responses(False)[0], ("/v1/responses", _continued)],
    "anthropic": _anthropic(False),
    "anthropic-streamed": _anthropic(True),
}


@pytest.mark.parametrize("variant", VARIANTS)
async def test_every_api_is_extracted_as_the_same_conversation_sent_to_chat(
    variant: str,
    proxy: ServerThread,
    fake: FakeUpstream,
    llm: FakeLLM,
    llm_url: str,
    redis_url: str,
    pg_dsn: str,
    embedder: Any,
    db: asyncpg.Pool,
) -> None:
    llm.on("work at Google", {"facts": [{"text": "Works at Google", "slot": "employer", "value": "Google"}]})
    llm.on("job at Apple", {"facts": [{"text": "Works at Apple", "slot": "employer", "value": "Apple"}]})
    run = {
        "headers": {"x-fake-reply": REPLY},
        "llm": llm,
        "llm_url": llm_url,
        "redis_url": redis_url,
        "pg_dsn": pg_dsn,
        "embedder": embedder,
        "db": db,
    }
    chat = await extracted(proxy.url, "via-chat", _chat(False), **run)
    assert chat.conversations == [
        [{"role": "user", "content": FIRST}, {"role": "assistant", "content": REPLY}],
        [{"role": "user", "content": SECOND}, {"role": "assistant", "content": REPLY}],
    ]
    assert chat.facts == [
        ("Works at Apple", "employer", "Apple", "active"),
        ("Works at Google", "employer", "Google", "superseded"),
    ]
    other = await extracted(proxy.url, f"via-{variant}", VARIANTS[variant], **run)
    assert other == chat
