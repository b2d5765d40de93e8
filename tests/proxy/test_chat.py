"""``POST /v1/chat/completions`` through the proxy, driven by the openai SDK with only base_url changed."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from tests.support.db import fetch_sync
from tests.support.servers import ProxyFactory, ServerThread, proxy_flush
from tests.support.upstream import TOOL_CALLS, FakeUpstream, completion
from tests.support.waiting import eventually, wait_until

pytestmark = pytest.mark.usefixtures("db")


def sdk(proxy: ServerThread, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-client", max_retries=0, **kwargs)


async def logs(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT l.*, u.external_id AS user_name, s.external_id AS session_name FROM chat_logs l
           JOIN users u ON (u.tenant_id, u.id) = (l.tenant_id, l.user_id)
           LEFT JOIN sessions s ON (s.tenant_id, s.id) = (l.tenant_id, l.session_id)
           ORDER BY l.occurred_at"""
    )
    return [dict(r) for r in rows]


async def test_reply_comes_back_unchanged_and_exchange_is_recorded_once(
    proxy: ServerThread, fake: FakeUpstream, db: asyncpg.Pool
) -> None:
    async with sdk(proxy) as client:
        reply = await client.chat.completions.create(
            model="fake-chat",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "I just moved to Denver."},
            ],
            user="alice",
        )
    assert reply.model_dump(exclude_none=True) == openai.types.chat.ChatCompletion.model_validate(
        completion("fake-chat")
    ).model_dump(exclude_none=True)

    rows = await eventually(lambda: logs(db))
    assert len(rows) == 1
    row = rows[0]
    assert row["user_name"] == "alice"
    assert row["source"] == "proxy"
    assert row["model"] == "fake-chat"
    assert row["messages"] == [{"role": "user", "content": "I just moved to Denver."}]
    assert row["reply"] == {"role": "assistant", "content": "Hello from the fake upstream."}
    assert row["usage"]["total_tokens"] == 12
    # The worker has not run in this test: the log waits, pending, with its job queued.
    assert row["status"] == "pending"


def test_sync_sdk_works_unchanged(proxy: ServerThread, fake: FakeUpstream, pg_dsn: str) -> None:
    with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-client", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Hello from the fake upstream."
        stream = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi again"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "

    def replies() -> list[str] | None:
        rows = fetch_sync(pg_dsn, "SELECT reply->>'content' AS c FROM chat_logs ORDER BY occurred_at")
        return [r["c"] for r in rows] if len(rows) == 2 else None

    assert wait_until(replies) == ["Hello from the fake upstream.", "part0 part1 part2 "]


