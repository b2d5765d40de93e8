"""``POST /v1/chat/completions``: forwarded as it came, relayed as it comes back, and teed.

The body is never decoded through a closed schema: only the view the proxy needs (``messages``, ``user``,
``model``) is read, and the bytes go upstream untouched, so fields OpenAI adds tomorrow pass through.
"""

from __future__ import annotations

from typing import cast

import msgspec
from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memoire.errors import InvalidJSON, MemoireError, from_validation
from memory.exchanges import DEFAULT_TENANT_ID, DEFAULT_USER, new_id, now
from proxy import services as services_
from proxy.passthrough import forward
from proxy.relay import ClientGone, read_body, relay, send_error
from proxy.tee import Capture
from proxy.upstream import Headers


class _MessageView(msgspec.Struct):
    role: str


class ChatView(msgspec.Struct):
    """The part of a chat-completions request the proxy reads; every other field is left alone."""

    messages: list[_MessageView]
    model: str | None = None
    user: str | None = None


_view = msgspec.json.Decoder(ChatView)


def _identity(headers: Headers, view: ChatView) -> tuple[str, str | None]:
    """The end user and session: ``X-Memoire-User`` over the body's ``user``, then the default user."""
    user: str | None = None
    session: str | None = None
    for name, value in headers:
        if name == b"x-memoire-user":
            user = value.decode("utf-8", "replace").strip() or None
        elif name == b"x-memoire-session":
            session = value.decode("utf-8", "replace").strip() or None
    return user or view.user or DEFAULT_USER, session


def degraded_headers(value: bytes) -> Headers:
    return [(b"x-memoire-degraded", value)] if value else []


@asgi("/v1/chat/completions", copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    scope = cast(HTTPScope, scope)
    if scope["method"] != "POST":  # stored completions: GET/DELETE /v1/chat/completions
        await forward(scope, receive, send)
        return
    services = services_.from_scope(scope)
    headers = cast(Headers, scope["headers"])
    extra = degraded_headers(services.health.header_value)
    try:
        body = await read_body(receive, headers, services.config.server.max_body_bytes)
        try:
            view = _view.decode(body)
        except msgspec.ValidationError as exc:
            raise from_validation(exc) from exc
        except msgspec.DecodeError as exc:
            raise InvalidJSON(f"the request body is not valid JSON: {exc}") from exc
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, extra)
        return

    user, session = _identity(headers, view)
    occurred_at = now()
    upstream = services.upstream
    outcome = await relay(
        upstream,
        receive,
        send,
        method="POST",
        url=upstream.url("/chat/completions", scope["query_string"]),
        headers=upstream.request_headers(headers, readable_encodings=True),
        body=body,
        extra_headers=extra,
        heartbeat=services.config.upstream.heartbeat_idle,
        capture=True,
    )
    if outcome is not None and 200 <= outcome.status < 300:
        services.intake.submit(
            Capture(
                id=new_id(),
                tenant_id=DEFAULT_TENANT_ID,
                user=user,
                session=session,
                model=view.model,
                occurred_at=occurred_at,
                request_body=body,
                response_headers=outcome.headers,
                chunks=outcome.chunks,
            ).build
        )
