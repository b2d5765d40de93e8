"""A fake OpenAI-compatible provider: a raw ASGI app, served on loopback by :class:`ServerThread`.

The request's ``model`` picks the behaviour:

- ``fake-chat`` (any other name too): a normal completion, or an SSE stream if ``stream`` is true;
- ``fake-tools``: a reply with two tool calls, streamed or not;
- ``fake-error-400|401|429|500``: an error in OpenAI's shape (429 with ``retry-after``);
- ``fake-slow``: waits ``x-fake-delay`` seconds (default 30) before the first byte;
- ``fake-gated``: streams one chunk, then waits for :attr:`FakeUpstream.gate` before the rest;
- ``fake-disconnect``: streams two chunks, then drops the connection;
- ``fake-null-message``: a reply whose choice has ``"message": null``.

``POST /v1/messages`` answers as Anthropic's Messages API (see :mod:`tests.support.anthropic_fake`), and
``/v1/responses`` as OpenAI's Responses API (see :mod:`tests.support.responses_fake`), with the same models.

Streams send ``x-fake-chunks`` content chunks (default 3), ``x-fake-interval`` seconds apart. A text reply
is ``x-fake-reply`` when the request has that header (streamed a word a delta), in every dialect alike.
Every request is recorded in :attr:`FakeUpstream.requests`; a request whose client went away before the
fake finished is also counted in :attr:`FakeUpstream.cancelled`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support import anthropic_fake, responses_fake
from tests.support.deltas import words
from tests.support.servers import answer_lifespan, read_body

Scope = dict[str, Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeUpstream:
    requests: list[Recorded] = field(default_factory=list)
    cancelled: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    first_chunk_sent_at: float | None = None
    second_chunk_sent_at: float | None = None
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Stored responses of the Responses API, by id."""

    def reset(self) -> None:
        self.requests.clear()
        self.stored.clear()
        self.cancelled = 0
        self.gate = threading.Event()
        self.first_chunk_sent_at = self.second_chunk_sent_at = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        request = Recorded(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)
        self.requests.append(request)
        left = asyncio.ensure_future(receive())  # resolves with http.disconnect when the client goes
        try:
            await self._respond(request, left, send)
        except _ClientLeft:
            self.cancelled += 1
        finally:
            left.cancel()

    async def _respond(self, request: Recorded, left: asyncio.Future[Any], send: Any) -> None:
        if request.path == "/v1/models" and "anthropic-version" in request.headers:
            model = {
                "id": "claude-fake",
                "type": "model",
                "display_name": "Claude Fake",
                "created_at": "2026-01-01T00:00:00Z",
            }
            await _json(
                send,
                200,
                {"data": [model], "has_more": False, "first_id": "claude-fake", "last_id": "claude-fake"},
            )
            return
        if request.path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "fake-chat", "object": "model"}]})
            return
        if request.path == "/v1/embeddings":
            data = request.json()
            await _json(
                send,
                200,
                {
                    "object": "list",
                    "data": [{"embedding": [0.1, 0.2], "index": 0}],
                    "model": data.get("model"),
                },
            )
            return
        if request.path == "/v1/messages" and request.method == "POST":
            await self._anthropic(request, left, send)
            return
        if request.path == "/v1/messages/count_tokens":
            await _json(send, 200, {"input_tokens": len(request.body) // 4}, anthropic_fake.HEADERS)
            return
        if request.path.startswith("/v1/responses"):
            await self._responses(request, left, send)
            return
        if request.path != "/v1/chat/completions" or request.method != "POST":
            await _json(send, 404, _error("unknown route", "invalid_request_error", "not_found"))
            return
        data = request.json()
        model = data.get("model", "fake-chat")
        if model.startswith("fake-error-"):
            await _error_reply(send, int(model.rsplit("-", 1)[1]))
            return
        if model == "fake-null-message":  # an OpenAI-compatible server with an odd but parseable reply
            await _json(send, 200, {**completion(model), "choices": [{"index": 0, "message": None}]})
            return
        if model == "fake-slow":
            await _sleep_unless_left(left, float(request.headers.get("x-fake-delay", "30")))
        if data.get("stream"):
            await self._stream(request, data, model, left, send)
        else:
            body = completion(model, tools=model == "fake-tools", text=request.headers.get("x-fake-reply"))
            if "gzip" in request.headers.get("accept-encoding", "") and model == "fake-gzip":
                payload = gzip.compress(json.dumps(body).encode())
                await _raw(send, 200, payload, [(b"content-encoding", b"gzip")])
            else:
                await _json(send, 200, body)

    async def _responses(self, request: Recorded, left: asyncio.Future[Any], send: Any) -> None:
        parts = request.path.removeprefix("/v1/responses").strip("/").split("/")
        if parts != [""]:
            stored = self.stored.get(parts[0])
            if stored is None:
                message = f"No response found with id '{parts[0]}'."
                await _json(send, 404, _error(message, "invalid_request_error", None))
            elif request.method == "DELETE":
                del self.stored[parts[0]]
                await _json(send, 200, {"id": parts[0], "object": "response.deleted", "deleted": True})
            elif parts[1:] == ["input_items"]:
                await _json(send, 200, {"object": "list", "data": [], "has_more": False})
            else:
                await _json(send, 200, stored)
            return
        data = request.json()
        model = data.get("model", "fake-chat")
        if model.startswith("fake-error-"):
            await _error_reply(send, int(model.rsplit("-", 1)[1]))
            return
        if data.get("previous_response_id") and data["previous_response_id"] not in self.stored:
            message = f"Previous response with id '{data['previous_response_id']}' not found."
            await _json(send, 400, _error(message, "invalid_request_error", "previous_response_not_found"))
            return
        response_id = responses_fake.new_id("resp")
        count = int(request.headers.get("x-fake-chunks", "3"))
        reply = request.headers.get("x-fake-reply")
        final = responses_fake.complete(data, response_id, count, reply)
        if data.get("store", True):
            self.stored[response_id] = final
        if not data.get("stream"):
            await _json(send, 200, final)
            return
        interval = float(request.headers.get("x-fake-interval", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), *COMMON_HEADERS],
            }
        )
        for i, event in enumerate(responses_fake.stream_events(data, response_id, count, reply)):
            if i > 0 and interval:
                await _sleep_unless_left(left, interval)
            if model == "fake-disconnect" and i == 4:
                raise OSError("fake upstream drops the connection")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _anthropic(self, request: Recorded, left: asyncio.Future[Any], send: Any) -> None:
        data = request.json()
        model = data.get("model", "claude-fake")
        if model.startswith("claude-error-"):
            status = int(model.rsplit("-", 1)[1])
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _json(send, status, anthropic_fake.error(status), [*anthropic_fake.HEADERS, *extra])
            return
        reply = request.headers.get("x-fake-reply")
        if not data.get("stream"):
            await _json(
                send,
                200,
                anthropic_fake.message(model, reply or anthropic_fake.REPLY),
                anthropic_fake.HEADERS,
            )
            return
        count = int(request.headers.get("x-fake-chunks", "3"))
        interval = float(request.headers.get("x-fake-interval", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), *anthropic_fake.HEADERS],
            }
        )
        for i, event in enumerate(anthropic_fake.stream_events(model, count, reply)):
            if i > 0 and interval:
                await _sleep_unless_left(left, interval)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(
        self, request: Recorded, data: dict[str, Any], model: str, left: asyncio.Future[Any], send: Any
    ) -> None:
        count = int(request.headers.get("x-fake-chunks", "3"))
        interval = float(request.headers.get("x-fake-interval", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), *COMMON_HEADERS],
            }
        )
        reply = request.headers.get("x-fake-reply")
        for i, chunk in enumerate(stream_chunks(model, count, tools=model == "fake-tools", text=reply)):
            if i > 0 and interval:
                await _sleep_unless_left(left, interval)
            if model == "fake-gated" and i == 1:
                await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10)
            if model == "fake-disconnect" and i == 2:
                raise OSError("fake upstream drops the connection")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if i == 0:
                self.first_chunk_sent_at = time.monotonic()
            elif i == 1:
                self.second_chunk_sent_at = time.monotonic()
        if (data.get("stream_options") or {}).get("include_usage"):
            await send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": sse(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "model": model,
                            "choices": [],
                            "usage": {
                                "prompt_tokens": 5,
                                "completion_tokens": count,
                                "total_tokens": 5 + count,
                            },
                        }
                    ),
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


