"""The fake upstream's Anthropic Messages API (``POST /v1/messages``), plain or streamed as Anthropic does."""

from __future__ import annotations

import json
from typing import Any

REPLY = "Hello from the fake Anthropic."


def message(model: str, text: str = REPLY) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def stream_events(model: str, count: int) -> list[bytes]:
    """``count`` text deltas ("part0 ", "part1 " …) between the events Anthropic sends around them."""
    start = {**message(model), "content": [], "stop_reason": None}
    return [
        _event("message_start", {"message": start}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        *(
            _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f"part{i} "}})
            for i in range(count)
        ),
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta",
            {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": count}},
        ),
        _event("message_stop", {}),
    ]
