"""``POST /v1/chat/completions``: forwarded as it came, relayed as it comes back, and teed.

The body is never decoded through a closed schema: only the view the proxy needs (``messages``, ``user``,
``model``) is read, and the bytes go upstream untouched, so fields OpenAI adds tomorrow pass through.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import msgspec
from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memoire.rules import CONTEXT_TURNS, clip
from memory.errors import MemoireError, decode
from memory.exchanges import now
from memory.extraction.prompt import message_text
from proxy import services as services_
from proxy.auth import principal_of
from proxy.memory_block import inject
from proxy.passthrough import forward
from proxy.relay import ClientGone, Outcome, read_body, relay, send_error
from proxy.remember import degraded_headers, identity_of, remember
from proxy.tee import CHAT, keep
from proxy.upstream import Headers

log = logging.getLogger(__name__)

_NULL = msgspec.Raw(b"null")


class _MessageView(msgspec.Struct):
    role: str
    content: msgspec.Raw = _NULL


class ChatView(msgspec.Struct):
    """The part of a chat-completions request the proxy reads; every other field is left alone."""

    messages: list[_MessageView]
    model: str | None = None
    user: str | None = None


_view = msgspec.json.Decoder(ChatView)
_content = msgspec.json.Decoder(str | list[dict[str, Any]] | None)


def query_turns(view: ChatView) -> list[str]:
    """The texts of the last user messages, oldest first, the latest last: what recall searches for."""
    turns: list[str] = []
    for message in reversed(view.messages):
        if message.role != "user":
            continue
        try:
            text = message_text(_content.decode(message.content))
        except msgspec.DecodeError:
            text = ""
        turns.append(clip(text))
        if len(turns) > CONTEXT_TURNS:
            break
    return turns[::-1]


@asgi("/v1/chat/completions", copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    scope = cast(HTTPScope, scope)
    if scope["method"] != "POST":  # stored completions: GET/DELETE /v1/chat/completions
        await forward(scope, receive, send)
        return
    services = services_.from_scope(scope)
    headers = cast(Headers, scope["headers"])
    try:
        body = await read_body(receive, headers, services.config.server.max_body_bytes)
        view = decode(_view, body, services.config.server.max_json_depth)
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, degraded_headers(services.health.header_value))
        return

    principal = principal_of(scope)
    identity = identity_of(headers, (view.user,), principal.default_user)
    occurred_at = now()
    placement = services.config.memory.placement
    forwarded, extra = await remember(
        services,
        principal,
        identity,
        query_turns(view),
        body,
        lambda body, block: inject(body, block, placement),
    )
    upstream = services.upstream

    def kept(outcome: Outcome) -> None:
        keep(
            services.intake,
            outcome,
            CHAT,
            tenant_id=principal.tenant_id,
            user=identity.user,
            session=identity.session,
            model=view.model,
            occurred_at=occurred_at,
            request_body=body,
        )

    await relay(
        upstream,
        receive,
        send,
        method="POST",
        url=upstream.url("/chat/completions", scope["query_string"]),
        headers=upstream.request_headers(headers, readable_encodings=True),
        body=forwarded,
        extra_headers=extra,
        heartbeat=services.config.upstream.heartbeat_idle,
        capture=identity.ingest,
        on_end=kept if identity.ingest else None,
    )
