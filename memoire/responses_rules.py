"""The SDK's rules for OpenAI's Responses API, on the call's Python values: what recall searches, where
the block goes, and what the exchange records. They follow the proxy's (``proxy/responses_input.py``).

- Recall searches ``input`` as a string, or the text of the last user message items.
- The block is a ``developer`` item just before the latest user item, unless the call continues a stored
  response (``previous_response_id`` or ``conversation``): the provider keeps input items in the response's
  history, so the block is appended to ``instructions`` instead, which are not carried over.
- The exchange records the new input (all of it when the call continues a response, else what follows the
  last item the model produced), as text, and the reply's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memoire.rules import CONTEXT_TURNS, MAX_QUERY_CHARS, RESPONSE_OUTPUT_TYPES


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") if isinstance(p, Mapping) else getattr(p, "text", None) for p in content)
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _is_user(item: Any) -> bool:
    return (
        isinstance(item, Mapping) and item.get("role") == "user" and item.get("type", "message") == "message"
    )


def turns(value: Any) -> list[str]:
    """The latest user inputs' texts, oldest first: recall's query last, the others its context."""
    if isinstance(value, str):
        return [value[-MAX_QUERY_CHARS:]]
    found: list[str] = []
    for item in reversed(value if isinstance(value, list) else []):
        if _is_user(item):
            text = _text(item.get("content"))
            if text.strip():
                found.append(text[-MAX_QUERY_CHARS:])
                if len(found) > CONTEXT_TURNS:
                    break
    return found[::-1]


def with_block(kwargs: dict[str, Any], block: str) -> dict[str, Any]:
    """``kwargs`` with ``block`` placed by the rule above."""
    value = kwargs.get("input")
    if not (kwargs.get("previous_response_id") or kwargs.get("conversation")):
        ours = {"role": "developer", "content": block}
        if isinstance(value, str):
            return {**kwargs, "input": [ours, {"role": "user", "content": value}]}
        if isinstance(value, list):
            at = next((i for i in range(len(value) - 1, -1, -1) if _is_user(value[i])), None)
            if at is not None:
                return {**kwargs, "input": [*value[:at], ours, *value[at:]]}
    instructions = kwargs.get("instructions")
    if instructions is None or isinstance(instructions, str):
        return {**kwargs, "instructions": f"{instructions}\n\n{block}" if instructions else block}
    return kwargs


def new_messages(kwargs: dict[str, Any], max_chars: int) -> list[dict[str, Any]]:
    """The call's new input as text messages (user messages and function outputs)."""
    value = kwargs.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value[:max_chars]}] if value else []
    items: list[Any] = list(value) if isinstance(value, list) else []
    if not kwargs.get("previous_response_id"):
        # History sent back as the SDK's own output objects (``input += response.output``) counts too.
        produced = (i for i, item in enumerate(items) if _produced(item))
        items = items[max(produced, default=-1) + 1 :]
    items = [i for i in items if isinstance(i, Mapping)]
    out: list[dict[str, Any]] = []
    for item in items:
        if _is_user(item):
            text = _text(item.get("content"))
            if text:
                out.append({"role": "user", "content": text[:max_chars]})
        elif item.get("type") == "function_call_output":
            text = _text(item.get("output"))
            if text:
                out.append({"role": "tool", "content": text[:max_chars]})
    return out


def _produced(item: Any) -> bool:
    def field(name: str) -> Any:
        return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)

    return field("type") in RESPONSE_OUTPUT_TYPES or field("role") == "assistant"


def delta(event: Any) -> str | None:
    """The text a streamed event adds to the reply."""
    if getattr(event, "type", None) == "response.output_text.delta":
        piece = getattr(event, "delta", None)
        return piece if isinstance(piece, str) else None
    return None


def reply(response: Any) -> str:
    text = getattr(response, "output_text", "")
    return text if isinstance(text, str) else ""
