"""``POST /v1/chat/completions``: forwarded as it came, relayed as it comes back, and teed.

The body is never decoded through a closed schema: only the view the proxy needs (``messages``, ``user``,
``model``) is read, and the bytes go upstream untouched, so fields OpenAI adds tomorrow pass through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import msgspec
from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from memoire.errors import InvalidJSON, MemoireError, StorageUnavailable, from_validation
from memory import recall, users
from memory.exchanges import new_id, now
from memory.extraction.prompt import message_text
from memory.facts import TemporalStatus
from memory.keys import Principal
from memory.service import Recalled, discard_outcome
from proxy import services as services_
from proxy.auth import principal_of
from proxy.memory_block import inject
from proxy.metrics import RECALL
from proxy.passthrough import forward
from proxy.relay import ClientGone, read_body, relay, send_error
from proxy.tee import Capture
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


#: Earlier user turns that recall may search with (for a message that refers back to them).
CONTEXT_TURNS = 2
#: Characters of a user message that recall reads, its last ones (it searches the last sentences anyway).
MAX_QUERY_CHARS = 2000


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
        turns.append(text.replace("\x00", "")[-MAX_QUERY_CHARS:])
        if len(turns) > CONTEXT_TURNS:
            break
    return turns[::-1]


class _Identity(msgspec.Struct):
    user: str
    session: str | None
    recall: bool
    ingest: bool


def _identity(headers: Headers, view: ChatView, default_user: str) -> _Identity:
    """The end user and session (``X-Memoire-User`` over the body's ``user``, then the key's default
    user), and whether this call recalls and is ingested (``X-Memoire-Recall: off``,
    ``X-Memoire-Ingest: off``)."""
    user: str | None = None
    session: str | None = None
    recall = ingest = True
    for name, value in headers:
        if not name.startswith(b"x-memoire-"):
            continue
        if name == b"x-memoire-user":
            user = value.decode("utf-8", "replace").strip() or None
        elif name == b"x-memoire-session":
            session = value.decode("utf-8", "replace").strip() or None
        elif name == b"x-memoire-recall":
            recall = value.strip().lower() != b"off"
        elif name == b"x-memoire-ingest":
            ingest = value.strip().lower() != b"off"
    named = users.storable(user or view.user or default_user)
    return _Identity(
        user=named, session=users.storable(session) if session else None, recall=recall, ingest=ingest
    )


def degraded_headers(value: bytes) -> Headers:
    return [(b"x-memoire-degraded", value)] if value else []


#: What the proxy recalls: every temporal status; the block sets past facts apart.
RECALL_TEMPORAL: tuple[TemporalStatus, ...] = ("current", "recurring", "future", "past")


async def _recall_within_budget(
    services: services_.Services, principal: Principal, user: str, turns: list[str], degraded: list[str]
) -> Recalled | None:
    """Recall for the latest of ``turns`` (with the earlier ones as context), given at most
    ``memory.recall_timeout``. Past it the recall is abandoned, not awaited: a hung database must not hold
    the call while the driver cancels its query."""
    config = services.config.memory
    query = recall.Query(
        text=turns[-1], limit=config.recall_limit, temporal=RECALL_TEMPORAL, context=tuple(turns[:-1])
    )
    started = time.perf_counter()
    task = asyncio.create_task(services.memory.recall_for_call(principal.tenant_id, user, query))
    done, _ = await asyncio.wait({task}, timeout=config.recall_timeout)
    if not done:
        task.cancel()
        task.add_done_callback(discard_outcome)
        degraded.append("recall-timeout")
        RECALL.labels("timeout").observe(time.perf_counter() - started)
        return _profile_only(services, principal, user)
    try:
        found = task.result()
    except StorageUnavailable:
        services.health.mark("database", False)
        degraded.append("database")
        RECALL.labels("database").observe(time.perf_counter() - started)
        return _profile_only(services, principal, user)
    except Exception:
        log.exception("recall failed; the call goes on without memory")
        degraded.append("recall-error")
        RECALL.labels("error").observe(time.perf_counter() - started)
        return _profile_only(services, principal, user)
    RECALL.labels("ok").observe(time.perf_counter() - started)
    services.health.mark("database", True)
    degraded.extend(found.degraded)
    return found


def _profile_only(services: services_.Services, principal: Principal, user: str) -> Recalled | None:
    """When recall cannot answer: the user's profile as this process last read it, if it has."""
    profile = services.memory.known_profile(principal.tenant_id, user)
    return Recalled(None, profile, []) if profile else None


async def _remember(
    services: services_.Services, principal: Principal, identity: _Identity, view: ChatView, body: bytes
) -> tuple[bytes, Headers]:
    """The body to send (with the memory block when something relevant was recalled) and the status headers.

    Recall runs within ``memory.recall_timeout``; past it, or with the database or the embedder down, the
    call goes on without memory and the headers say so.
    """
    degraded: list[str] = []
    recalled = 0
    turns = query_turns(view) if identity.recall else []
    if turns and turns[-1].strip():
        found = await _recall_within_budget(services, principal, identity.user, turns, degraded)
        if found is not None and (found.facts or found.profile):
            try:
                block, count = services.block.build(found.facts or [], found.profile)
                if block is not None:
                    body, recalled = inject(body, block, services.config.memory.placement), count
            except Exception:  # e.g. a system message msgspec cannot re-encode: forward it as it came
                log.exception("memory block not injected; the call goes on without memory")
                degraded.append("inject-error")
    down = services.health.header_value.decode()
    components = sorted({*degraded, *(down.split(",") if down else [])})
    headers: Headers = [
        (b"x-memoire-recalled", str(recalled).encode()),
        (b"x-memoire-status", b"degraded" if components else b"ok"),
    ]
    if components:
        headers.append((b"x-memoire-degraded", ",".join(components).encode()))
    return body, headers


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
        try:
            view = _view.decode(body)
        except msgspec.ValidationError as exc:
            raise from_validation(exc) from exc
        except msgspec.DecodeError as exc:
            raise InvalidJSON(f"the request body is not valid JSON: {exc}") from exc
    except ClientGone:
        return
    except MemoireError as exc:
        await send_error(send, exc, degraded_headers(services.health.header_value))
        return

    principal = principal_of(scope)
    identity = _identity(headers, view, principal.default_user)
    occurred_at = now()
    forwarded, extra = await _remember(services, principal, identity, view, body)
    upstream = services.upstream
    outcome = await relay(
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
    )
    if identity.ingest and outcome is not None and 200 <= outcome.status < 300:
        services.intake.submit(
            Capture(
                id=new_id(),
                tenant_id=principal.tenant_id,
                user=identity.user,
                session=identity.session,
                model=view.model,
                occurred_at=occurred_at,
                request_body=body,
                response_headers=outcome.headers,
                chunks=outcome.chunks,
            ).build
        )
