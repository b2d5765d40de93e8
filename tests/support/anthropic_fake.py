"""The fake upstream's Anthropic Messages API (``POST /v1/messages``), plain or streamed as Anthropic does
(the event types of ``anthropic.types``: ``message_start``, ``ping``, ``content_block_*``,
``message_delta``, ``message_stop``).

The model picks the answer: ``claude-tools`` calls a tool; ``claude-thinking`` thinks before it answers;
``claude-error-400|429|529`` answers an error in Anthropic's shape (429 with ``retry-after``); anything else
answers in text.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.deltas import words

REPLY = "Hello from the fake Anthropic."
TOOL = {"id": "toolu_01", "name": "get_weather", "input": {"city": "Denver"}}
THOUGHT = "The user wants a greeting."
HEADERS = [
    (b"request-id", b"req_fake_anthropic"),
    (b"anthropic-ratelimit-requests-remaining", b"49"),
    (b"anthropic-organization-id", b"org-fake"),
]
ERRORS = {
    400: ("invalid_request_error", "messages: field required"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    529: ("overloaded_error", "Overloaded"),
}


def error(status: int) -> dict[str, Any]:
    kind, message = ERRORS[status]
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake_anthropic"}


def _content(model: str, text: str) -> list[dict[str, Any]]:
    if model == "claude-tools":
        return [{"type": "text", "text": "Let me look."}, {"type": "tool_use", **TOOL}]
    if model == "claude-thinking":
        return [
            {"type": "thinking", "thinking": THOUGHT, "signature": "sig=="},
            {"type": "text", "text": text},
        ]
    return [{"type": "text", "text": text}]


def message(model: str, text: str = REPLY) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(model, text),
        "stop_reason": "tool_use" if model == "claude-tools" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 0},
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def stream_events(model: str, count: int, text: str | None = None) -> list[bytes]:
    """The events of one streamed message; text comes a word a delta: ``text``, else ``count`` deltas
    ("part0 ", "part1 " …)."""
    final = message(model, text or "".join(f"part{i} " for i in range(count)))
    start = {**final, "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    events = [_event("message_start", {"message": start}), _event("ping", {})]
    for index, block in enumerate(final["content"]):
        events.extend(_block_events(index, block))
    events.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": count},
            },
        )
    )
    events.append(_event("message_stop", {}))
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    if kind == "text":
        head: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in words(block["text"])]
    elif kind == "tool_use":
        head = {**block, "input": {}}
        arguments = json.dumps(block["input"])
        halves = (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :])
        deltas = [{"type": "input_json_delta", "partial_json": half} for half in halves]
    else:
        head = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    return [
        _event("content_block_start", {"index": index, "content_block": head}),
        *(_event("content_block_delta", {"index": index, "delta": delta}) for delta in deltas),
        _event("content_block_stop", {"index": index}),
    ]
