"""The rules the SDK and the server share: who the end user is, how names are stored, what recall reads,
how the memory block joins a call's messages, and the limits of what is ingested.

Standard library only: the SDK (``pip install memoire``, httpx alone) and the server (``memory``,
``proxy``) both import it, so a rule is written once and the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

#: The end user of a call that names none, and of a key made without a default user.
DEFAULT_USER = "default"
#: Longest user or session name stored as it came (the REST API refuses longer ones).
MAX_NAME = 256
#: Characters of a user message that recall reads: its last ones.
MAX_QUERY_CHARS = 2000
#: Earlier user messages read with the latest, for a message that refers back to them.
CONTEXT_TURNS = 2
#: Longest message text ``/v1/ingest`` takes; the SDK cuts longer text to it.
MAX_CONTENT_CHARS = 200_000

#: Where the memory block goes: ``latest_turn``, a system message (or developer item, or text block) of its
#: own just before the latest user turn, so the prompt cache keeps the conversation before it; ``system``,
#: joined to the first system message.
Placement = Literal["latest_turn", "system"]

#: Responses API item types the model produced. A stateless client sends them back with the conversation,
#: and what precedes the last of them was recorded with an earlier exchange.
RESPONSE_OUTPUT_TYPES = frozenset(
    {
        "function_call",
        "reasoning",
        "web_search_call",
        "file_search_call",
        "computer_call",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "shell_call",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "custom_tool_call",
        "item_reference",
    }
)


def storable(name: str) -> str:
    """The form a user or session name is stored and looked up in. PostgreSQL text cannot hold NUL, so it
    becomes U+FFFD; a name longer than :data:`MAX_NAME` is cut and suffixed with a hash of the whole, so
    that two long names stay two users."""
    name = name.replace("\x00", "\ufffd")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[: MAX_NAME - 17]}~{digest}"


def clip(text: str) -> str:
    """A user turn as recall reads it: NULs dropped, its last :data:`MAX_QUERY_CHARS` characters."""
    return text.replace("\x00", "")[-MAX_QUERY_CHARS:]


def _latest_user(roles: Sequence[object]) -> int | None:
    return next((i for i in range(len(roles) - 1, -1, -1) if roles[i] == "user"), None)


def add_to_messages(messages: Sequence[Any], block: str, placement: Placement = "latest_turn") -> list[Any]:
    """A copy of chat ``messages`` (as Python values) with ``block`` added by ``placement``.

    ``latest_turn``: a system message of its own just before the latest user message. ``system`` (or no
    user message): appended to the first message when it is a system or developer message (as text, or as
    one more text part), else a new first system message. The proxy's ``proxy.memory_block.inject``
    does the same on the request's bytes.
    """
    out = list(messages)
    if placement == "latest_turn":
        at = _latest_user([m.get("role") if isinstance(m, dict) else None for m in out])
        if at is not None:
            out.insert(at, {"role": "system", "content": block})
            return out
    first = out[0] if out else None
    if isinstance(first, dict) and first.get("role") in ("system", "developer"):
        content = first.get("content")
        if isinstance(content, list):
            out[0] = {**first, "content": [*content, {"type": "text", "text": block}]}
            return out
        if isinstance(content, str | None):
            out[0] = {**first, "content": f"{content}\n\n{block}" if content else block}
            return out
    return [{"role": "system", "content": block}, *out]