COMMON_HEADERS = [
    (b"x-request-id", b"req_fake_123"),
    (b"openai-processing-ms", b"42"),
    (b"openai-organization", b"org-fake"),
    (b"x-ratelimit-remaining-requests", b"99"),
    (b"x-ratelimit-reset-tokens", b"6m0s"),
]

TOOL_CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Denver"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "MST"}'}},
]


def completion(model: str, *, tools: bool = False, text: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tools else text or "Hello from the fake upstream.",
    }
    if tools:
        message["tool_calls"] = TOOL_CALLS
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "future_field": {"kept": True},
    }


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def stream_chunks(model: str, count: int, *, tools: bool = False, text: str | None = None) -> list[bytes]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    chunks = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    if tools:
        for i, call in enumerate(TOOL_CALLS):
            args = call["function"]["arguments"]
            head = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks.append(sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]}}]}))
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                delta = {"tool_calls": [{"index": i, "function": {"arguments": part}}]}
                chunks.append(sse({**base, "choices": [{"index": 0, "delta": delta}]}))
    else:
        for piece in words(text) if text else [f"part{i} " for i in range(count)]:
            chunks.append(sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    chunks.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    return chunks


def streamed_text(count: int) -> str:
    return "".join(f"part{i} " for i in range(count))


def _error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


async def _error_reply(send: Any, status: int) -> None:
    kinds = {
        400: ("invalid_request_error", "bad_request"),
        401: ("invalid_request_error", "invalid_api_key"),
        429: ("requests", "rate_limit_exceeded"),
        500: ("server_error", None),
    }
    type_, code = kinds[status]
    extra = [(b"retry-after", b"7")] if status == 429 else []
    await _json(send, status, _error(f"fake error {status}", type_, code), extra)


async def _json(
    send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _raw(
        send, status, json.dumps(body).encode(), [(b"content-type", b"application/json"), *(extra or [])]
    )


async def _raw(send: Any, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(payload)).encode()), *COMMON_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _ClientLeft(Exception):
    pass


async def _sleep_unless_left(left: asyncio.Future[Any], delay: float) -> None:
    """Sleep ``delay`` seconds; raise :class:`_ClientLeft` as soon as the client disconnects."""
    await asyncio.wait({left}, timeout=delay)
    if left.done():
        raise _ClientLeft
