"""``POST /anthropic/v1/messages``: Anthropic's Messages API, with memory; an app sets only
``ANTHROPIC_BASE_URL=http://host:port/anthropic``.

As for chat, only a view of the body is read (:mod:`proxy.anthropic_input`), the block is placed by
``memory.placement`` (a text block of the latest user message, or ``system`` after its last cache
breakpoint), the answer and its events (``message_start`` … ``message_stop``, ``ping``, ``error``) are
relayed as they arrive, and the exchange is teed (:mod:`proxy.anthropic_reply`).

Keys: the client's own ``x-api-key`` (or OAuth ``Authorization``) with ``X-Memoire-Key: mk_…``; or an
``mk_`` key as ``x-api-key`` or ``Authorization: Bearer``, and the server's ``upstream.anthropic_api_key``
goes upstream. The ``mk_`` key never does. The proxy's own errors here are in Anthropic's shape.

Who the call is for: ``X-Memoire-User``, else ``metadata.user_id``, else the key's default user.
"""

from __future__ import annotations

from typing import cast

from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memory.errors import MemoireError, decode
from memory.exchanges import now
from proxy import anthropic_input, anthropic_reply
from proxy import services as services_
from proxy.auth import ANTHROPIC, principal_of
from proxy.passthrough import forward_anthropic
from proxy.relay import ClientGone, Outcome, read_body, relay, send_error
from proxy.remember import degraded_headers, identity_of, remember
from proxy.tee import Dialect, keep
from proxy.upstream import Headers

MESSAGES = Dialect("/anthropic/v1/messages", anthropic_input.new_messages, anthropic_reply.parse)


@asgi("/anthropic/v1/messages", copy_scope=False, opt=ANTHROPIC)
async def create_message(scope: Scope, receive: Receive, send: Send) -> None:
    scope = cast(HTTPScope, scope)
    if scope["method"] != "POST":
        await forward_anthropic(scope, receive, send)
        return
    services = services_.from_scope(scope)
    headers = cast(Headers, scope["headers"])
    try:
        body = await read_body(receive, headers, services.config.server.max_body_bytes)
        view = decode(anthropic_input.view_decoder, body, services.config.server.max_json_depth)
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, degraded_headers(services.health.header_value), "anthropic")
        return

    principal = principal_of(scope)
    identity = identity_of(headers, (view.user,), principal.default_user)
    occurred_at = now()
    placement = services.config.memory.placement
    forwarded, extra = await remember(
        services,
        principal,
        identity,
        anthropic_input.query_turns(view),
        body,
        lambda body, block: anthropic_input.inject(body, block, placement),
    )
    target = services.anthropic

    def kept(outcome: Outcome) -> None:
        keep(
            services.intake,
            outcome,
            MESSAGES,
            tenant_id=principal.tenant_id,
            user=identity.user,
            session=identity.session,
            model=view.model,
            occurred_at=occurred_at,
            request_body=body,
        )

    await relay(
        services.upstream,
        receive,
        send,
        method="POST",
        url=target.url("/v1/messages", scope["query_string"]),
        headers=target.request_headers(headers),
        body=forwarded,
        extra_headers=extra,
        heartbeat=services.config.upstream.heartbeat_idle,
        capture=identity.ingest,
        on_end=kept if identity.ingest else None,
        error_shape="anthropic",
    )