async def test_body_is_forwarded_byte_for_byte_with_unknown_fields(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    body = (
        b'{"model":"fake-chat","messages":[{"role":"user","content":"x","name":"n","future":1}],'
        b'"brand_new_openai_field":{"nested":[1,2,3]},"temperature":0.3000000000000000444}'
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{proxy.url}/v1/chat/completions", content=body,
            headers={"content-type": "application/json", "authorization": "Bearer sk-client"},
        )  # fmt: skip
    assert response.status_code == 200
    assert fake.requests[-1].body == body
    assert response.json()["future_field"] == {"kept": True}


async def test_headers_cross_as_http_requires(proxy: ServerThread, fake: FakeUpstream) -> None:
    async with httpx.AsyncClient() as http:
        del http.headers["accept-encoding"]
        response = await http.post(
            f"{proxy.url}/v1/chat/completions?api-version=2024-10",
            json={"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]},
            headers={
                "authorization": "Bearer sk-client",
                "openai-organization": "org-client",
                "x-custom-header": "kept",
                "x-memoire-user": "bob",
                "connection": "keep-alive, x-hop",
                "x-hop": "dropped",
            },
        )
    sent = fake.requests[-1]
    assert sent.query == "api-version=2024-10"
    assert sent.headers["authorization"] == "Bearer sk-client"
    assert sent.headers["openai-organization"] == "org-client"
    assert sent.headers["x-custom-header"] == "kept"
    assert "x-memoire-user" not in sent.headers
    assert "x-hop" not in sent.headers
    assert sent.headers["accept-encoding"] == "identity"  # the client asked for none; httpx adds none
    for name, value in {
        "x-request-id": "req_fake_123",
        "openai-processing-ms": "42",
        "openai-organization": "org-fake",
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-tokens": "6m0s",
    }.items():
        assert response.headers[name] == value
    assert "server" not in response.headers  # no header of the proxy's own


async def test_upstream_key_is_used_only_when_client_sends_none(
    start_proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    proxy = start_proxy(upstream={"api_key": "sk-server"})
    async with httpx.AsyncClient() as http:
        payload = {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
        await http.post(f"{proxy.url}/v1/chat/completions", json=payload)
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-server"
        await http.post(
            f"{proxy.url}/v1/chat/completions", json=payload, headers={"authorization": "Bearer mine"}
        )
        assert fake.requests[-1].headers["authorization"] == "Bearer mine"


async def test_header_bytes_reach_the_upstream_unchanged_or_are_refused_by_name(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    payload = {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient() as http:
        sent = await http.post(
            f"{proxy.url}/v1/chat/completions", json=payload, headers={"x-note": "café ☕".encode()}
        )
        assert sent.status_code == 200
        assert fake.requests[-1].headers["x-note"] == "café ☕"
        # Bytes that are not UTF-8 cannot be sent as they came: refused, not altered.
        odd = await http.post(
            f"{proxy.url}/v1/chat/completions", json=payload, headers={"x-note": b"caf\xe9"}
        )
    assert odd.status_code == 400
    assert odd.json()["error"]["param"] == "x-note"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(("status", "error"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError),
    (429, openai.RateLimitError), (500, openai.InternalServerError),
])  # fmt: skip
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_come_back_verbatim(
    proxy: ServerThread,
    fake: FakeUpstream,
    db: asyncpg.Pool,
    status: int,
    error: type[Exception],
    stream: bool,
) -> None:
    async with sdk(proxy) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(
                model=f"fake-error-{status}", messages=[{"role": "user", "content": "x"}], stream=stream
            )
    response = caught.value.response  # type: ignore[attr-defined]
    assert response.status_code == status
    assert json.loads(response.content)["error"]["message"] == f"fake error {status}"
    assert response.headers["x-request-id"] == "req_fake_123"
    if status == 429:
        assert response.headers["retry-after"] == "7"
    await proxy_flush(proxy)
    assert await logs(db) == []


async def test_only_new_messages_of_a_conversation_are_recorded(
    proxy: ServerThread, db: asyncpg.Pool
) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My dog is called Rex."},
        {"role": "assistant", "content": "Nice name."},
        {"role": "user", "content": "He is three."},
        {"role": "user", "content": "And loves snow."},
    ]
    async with sdk(proxy) as client:
        await client.chat.completions.create(model="fake-chat", messages=conversation)  # type: ignore[arg-type]
    rows = await eventually(lambda: logs(db))
    assert rows[0]["messages"] == conversation[3:]


async def test_tool_calls_are_recorded_streamed_and_not(proxy: ServerThread, db: asyncpg.Pool) -> None:
    async with sdk(proxy) as client:
        plain = await client.chat.completions.create(
            model="fake-tools", messages=[{"role": "user", "content": "a"}]
        )
        assert [c.model_dump() for c in plain.choices[0].message.tool_calls or []] == TOOL_CALLS
        stream = await client.chat.completions.create(
            model="fake-tools", messages=[{"role": "user", "content": "b"}], stream=True
        )
        async for _ in stream:
            pass
    rows = await eventually(lambda: _n_logs(db, 2))
    for row in rows:
        assert row["reply"]["tool_calls"] == TOOL_CALLS


async def _n_logs(db: asyncpg.Pool, n: int) -> list[dict[str, Any]] | None:
    rows = await logs(db)
    return rows if len(rows) == n else None


async def test_user_and_session_come_from_headers_over_body(proxy: ServerThread, db: asyncpg.Pool) -> None:
    headers = {"X-Memoire-User": "carol", "X-Memoire-Session": "s-1"}
    async with sdk(proxy, default_headers=headers) as client:
        await client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "x"}], user="dave"
        )
    async with sdk(proxy) as client:
        await client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "y"}])
    rows = await eventually(lambda: _n_logs(db, 2))
    assert [(r["user_name"], r["session_name"]) for r in rows] == [("carol", "s-1"), ("default", None)]


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b"{not json", 400, "invalid_json", None),
    (b'{"model": "m"}', 400, "invalid_value", "messages"),
    (b'{"model": "m", "messages": "hello"}', 400, "invalid_value", "messages"),
    (b'{"model": "m", "messages": [{"content": "no role"}]}', 400, "invalid_value", "messages[0].role"),
    (b'{"model": 7, "messages": []}', 400, "invalid_value", "model"),
    (b'{"model": "m", "messages": [], "user": 5}', 400, "invalid_value", "user"),
])  # fmt: skip
async def test_bad_input_gets_an_openai_error_naming_the_field(
    proxy: ServerThread,
    fake: FakeUpstream,
    db: asyncpg.Pool,
    body: bytes,
    status: int,
    code: str,
    param: str | None,
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{proxy.url}/v1/chat/completions", content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    if param:
        assert param in error["message"]
    assert fake.requests == []  # nothing went upstream
    await proxy_flush(proxy)
    assert await logs(db) == []


async def test_oversized_body_is_refused_with_413(start_proxy: ProxyFactory, fake: FakeUpstream) -> None:
    proxy = start_proxy(server={"max_body_bytes": 1000})
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]},
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert fake.requests == []


