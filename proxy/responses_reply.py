"""Rebuilding the model's reply from a Responses API answer, a JSON response object or its typed SSE events.

Runs in the background on the bytes the relay captured. The reply is recorded as a chat-shaped assistant
message, the same as for chat completions, so extraction reads both alike: the text of the ``message``
items' ``output_text`` parts, their refusals, and ``function_call`` items as tool calls. Reasoning items are
not the model's answer and are left out.

A stream's terminal event (``response.completed``, ``response.incomplete`` or ``response.failed``) carries
the whole response. A stream cut before it is rebuilt from what did arrive: finished output items, and the
text and argument deltas of the unfinished ones.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.replies import Reply, decode_body, sse_objects

_json = msgspec.json.Decoder()

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: Streamed pieces, by event type: what part of an output item they build.
_DELTAS = {
    "response.output_text.delta": "output_text",
    "response.refusal.delta": "refusal",
    "response.function_call_arguments.delta": "arguments",
}


def from_response(response: dict[str, Any]) -> Reply:
    """The reply held by a response object's ``output``."""
    output = response.get("output")
    return Reply(
        message=_message(output if isinstance(output, list) else []),
        model=response.get("model"),
        usage=response.get("usage"),
    )


def _message(items: list[Any]) -> dict[str, Any] | None:
    text: list[str] = []
    refusal: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    text.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusal.append(part["refusal"])
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""},
                }
            )
    if not (text or refusal or calls):
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if refusal:
        message["refusal"] = "".join(refusal)
    if calls:
        message["tool_calls"] = calls
    return message


def from_sse(body: bytes) -> Reply:
    done: dict[int, dict[str, Any]] = {}
    started: dict[int, dict[str, Any]] = {}
    partial: dict[int, dict[str, list[str]]] = {}
    model: str | None = None
    for event in sse_objects(body):
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict):
            if kind in _TERMINAL:
                return from_response(response)
            model = response.get("model") or model
        index = event.get("output_index")
        if not isinstance(index, int):
            continue
        if kind == "response.output_item.added" and isinstance(event.get("item"), dict):
            started[index] = event["item"]
        elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            done[index] = event["item"]
        elif kind in _DELTAS and isinstance(event.get("delta"), str):
            partial.setdefault(index, {}).setdefault(_DELTAS[kind], []).append(event["delta"])
    items = [
        done[i] if i in done else _unfinished(started.get(i), partial.get(i, {}))
        for i in sorted({*done, *started, *partial})
    ]
    return Reply(message=_message(items), model=model)


def _unfinished(item: dict[str, Any] | None, deltas: dict[str, list[str]]) -> dict[str, Any] | None:
    """An output item the stream did not finish, with the deltas that came; None for one that holds
    nothing an exchange records (reasoning, a tool's call in progress …)."""
    if item is not None and item.get("type") == "function_call":
        return {**item, "arguments": "".join(deltas.get("arguments", []))}
    parts = [
        {"type": kind, kind.removeprefix("output_"): "".join(deltas[kind])}
        for kind in ("output_text", "refusal")
        if deltas.get(kind)
    ]
    return {"type": "message", "content": parts} if parts else None


def parse(chunks: list[bytes], content_type: str | None, content_encoding: str | None) -> Reply:
    body = decode_body(b"".join(chunks), content_encoding)
    if (content_type or "").startswith("text/event-stream"):
        return from_sse(body)
    data = _json.decode(body)
    return from_response(data) if isinstance(data, dict) else Reply()
