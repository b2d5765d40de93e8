"""Rebuilding the model's reply from an Anthropic Messages answer, a message object or its SSE events.

Runs in the background on the bytes the relay captured. The reply is recorded as a chat-shaped assistant
message, as for the OpenAI routes, so extraction reads all three alike: the ``text`` blocks as its content,
and ``tool_use`` blocks as tool calls (their ``input`` as JSON arguments). Thinking blocks are the model's
reasoning, not its answer, and are not stored.

A stream is folded the way Anthropic's SDK folds it: ``message_start`` gives the model and the input usage,
``content_block_start`` opens a block, ``text_delta`` and ``input_json_delta`` grow it, and
``message_delta`` carries the output usage.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.replies import Reply, decode_body, sse_objects

_json = msgspec.json.Decoder()


def _message(blocks: list[Any]) -> dict[str, Any] | None:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = block.get("input")
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name") or "",
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else msgspec.json.encode(arguments or {}).decode(),
                    },
                }
            )
    if not (text or calls):
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        message["tool_calls"] = calls
    return message


def from_message(data: dict[str, Any]) -> Reply:
    content = data.get("content")
    return Reply(
        message=_message(content if isinstance(content, list) else []),
        model=data.get("model"),
        usage=data.get("usage"),
    )


def from_sse(body: bytes) -> Reply:
    blocks: dict[int, dict[str, Any]] = {}
    json_parts: dict[int, list[str]] = {}
    reply = Reply()
    usage: dict[str, Any] = {}
    for event in sse_objects(body):
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            reply.model = event["message"].get("model")
            usage.update(event["message"].get("usage") or {})
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[event.get("index", len(blocks))] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            _grow(blocks, json_parts, event.get("index", 0), event["delta"])
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            usage.update(event["usage"])
    for index, parts in json_parts.items():
        blocks[index]["input"] = "".join(parts) or "{}"
    reply.message = _message([blocks[i] for i in sorted(blocks)])
    reply.usage = usage or None
    return reply


def _grow(
    blocks: dict[int, dict[str, Any]], json_parts: dict[int, list[str]], index: Any, delta: dict[str, Any]
) -> None:
    block = blocks.get(index)
    if block is None:
        return
    if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
        block["text"] = block.get("text", "") + delta["text"]
    elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
        json_parts.setdefault(index, []).append(delta["partial_json"])


def parse(chunks: list[bytes], content_type: str | None, content_encoding: str | None) -> Reply:
    body = decode_body(b"".join(chunks), content_encoding)
    if (content_type or "").startswith("text/event-stream"):
        return from_sse(body)
    data = _json.decode(body)
    return from_message(data) if isinstance(data, dict) else Reply()