async def test_unreachable_upstream_gets_502_in_openai_shape(start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(upstream={"url": "http://127.0.0.1:9/v1", "connect_timeout": 1.0})
    async with sdk(proxy) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"  # type: ignore[index]


async def test_compressed_reply_passes_through_and_is_still_recorded(
    proxy: ServerThread, db: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "fake-gzip", "messages": [{"role": "user", "content": "zip it"}]},
            headers={"accept-encoding": "gzip"},
        )
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    rows = await eventually(lambda: logs(db))
    assert rows[0]["reply"]["content"] == "Hello from the fake upstream."


def test_a_malformed_streamed_reply_still_keeps_the_users_messages() -> None:
    import httpx as _httpx

    from memory.exchanges import DEFAULT_TENANT_ID, new_id, now
    from proxy.tee import Capture

    call = b'{"index": 0, "function": {"arguments": {"city": "Denver"}}}'  # an object, not a string
    bad = b'data: {"choices": [{"index": 0, "delta": {"tool_calls": [' + call + b"]}}]}\n\n"
    capture = Capture(
        id=new_id(), tenant_id=DEFAULT_TENANT_ID, user="u", session=None, model="m", occurred_at=now(),
        request_body=b'{"messages": [{"role": "user", "content": "keep me"}]}',
        response_headers=_httpx.Headers({"content-type": "text/event-stream"}), chunks=[bad],
    )  # fmt: skip
    exchange = capture.build()
    assert exchange is not None
    assert exchange.messages == [{"role": "user", "content": "keep me"}]
    assert exchange.reply is None


async def test_only_codings_the_tee_can_read_are_offered_upstream(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    payload = {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient() as http:
        url = f"{proxy.url}/v1/chat/completions"
        await http.post(url, json=payload, headers={"accept-encoding": "br, zstd;q=0.9, gzip;q=0.5"})
        assert fake.requests[-1].headers["accept-encoding"] == "gzip;q=0.5"
        await http.post(url, json=payload, headers={"accept-encoding": "br"})
        assert fake.requests[-1].headers["accept-encoding"] == "identity"
        # Other routes are not recorded, so they keep what the client asked for.
        await http.get(f"{proxy.url}/v1/models", headers={"accept-encoding": "br"})
        assert fake.requests[-1].headers["accept-encoding"] == "br"


async def test_a_number_beyond_64_bits_is_refused_and_the_next_call_goes_through(
    proxy: ServerThread, fake: FakeUpstream, db: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        huge = await http.post(
            "/v1/chat/completions",
            content=b'{"model":"fake-chat","user":"big","messages":[{"role":"user","content":"hi",'
            b'"x":123456789012345678901234567890}]}',
        )
        after = await http.post(
            "/v1/chat/completions",
            content=b'{"model":"fake-chat","user":"big","messages":[{"role":"user","content":"after"}]}',
        )
    assert huge.status_code == 400
    assert huge.json()["error"]["code"] == "json_limit_exceeded"
    assert huge.json()["error"]["param"] == "messages[0].x"
    assert after.status_code == 200
    assert len(fake.requests) == 1

    async def one() -> list[Any]:
        return await db.fetch("SELECT messages FROM chat_logs ORDER BY occurred_at")

    rows = await eventually(lambda: _one(one))
    assert rows[0]["messages"][0]["content"] == "after"


async def _one(fetch: Any) -> Any:
    rows = await fetch()
    return rows if len(rows) == 1 else None
