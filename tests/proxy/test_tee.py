"""What the tee keeps of each API's exchanges reads, to extraction, as the same conversation sent to chat.

One conversation, two turns: the user works at Google, then starts at Apple (which supersedes it). It goes
through chat completions, the Responses API (the client sending the history, or continuing the stored
response with ``previous_response_id``) and Anthropic's Messages API, plain and streamed. The fake
provider gives every dialect the same reply, so each must show the extraction LLM exactly what chat does
and leave the user with the same facts.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from memory.exchanges import DEFAULT_TENANT_ID, new_id
from proxy.anthropic_messages import MESSAGES
from proxy.responses import RESPONSES
from proxy.tee import CHAT, Capture, revive
from tests.support.extraction import Body, extracted
from tests.support.llm import FakeLLM
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

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


@pytest.mark.parametrize("variant", ["chat", *(v for v in VARIANTS if v != "responses-continued")])
async def test_what_the_journal_keeps_of_an_exchange_builds_the_same_exchange(
    variant: str, fake: FakeUpstream, upstream_url: str
) -> None:
    """A process killed after answering leaves its exchanges in its journal; the process that sweeps it
    must store the very exchange the killed one would have."""
    calls = _chat(False) if variant == "chat" else VARIANTS[variant]
    path, body = calls[-1]
    assert not callable(body)
    dialect = {"/v1/chat/completions": CHAT, "/v1/responses": RESPONSES, "/anthropic/v1/messages": MESSAGES}[
        path
    ]
    url = upstream_url.removesuffix("/v1") + path.removeprefix("/anthropic")
    request = json.dumps(body).encode()
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, content=request, headers={"x-fake-reply": REPLY})
    capture = Capture(
        id=new_id(),
        tenant_id=DEFAULT_TENANT_ID,
        user="journaled",
        session="s",
        model=body["model"],
        occurred_at=datetime.now(UTC),
        request_body=request,
        response_headers=answer.headers,
        chunks=[answer.content[:40], answer.content[40:]],  # as the relay captured them, in pieces
        dialect=dialect,
    )
    kept = capture.build()
    assert kept is not None
    assert REPLY in json.dumps(kept.reply)
    assert revive(capture.record())() == kept


async def test_an_exchange_left_in_the_journal_of_a_killed_process_is_stored(
    start_proxy: ProxyFactory, tmp_path: Path, db: asyncpg.Pool
) -> None:
    """A process answered a call, journaled its exchange and was killed before spooling it: the next API
    process on the same spool stores it."""
    reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": "fake-chat",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                          "finish_reason": "stop"}]}  # fmt: skip
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": FIRST}]}
    code = textwrap.dedent(
        f"""
        import json, os, signal, uuid
        from datetime import UTC, datetime
        from pathlib import Path
        from memory.journal import Journal
        from proxy.tee import CHAT, Capture
        capture = Capture(
            id=uuid.uuid4(), tenant_id=uuid.UUID({str(DEFAULT_TENANT_ID)!r}), user="killed", session=None,
            model="fake-chat", occurred_at=datetime.now(UTC), request_body={json.dumps(body).encode()!r},
            response_headers={{"content-type": "application/json"}}, chunks=[{json.dumps(reply).encode()!r}],
            dialect=CHAT,
        )
        Journal(Path({str(tmp_path / "spool.journal")!r})).append(capture.record())
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    argv = [sys.executable, "-c", code]
    died = await asyncio.to_thread(subprocess.run, argv, cwd=Path(__file__).parents[2], check=False)
    assert died.returncode == -signal.SIGKILL

    start_proxy()  # its spool is tmp_path/spool.sqlite3, its journal beside it

    async def stored() -> list[asyncpg.Record]:
        return await db.fetch(
            "SELECT l.messages, l.reply FROM chat_logs l JOIN users u ON u.id = l.user_id "
            "WHERE u.external_id = 'killed'"
        )

    [row] = await eventually(stored)
    assert row["messages"] == [{"role": "user", "content": FIRST}]
    assert row["reply"]["content"] == REPLY
    assert list((tmp_path / "spool.journal").iterdir()) == []  # swept: the segment is gone
