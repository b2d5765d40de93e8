"""Hostile JSON on every route: nesting past ``server.max_json_depth`` and numbers that no integer or double
holds get a 400 in the route's own error shape, naming the field and the limit, with nothing sent upstream
and nothing stored."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.usefixtures("db")

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", CHAT),
    "responses": ("/v1/responses", {"model": "m", "input": "hi"}),
    "anthropic": ("/anthropic/v1/messages", {"model": "c", "max_tokens": 8, **CHAT}),
    "passthrough": ("/v1/embeddings", {"model": "e", "input": "hi"}),
    "anthropic-passthrough": ("/anthropic/v1/messages/count_tokens", {"model": "c", **CHAT}),
    "ingest": ("/v1/ingest", {"user_id": "u", **CHAT}),
    "recall": ("/v1/recall", {"user_id": "u", "query": "hi"}),
    "facts": ("/v1/facts", {"user_id": "u", "facts": [{"text": "likes tea"}]}),
    "context": ("/v1/context", {"user_id": "u", "query": "hi"}),
}
DEEP = b"[" * 1000 + b"]" * 1000
HOSTILE = {
    "deep": (DEEP, "nests deeper than 128 levels"),
    "huge-int": (b"9" * 5001, "out of range"),
    "huge-float": (b"1e99999", "out of range"),
    "negative-int": (b"-9223372036854775809", "out of range"),
}


def with_field(body: dict[str, Any], raw: bytes, field: str = "x") -> bytes:
    """``body`` as JSON with ``field`` set to the raw JSON ``raw`` (which json.dumps could not write)."""
    import json

    encoded = json.dumps({**body, field: None}).encode()
    return encoded.replace(f'"{field}": null'.encode(), f'"{field}": '.encode() + raw)


async def stored(proxy: ServerThread, db: asyncpg.Pool) -> Any:
    """Exchanges and facts in the database, once the proxy's intake has delivered what it was given."""
    app = proxy.app
    assert isinstance(app, Litestar)
    proxy.call(app.state.services.intake.flush())
    return await db.fetchval("SELECT (SELECT count(*) FROM chat_logs) + (SELECT count(*) FROM memory_facts)")


def error_of(route: str, response: httpx.Response) -> tuple[str, str, str | None]:
    """(type, message, param) from the route's own error shape."""
    payload = response.json()
    if route.startswith("anthropic"):
        assert payload["type"] == "error"
        return payload["error"]["type"], payload["error"]["message"], None
    error = payload["error"]
    assert error["code"] == "json_limit_exceeded"
    return error["type"], error["message"], error["param"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_json_gets_a_400_naming_the_field_and_nothing_moves(
    proxy: ServerThread, fake: FakeUpstream, db: asyncpg.Pool, route: str, hostile: str
) -> None:
    path, body = ROUTES[route]
    raw, says = HOSTILE[hostile]
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{proxy.url}{path}", content=with_field(body, raw), headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    kind, message, param = error_of(route, response)
    assert kind == "invalid_request_error"
    assert says in message
    assert "`x" in message  # the field is named
    if param is not None:
        assert param.startswith("x")
    assert fake.requests == []
    assert await stored(proxy, db) == 0


async def test_the_nesting_limit_is_a_setting_and_holds_inside_messages(
    start_proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    proxy = start_proxy(server={"max_json_depth": 8})

    def nested(levels: int) -> bytes:
        # body, messages, the message, its content, the block: 5 levels before x's arrays start.
        inner = b"[" * (levels - 5) + b"]" * (levels - 5)
        return with_field({"type": "text", "text": "hi"}, inner)

    async with httpx.AsyncClient() as http:
        ok = await http.post(
            f"{proxy.url}/v1/chat/completions",
            content=b'{"model": "m", "messages": [{"role": "user", "content": [' + nested(8) + b"]}]}",
        )
        deep = await http.post(
            f"{proxy.url}/v1/chat/completions",
            content=b'{"model": "m", "messages": [{"role": "user", "content": [' + nested(9) + b"]}]}",
        )
    assert ok.status_code == 200, ok.text
    assert deep.status_code == 400
    error = deep.json()["error"]
    assert error["param"].startswith("messages[0].content[0].x")
    assert "deeper than 8 levels" in error["message"]
    assert "server.max_json_depth" in error["message"]
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "text",
    [
        "brackets in a string [[[[[[[[[[[[ are text, not nesting",
        "a long number in a string 123456789012345678901234567890 and 1e99999",
    ],
)
async def test_strings_that_look_hostile_are_only_text(
    start_proxy: ProxyFactory, fake: FakeUpstream, text: str
) -> None:
    proxy = start_proxy(server={"max_json_depth": 8})
    body = {"model": "m", "messages": [{"role": "user", "content": text}], "seed": 18446744073709551615}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{proxy.url}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 1


@pytest.mark.parametrize("content_type", [None, "text/plain"])
async def test_a_passthrough_body_without_a_json_type(
    proxy: ServerThread, fake: FakeUpstream, content_type: str | None
) -> None:
    """With no content type, some upstreams read the body as JSON: it is checked. A declared other type (a
    file upload) goes as it came."""
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{proxy.url}/v1/embeddings", content=with_field({"model": "e"}, DEEP), headers=headers
        )
    if content_type is None:
        assert response.status_code == 400
        assert response.json()["error"]["param"].startswith("x")
        assert fake.requests == []
    else:
        assert len(fake.requests) == 1
