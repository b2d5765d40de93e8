"""``POST /v1/responses``: OpenAI's Responses API, with memory, forwarded as it came and teed.

As for chat, only a view of the body is read (:mod:`proxy.responses_input`), the block is placed by
``memory.placement`` (a developer item before the latest user input, or ``instructions`` for a call whose
history the provider keeps), the answer and its typed SSE events are relayed as they arrive, and the
exchange is teed: the new input items and the output (:mod:`proxy.responses_reply`).

Who the call is for: ``X-Memoire-User``, else the body's ``user``, else ``safety_identifier``, else the user
of the response it continues (``previous_response_id``), else the key's default user. Its session:
``X-Memoire-Session``, else the session of the response it continues, else the ``conversation``'s id, else
its own response id, so a chain of ``previous_response_id`` calls is one session. A call that sends the
conversation back itself (its ``input`` holds items the model produced) is a chat client's turn: it gets
no session of its own, as chat does not, or every turn of an agent's loop would open one.

With the server's provider key (``Authorization: Bearer mk_…``) every tenant shares one provider account,
so a response id is honoured only for the tenant that created it (:mod:`proxy.response_owners`): another
tenant's ``previous_response_id`` gets a 404, as an unknown id would. ``conversation`` names an object of
that shared account, which no tenant created through the proxy, and is refused.
"""

from __future__ import annotations

import logging
from typing import cast

from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memoire import rules
from memory.errors import MemoireError, PermissionDenied, StorageUnavailable, decode
from memory.exchanges import now
from memory.response_links import Link
from proxy import responses_input, responses_reply
from proxy import services as services_
from proxy.auth import principal_of
from proxy.passthrough import forward
from proxy.relay import ClientGone, Outcome, read_body, relay, send_error
from proxy.remember import degraded_headers, identity_of, remember
from proxy.response_owners import LOOKUP_TIMEOUT, unknown_response
from proxy.tee import Dialect, keep
from proxy.upstream import Headers

log = logging.getLogger(__name__)

RESPONSES = Dialect("/v1/responses", responses_input.new_messages, responses_reply.parse)


def _uncompressed(headers: Headers) -> Headers:
    """The response comes back uncompressed, so its id can be read as it passes."""
    return [*(h for h in headers if h[0] != b"accept-encoding"), (b"accept-encoding", b"identity")]


def _own_session(view: responses_input.ResponsesView, response_id: str | None) -> str | None:
    """The session a call that names none starts: its response's id, which a continuation joins; none
    for a call that carries the conversation itself (read as the answer ends)."""
    if response_id is None or responses_input.carries_history(view):
        return None
    return response_id


@asgi("/v1/responses", copy_scope=False)
async def create_response(scope: Scope, receive: Receive, send: Send) -> None:
    scope = cast(HTTPScope, scope)
    if scope["method"] != "POST":
        await forward(scope, receive, send)
        return
    services = services_.from_scope(scope)
    headers = cast(Headers, scope["headers"])
    principal = principal_of(scope)
    shared = principal.key_id is not None and services.upstream.uses_server_key(headers)
    degraded: list[str] = []
    link: Link | None = None
    try:
        body = await read_body(receive, headers, services.config.server.max_body_bytes)
        view = decode(responses_input.view_decoder, body, services.config.server.max_json_depth)
        if shared and view.conversation is not None:
            raise PermissionDenied(
                "`conversation` names a conversation of the provider account that every tenant shares, so"
                " it is not used with the server's provider key: continue with previous_response_id, or"
                " send your own provider key in Authorization and your Mémoire key in X-Memoire-Key",
                param="conversation",
            )
        if view.previous_response_id is not None:
            try:
                link = await services.owners.find(
                    principal.tenant_id,
                    view.previous_response_id,
                    recheck=shared,
                    # With the client's own key the link only names the session: memory's budget.
                    within=LOOKUP_TIMEOUT if shared else services.config.memory.recall_timeout,
                )
            except StorageUnavailable as exc:
                if shared:
                    raise StorageUnavailable(
                        "the owner of previous_response_id cannot be checked while the database is down"
                    ) from exc
                degraded.append("database")
            if shared and link is None:
                raise unknown_response(view.previous_response_id, "previous_response_id")
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, degraded_headers(services.health.header_value))
        return

    identity = identity_of(
        headers, (view.user, view.safety_identifier, link.user if link else None), principal.default_user
    )
    conversation = rules.storable(view.conversation_id) if view.conversation_id else None
    session = identity.session or (link.session if link else None) or conversation
    occurred_at = now()
    placement, stateful = services.config.memory.placement, view.stateful
    forwarded, extra = await remember(
        services,
        principal,
        identity,
        responses_input.query_turns(view),
        body,
        lambda body, block: responses_input.inject(body, block, placement, stateful),
        degraded,
    )
    tap = (
        services.owners.tap(principal.tenant_id, identity.user, session) if view.store is not False else None
    )
    upstream = services.upstream

    def kept(outcome: Outcome) -> None:
        keep(
            services.intake,
            outcome,
            RESPONSES,
            tenant_id=principal.tenant_id,
            user=identity.user,
            session=session or _own_session(view, tap.response_id if tap else None),
            model=view.model,
            occurred_at=occurred_at,
            request_body=body,
        )

    await relay(
        upstream,
        receive,
        send,
        method="POST",
        url=upstream.url("/responses", scope["query_string"]),
        headers=_uncompressed(upstream.request_headers(headers)),
        body=forwarded,
        extra_headers=extra,
        heartbeat=services.config.upstream.heartbeat_idle,
        capture=identity.ingest,
        on_end=kept if identity.ingest else None,
        tap=tap,
    )
