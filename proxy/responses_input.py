"""The input of a Responses API call (``POST /v1/responses``): what the proxy reads of it, and where the
memory block goes.

Only a view is decoded (``input``, ``instructions``, the identity fields and those that make the call
stateful); every other field is forwarded as it came.

Where the block goes, by ``memory.placement`` and by whether the provider keeps the call's history:

* A stateless call (no ``previous_response_id``, no ``conversation``) with ``latest_turn``: a ``developer``
  message item just before the latest user message item. ``instructions``, the tools and the conversation
  so far stay the prompt's unchanged prefix, which the provider caches.
* A stateful call (``previous_response_id`` or ``conversation``), or ``system``: the block is appended to
  ``instructions`` (after the client's own, which are kept as they came). The provider stores every input
  item in the response's history, so a block given as an item would be replayed on every later turn and
  pile up; ``instructions`` are not carried over to the next response. The cost: instructions come first in
  the prompt, so a change of recall invalidates the cached history behind them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from memoire.rules import CONTEXT_TURNS, Placement, clip
from memoire.rules import RESPONSE_OUTPUT_TYPES as OUTPUT_TYPES
from memory.extraction.prompt import message_text

_NULL = msgspec.Raw(b"null")


class ResponsesView(msgspec.Struct):
    """The part of a Responses request the proxy reads; every other field is left alone."""

    input: msgspec.Raw = _NULL
    instructions: msgspec.Raw = _NULL
    model: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    store: bool | None = None
    stream: bool | None = None

    @property
    def stateful(self) -> bool:
        return self.previous_response_id is not None or self.conversation is not None

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, dict):
            found = self.conversation.get("id")
            return found if isinstance(found, str) else None
        return self.conversation


class _Head(msgspec.Struct):
    type: Any = None
    role: Any = None


view_decoder = msgspec.json.Decoder(ResponsesView)
_input = msgspec.json.Decoder(str | list[msgspec.Raw] | None)
_items = msgspec.json.Decoder(str | list[dict[str, Any]] | None)
_head = msgspec.json.Decoder(_Head)
_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_instructions = msgspec.json.Decoder(str | None)

#: Part types whose ``text`` is the words of a message.
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def item_text(content: Any) -> str:
    """The words of a message item's ``content``: a string, or its text parts joined."""
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
        )
    return message_text(content)


def _is_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and "role" in item


def query_turns(view: ResponsesView) -> list[str]:
    """The latest user inputs' texts, oldest first: ``input`` as a string, or the last user message items."""
    try:
        items = _items.decode(view.input)
    except msgspec.DecodeError:
        return []
    if isinstance(items, str):
        return [clip(items)]
    turns: list[str] = []
    for item in reversed(items or []):
        if _is_message(item) and item.get("role") == "user":
            turns.append(clip(item_text(item.get("content"))))
            if len(turns) > CONTEXT_TURNS:
                break
    return turns[::-1]


def carries_history(view: ResponsesView) -> bool:
    """Whether ``input`` holds an item the model produced: the client keeps the conversation itself and
    sends it back each turn, as chat clients do."""
    try:
        items = _input.decode(view.input)
    except msgspec.DecodeError:
        return False
    if not isinstance(items, list):
        return False
    for raw in items:
        head = _head.decode(raw)
        if head.type in OUTPUT_TYPES or (head.type in (None, "message") and head.role == "assistant"):
            return True
    return False


def inject(body: bytes, block: str, placement: Placement, stateful: bool) -> bytes:
    """``body`` with ``block`` placed as the module docstring says; every other field as it came."""
    top = _raw_dict.decode(body)
    if placement == "latest_turn" and not stateful:
        placed = _before_latest_user(top.get("input", _NULL), block)
        if placed is not None:
            top["input"] = placed
            return msgspec.json.encode(top)
    own = _instructions.decode(top.get("instructions", _NULL))
    top["instructions"] = msgspec.Raw(msgspec.json.encode(f"{own}\n\n{block}" if own else block))
    return msgspec.json.encode(top)


def _before_latest_user(raw: msgspec.Raw, block: str) -> msgspec.Raw | None:
    """``input`` with a developer item holding ``block`` before its latest user message; None if it has
    none. A string input is the user's message: it becomes that message item."""
    value = _input.decode(raw)
    own = msgspec.Raw(msgspec.json.encode({"role": "developer", "content": block}))
    if isinstance(value, str):
        user = msgspec.Raw(msgspec.json.encode({"role": "user", "content": value}))
        return msgspec.Raw(msgspec.json.encode([own, user]))
    items = list(value or [])
    for i in range(len(items) - 1, -1, -1):
        head = _head.decode(items[i])
        if head.role == "user" and head.type in (None, "message"):
            items.insert(i, own)
            return msgspec.Raw(msgspec.json.encode(items))
    return None


_SKIPPED_ROLES = frozenset({"system", "developer"})


def new_messages(request_body: bytes) -> list[dict[str, Any]]:
    """The call's new input as chat-shaped messages (what an exchange records), instructions left out.

    With ``previous_response_id`` every input item is new; otherwise only those after the last item the
    model produced. User and assistant messages keep their text; a function call's output becomes a
    ``tool`` message.
    """
    view = view_decoder.decode(request_body)
    items = _items.decode(view.input)
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    items = items or []
    if view.previous_response_id is None:
        last = max((i for i, item in enumerate(items) if _produced(item)), default=-1)
        items = items[last + 1 :]
    messages: list[dict[str, Any]] = []
    for item in items:
        if _is_message(item) and item.get("role") not in _SKIPPED_ROLES:
            messages.append({"role": item["role"], "content": _chat_content(item.get("content"))})
        elif item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else _chat_content(output),
                }
            )
    return messages


def _produced(item: dict[str, Any]) -> bool:
    return item.get("type") in OUTPUT_TYPES or (_is_message(item) and item.get("role") == "assistant")


def _chat_content(content: Any) -> Any:
    """A Responses content as chat content: text parts become ``text`` parts, others are kept."""
    if not isinstance(content, list):
        return content
    return [
        {"type": "text", "text": part.get("text", "")}
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
        else part
        for part in content
    ]
