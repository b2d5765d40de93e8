"""The memory step of a proxied call, the same for every API: who the call is for, and what it recalls.

:func:`identity_of` names the end user and session from the headers and the body's own fields;
:func:`remember` recalls within ``memory.recall_timeout`` for the latest user turn (the earlier ones as
context), builds the block, and lets the route's own ``place`` put it into the body. With the database or the
embedder down, or past the timeout, the call goes on without memory and the headers say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import msgspec

from memoire import rules
from memory import recall
from memory.errors import StorageUnavailable
from memory.facts import TemporalStatus
from memory.keys import Principal
from memory.service import Recalled, discard_outcome
from proxy import services as services_
from proxy.metrics import RECALL
from proxy.upstream import Headers

log = logging.getLogger(__name__)

#: What the proxy recalls: every temporal status; the block sets past facts apart.
RECALL_TEMPORAL: tuple[TemporalStatus, ...] = ("current", "recurring", "future", "past")


class Identity(msgspec.Struct):
    user: str
    session: str | None
    recall: bool
    ingest: bool


def identity_of(headers: Headers, named: Sequence[str | None], default_user: str) -> Identity:
    """The end user and session, and whether this call recalls and is ingested.

    The user is ``X-Memoire-User``, else the first of ``named`` that is set (the body's own fields, in the
    route's order), else the key's default user. ``X-Memoire-Recall: off`` and ``X-Memoire-Ingest: off``
    turn the two halves off.
    """
    user: str | None = None
    session: str | None = None
    recall_on = ingest = True
    for name, value in headers:
        if not name.startswith(b"x-memoire-"):
            continue
        if name == b"x-memoire-user":
            user = value.decode("utf-8", "replace").strip() or None
        elif name == b"x-memoire-session":
            session = value.decode("utf-8", "replace").strip() or None
        elif name == b"x-memoire-recall":
            recall_on = value.strip().lower() != b"off"
        elif name == b"x-memoire-ingest":
            ingest = value.strip().lower() != b"off"
    chosen = user or next((n for n in named if n), None) or default_user
    return Identity(
        user=rules.storable(chosen),
        session=rules.storable(session) if session else None,
        recall=recall_on,
        ingest=ingest,
    )


def degraded_headers(value: bytes) -> Headers:
    return [(b"x-memoire-degraded", value)] if value else []


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


async def remember(
    services: services_.Services,
    principal: Principal,
    identity: Identity,
    turns: list[str],
    body: bytes,
    place: Callable[[bytes, str], bytes],
    degraded: Sequence[str] = (),
) -> tuple[bytes, Headers]:
    """The body to send (``place(body, block)`` when something relevant was recalled) and the status
    headers. ``degraded`` names components the route already found down."""
    missing: list[str] = list(degraded)
    recalled = 0
    if identity.recall and turns and turns[-1].strip():
        found = await _recall_within_budget(services, principal, identity.user, turns, missing)
        if found is not None and (found.facts or found.profile):
            try:
                block, count = services.block.build(found.facts or [], found.profile)
                if block is not None:
                    body, recalled = place(body, block), count
            except Exception:  # e.g. a message msgspec cannot re-encode: forward the body as it came
                log.exception("memory block not injected; the call goes on without memory")
                missing.append("inject-error")
    down = services.health.header_value.decode()
    components = sorted({*missing, *(down.split(",") if down else [])})
    headers: Headers = [
        (b"x-memoire-recalled", str(recalled).encode()),
        (b"x-memoire-status", b"degraded" if components else b"ok"),
    ]
    if components:
        headers.append((b"x-memoire-degraded", ",".join(components).encode()))
    return body, headers
