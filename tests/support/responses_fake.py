"""The fake upstream's Responses API (``/v1/responses``), in the wire format of OpenAI's SDK types
(``openai.types.responses``): a response object, or its typed SSE events in the order the API sends them.

The model picks the output: ``fake-tools`` calls a function; anything else answers in text, streamed as
``x-fake-chunks`` deltas. Responses created with ``store`` (the default) are kept, for ``GET`` and
``DELETE /v1/responses/{id}`` and ``…/input_items``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.support.deltas import words

TEXT = "Hello from the fake Responses API."
CALL = {"name": "get_weather", "arguments": '{"city": "Denver"}', "call_id": "call_w1"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def response(
    request: dict[str, Any], response_id: str, output: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": None,
        "model": request.get("model", "fake-chat"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": request.get("tools", []),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 18,
        }
        if done
        else None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call(status: str = "completed", arguments: str = CALL["arguments"]) -> dict[str, Any]:
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": CALL["call_id"],
        "name": CALL["name"],
        "arguments": arguments,
    }


def complete(
    request: dict[str, Any], response_id: str, chunks: int, text: str | None = None
) -> dict[str, Any]:
    """The finished response: ``text`` if given, else ``TEXT`` (``part0 part1 …`` when streamed)."""
    model = request.get("model", "fake-chat")
    if text is None:
        text = "".join(f"part{i} " for i in range(chunks)) if request.get("stream") else TEXT
    output = [_call()] if model == "fake-tools" else [_message(text)]
    return response(request, response_id, output, "completed")


def _event(kind: str, sequence: int, data: dict[str, Any]) -> bytes:
    body = json.dumps({"type": kind, "sequence_number": sequence, **data})
    return f"event: {kind}\ndata: {body}\n\n".encode()


def stream_events(
    request: dict[str, Any], response_id: str, chunks: int, text: str | None = None
) -> list[bytes]:
    """The events of one streamed response, from ``response.created`` to ``response.completed``."""
    final = complete(request, response_id, chunks, text)
    item = final["output"][0]
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response(request, response_id, [], "in_progress")}),
        ("response.in_progress", {"response": response(request, response_id, [], "in_progress")}),
    ]
    head = {**item, "status": "in_progress"}
    if item["type"] == "function_call":
        head["arguments"] = ""
        events.append(("response.output_item.added", {"output_index": 0, "item": head}))
        args = item["arguments"]
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            events.append(
                (
                    "response.function_call_arguments.delta",
                    {"item_id": item["id"], "output_index": 0, "delta": part},
                )
            )
        events.append(
            (
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": 0, "arguments": args, "name": item["name"]},
            )
        )
    else:
        head["content"] = []
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events.append(("response.output_item.added", {"output_index": 0, "item": head}))
        events.append(("response.content_part.added", {**where, "part": part}))
        done = item["content"][0]["text"]
        for piece in words(done):
            events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}))
        events.append(("response.output_text.done", {**where, "text": done, "logprobs": []}))
        events.append(("response.content_part.done", {**where, "part": item["content"][0]}))
    events.append(("response.output_item.done", {"output_index": 0, "item": item}))
    events.append(("response.completed", {"response": final}))
    return [_event(kind, i, data) for i, (kind, data) in enumerate(events)]
