"""Rebuilding the assistant's reply from a chat-completions response body, plain JSON or an SSE stream.

Runs in the background on the bytes the relay captured. A stream is folded chunk by chunk the way the
OpenAI SDK folds it: content and refusal deltas are concatenated, tool calls are assembled by index (id,
name, and argument fragments), and the usage chunk is kept.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import msgspec

_json = msgspec.json.Decoder()


class Reply(msgspec.Struct, kw_only=True):
    message: dict[str, Any] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``gzip`` or ``deflate``; raise ValueError for an encoding we cannot read."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, wbits=zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, wbits=-zlib.MAX_WBITS)
    raise ValueError(f"cannot decode content-encoding {encoding!r}")


def from_json(body: bytes) -> Reply:
    data = _json.decode(body)
    if not isinstance(data, dict):
        return Reply()
    choices = data.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return Reply(
        message=message if isinstance(message, dict) else None,
        model=data.get("model"),
        usage=data.get("usage"),
    )


def sse_data(body: bytes) -> list[bytes]:
    """The ``data`` payloads of every event in an SSE body (multi-line data joined with newlines)."""
    events: list[bytes] = []
    data: list[bytes] = []
    for line in body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line:
            if data:
                events.append(b"\n".join(data))
                data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        events.append(b"\n".join(data))
    return events


def sse_objects(body: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects an SSE body's events carry, in order; anything else is skipped."""
    for payload in sse_data(body):
        try:
            event = _json.decode(payload)
        except msgspec.DecodeError:
            continue
        if isinstance(event, dict):
            yield event


def from_sse(body: bytes) -> Reply:
    content: list[str] = []
    refusal: list[str] = []
    tools: dict[int, dict[str, Any]] = {}
    reply = Reply()
    role = "assistant"
    for payload in sse_data(body):
        if payload.strip() == b"[DONE]":
            break
        try:
            chunk = _json.decode(payload)
        except msgspec.DecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        reply.model = chunk.get("model") or reply.model
        if chunk.get("usage"):
            reply.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            role = delta.get("role") or role
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                refusal.append(delta["refusal"])
            for call in delta.get("tool_calls") or []:
                _fold_tool_call(tools, call)
    message: dict[str, Any] = {"role": role, "content": "".join(content) if content else None}
    if refusal:
        message["refusal"] = "".join(refusal)
    if tools:
        message["tool_calls"] = [tools[i] for i in sorted(tools)]
    reply.message = message
    return reply


def _fold_tool_call(tools: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    index = call.get("index", len(tools))
    slot = tools.setdefault(
        index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if call.get("id"):
        slot["id"] = call["id"]
    if call.get("type"):
        slot["type"] = call["type"]
    function = call.get("function") or {}
    if function.get("name"):
        slot["function"]["name"] += function["name"]
    if function.get("arguments"):
        slot["function"]["arguments"] += function["arguments"]


def parse(chunks: list[bytes], content_type: str | None, content_encoding: str | None) -> Reply:
    body = decode_body(b"".join(chunks), content_encoding)
    if (content_type or "").startswith("text/event-stream"):
        return from_sse(body)
    return from_json(body)
