"""Streams through the proxy: byte-identical, chunk timing kept, disconnects propagated both ways."""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
import httpx
import openai
import pytest

from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream, streamed_text
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("db")

STREAM = {"model": "fake-chat", "messages": [{"role": "user", "content": "count"}], "stream": True,
          "stream_options": {"include_usage": True}}  # fmt: skip


async def raw_stream(url: str, body: dict[str, object], headers: dict[str, str] | None = None) -> bytes:
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_stream_is_byte_identical_with_usage_and_done(
    proxy: ServerThread, upstream_url: str, db: asyncpg.Pool
) -> None:
    headers = {"x-fake-chunks": "25"}
    direct = await raw_stream(upstream_url.removesuffix("/v1"), STREAM, headers)
    proxied = await raw_stream(proxy.url, STREAM, headers)
    assert proxied == direct
    assert b'"usage"' in proxied
    assert proxied.endswith(b"data: [DONE]\n\n")
    row = await eventually(lambda: db.fetchrow("SELECT reply, usage FROM chat_logs"))
    assert row["reply"] == {"role": "assistant", "content": streamed_text(25)}
    assert row["usage"]["completion_tokens"] == 25


async def test_first_chunk_reaches_client_before_upstream_sends_the_second(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    body = {**STREAM, "model": "fake-gated"}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{proxy.url}/v1/chat/completions", json=body) as r,
    ):
        chunks = r.aiter_raw()
        first = await anext(chunks)
        # The upstream is holding the second chunk until the gate opens: the first came through on its own.
        assert fake.second_chunk_sent_at is None
        assert b"chat.completion.chunk" in first
        fake.gate.set()
        rest = b"".join([c async for c in chunks])
    assert rest.endswith(b"data: [DONE]\n\n")
    assert fake.second_chunk_sent_at is not None


async def test_chunk_gaps_are_kept(proxy: ServerThread) -> None:
    headers = {"x-fake-chunks": "5", "x-fake-interval": "0.15"}
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{proxy.url}/v1/chat/completions", json=STREAM, headers=headers) as response,
    ):
        async for _ in response.aiter_raw():
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Five content chunks 0.15 s apart: no batching into one late burst.
    assert sum(1 for gap in gaps if gap > 0.1) >= 4


async def test_client_disconnect_mid_stream_cancels_upstream(proxy: ServerThread, fake: FakeUpstream) -> None:
    headers = {"x-fake-chunks": "50", "x-fake-interval": "0.2"}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{proxy.url}/v1/chat/completions", json=STREAM, headers=headers) as response,
    ):
        await anext(response.aiter_raw())
    started = time.monotonic()
    await eventually(lambda: _async(fake.cancelled == 1), timeout=3)
    assert time.monotonic() - started < 1.0


async def test_client_disconnect_before_first_byte_cancels_upstream(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    body = {**STREAM, "model": "fake-slow"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.3)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{proxy.url}/v1/chat/completions", json=body, headers={"x-fake-delay": "30"})
    started = time.monotonic()
    await eventually(lambda: _async(fake.cancelled == 1), timeout=3)
    assert time.monotonic() - started < 1.0


async def test_upstream_dropping_mid_stream_aborts_the_client_and_records_nothing(
    proxy: ServerThread, db: asyncpg.Pool
) -> None:
    body = {**STREAM, "model": "fake-disconnect"}
    received = b""
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{proxy.url}/v1/chat/completions", json=body) as r,
    ):
        chunks = r.aiter_raw()
        with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012 (the error comes while reading)
            async for chunk in chunks:
                received += chunk
    assert b"[DONE]" not in received  # the client sees a broken stream, not a clean end
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0) as client:
        await client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "ok"}])
    rows = await eventually(lambda: db.fetch("SELECT model FROM chat_logs"))
    assert [r["model"] for r in rows] == ["fake-chat"]


async def test_heartbeat_fills_silences_between_events_when_enabled(
    start_proxy: ProxyFactory, db: asyncpg.Pool
) -> None:
    proxy = start_proxy(upstream={"heartbeat_idle": 0.1})
    headers = {"x-fake-chunks": "3", "x-fake-interval": "0.45"}
    body = await raw_stream(proxy.url, STREAM, headers)
    assert body.count(b": keep-alive\n\n") >= 4
    assert body.endswith(b"data: [DONE]\n\n")
    # The SDK ignores SSE comments, and the recorded reply has none of them.
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="k", max_retries=0, default_headers=headers
    ) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "again"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == streamed_text(3)
    rows = await eventually(lambda: _rows_if(db, 2))
    assert all(r["reply"]["content"] == streamed_text(3) for r in rows)


async def test_no_heartbeat_by_default_or_on_errors(start_proxy: ProxyFactory, proxy: ServerThread) -> None:
    headers = {"x-fake-chunks": "2", "x-fake-interval": "0.3"}
    assert b"keep-alive" not in await raw_stream(proxy.url, STREAM, headers)
    beating = start_proxy(upstream={"heartbeat_idle": 0.05})
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{beating.url}/v1/chat/completions", json={**STREAM, "model": "fake-error-500"}
        )
    assert response.status_code == 500
    assert b"keep-alive" not in response.content


async def _rows_if(db: asyncpg.Pool, n: int) -> list[asyncpg.Record] | None:
    rows = await db.fetch("SELECT reply FROM chat_logs")
    return rows if len(rows) == n else None


async def _async(value: object) -> object:
    await asyncio.sleep(0)
    return value
