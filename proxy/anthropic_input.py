"""The input of an Anthropic Messages call (``POST /anthropic/v1/messages``): what the proxy reads of it,
and where the memory block goes.

Only a view is decoded (the messages' roles and contents, ``metadata.user_id``, ``model``); every other
field (tools, ``system``, thinking, ``cache_control`` …) is forwarded as it came.

Anthropic caches the prompt in the order tools → ``system`` → messages, up to each ``cache_control``
breakpoint. So by ``memory.placement``:

* ``latest_turn`` (the default): the block is a text block of the latest user message, after its
  ``tool_result`` blocks (which the API wants first) and ahead of the user's own content, or after the
  turn's last block that carries ``cache_control``, if one does (the entry cached at that breakpoint must
  not hold the block, which the next call's copy of this turn will not have). Tools, ``system``
  and every earlier message stay the bytes the client sent, and a change of recall costs the cache only
  the latest turn. Only that message is decoded and re-encoded; the others pass as raw bytes.
* ``system``: the block is a text block of ``system``, after the last block that carries
  ``cache_control`` (so the cached system prefix stays whole); a string ``system`` becomes its text block
  followed by the block. Every change of recall then invalidates the cached conversation behind it.

A request without a user message gets the block in ``system``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from memoire.rules import CONTEXT_TURNS, Placement, clip
from memory.extraction.prompt import message_text

_NULL = msgspec.Raw(b"null")


class _MessageView(msgspec.Struct):
    role: str
    content: msgspec.Raw = _NULL


class _Metadata(msgspec.Struct):
    user_id: str | None = None


class MessagesView(msgspec.Struct):
    """The part of a Messages request the proxy reads; every other field is left alone."""

    messages: list[_MessageView]
    model: str | None = None
    metadata: _Metadata | None = None
    stream: bool | None = None

    @property
    def user(self) -> str | None:
        return self.metadata.user_id if self.metadata else None


view_decoder = msgspec.json.Decoder(MessagesView)
_content = msgspec.json.Decoder(str | list[dict[str, Any]] | None)
_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_system = msgspec.json.Decoder(str | list[dict[str, Any]] | None)


class _Role(msgspec.Struct):
    role: Any = None


_role = msgspec.json.Decoder(_Role)


def text_of(content: Any) -> str:
    """The user's words in a message's content: a string, or its ``text`` blocks joined."""
    return message_text(content)


def query_turns(view: MessagesView) -> list[str]:
    """The last user messages that hold text, oldest first: what recall searches for. A message of tool
    results only (the tool loop) is skipped: the question is the one that asked."""
    turns: list[str] = []
    for message in reversed(view.messages):
        if message.role != "user":
            continue
        try:
            text = text_of(_content.decode(message.content))
        except msgspec.DecodeError:
            text = ""
        if not text.strip():
            continue
        turns.append(clip(text))
        if len(turns) > CONTEXT_TURNS:
            break
    return turns[::-1]


def inject(body: bytes, block: str, placement: Placement) -> bytes:
    """``body`` with ``block`` placed as the module docstring says; every other field as it came."""
    top = _raw_dict.decode(body)
    ours = {"type": "text", "text": block}
    if placement == "latest_turn" and "messages" in top:
        messages: list[Any] = list(_raw_list.decode(top["messages"]))
        for i in range(len(messages) - 1, -1, -1):
            if _role.decode(messages[i]).role != "user":
                continue
            message = msgspec.json.decode(messages[i])
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = [ours, {"type": "text", "text": content}] if content else [ours]
            elif isinstance(content, list):
                at = 0
                while at < len(content) and _kind(content[at]) == "tool_result":
                    at += 1
                # A breakpoint in this turn caches the prefix up to it; the block goes after it, or the
                # next call, which resends this turn without the block, could never read that entry.
                marked = [i for i, b in enumerate(content) if isinstance(b, dict) and "cache_control" in b]
                at = max(at, marked[-1] + 1) if marked else at
                message["content"] = [*content[:at], ours, *content[at:]]
            else:
                break
            messages[i] = msgspec.Raw(msgspec.json.encode(message))
            top["messages"] = msgspec.Raw(msgspec.json.encode(messages))
            return msgspec.json.encode(top)
    system = _system.decode(top.get("system", _NULL))
    if isinstance(system, list):
        last = max(
            (i for i, b in enumerate(system) if isinstance(b, dict) and "cache_control" in b), default=-1
        )
        system = [*system[: last + 1], ours, *system[last + 1 :]] if last >= 0 else [*system, ours]
    elif system:
        system = [{"type": "text", "text": system}, ours]
    else:
        system = block
    top["system"] = msgspec.Raw(msgspec.json.encode(system))
    return msgspec.json.encode(top)


def _kind(block: Any) -> Any:
    return block.get("type") if isinstance(block, dict) else None


class _Messages(msgspec.Struct):
    messages: list[dict[str, Any]]


_messages = msgspec.json.Decoder(_Messages)


def new_messages(request_body: bytes) -> list[dict[str, Any]]:
    """The request's new messages, chat-shaped: those after the last assistant message (the client sends
    the whole conversation each time). Text blocks become ``text`` parts; tool results become ``tool``
    messages; thinking and other blocks are not the user's words and are left out."""
    messages = _messages.decode(request_body).messages
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    out: list[dict[str, Any]] = []
    for message in messages[last + 1 :]:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": "user", "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for block in content if isinstance(content, list) else []:
            kind = _kind(block)
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "tool_result":
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _result_text(block.get("content")),
                    }
                )
        if parts:
            out.append({"role": "user", "content": parts})
    return out


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return message_text(content)
