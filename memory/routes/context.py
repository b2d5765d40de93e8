"""What a REST handler needs from the app, and how it gets it: Litestar's dependency injection.

A handler names what it needs as a parameter (``memory: Memory``, ``intake: Intake``, ``authenticator:
Authenticator``, ``tenant_id: uuid.UUID``) and the app provides it (:func:`dependencies`, given the app
process's services). The chat, responses and messages relays are raw ASGI handlers outside this: they read
the services from the scope on their own fast path (``proxy.services.from_scope``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from memory.authenticator import Authenticator
from memory.config import Config
from memory.errors import decode
from memory.intake import Intake
from memory.keys import Principal
from memory.service import Memory

#: Where the auth middleware keeps the request's principal in the ASGI scope.
PRINCIPAL = "memoire.principal"

AnyRequest = Request[Any, Any, Any]
_T = TypeVar("_T")

# What a handler may take, each under its parameter's name: ``memory: MemoryDep``, ``intake: IntakeDep``,
# ``authenticator: AuthenticatorDep``, ``tenant_id: TenantId``.
MemoryDep = NamedDependency[Memory]
IntakeDep = NamedDependency[Intake]
AuthenticatorDep = NamedDependency[Authenticator]
TenantId = NamedDependency[uuid.UUID]


async def json_body(
    request: AnyRequest, decoder: msgspec.json.Decoder[_T], config: Config, empty: bytes = b""
) -> _T:
    """The request's body through ``decoder``, held to the JSON limits (``server.max_json_depth``); an
    empty body reads as ``empty`` when one is given."""
    return decode(decoder, await request.body() or empty, config.server.max_json_depth)


def tenant(request: AnyRequest) -> uuid.UUID:
    """The caller's tenant, from the key the auth middleware checked."""
    principal: Principal = request.scope[PRINCIPAL]  # type: ignore[literal-required]
    return principal.tenant_id


def dependencies(services: Callable[[State], Any]) -> dict[str, Provide]:
    """What the REST handlers may ask for, read from ``services(app.state)``: any object with ``memory``,
    ``intake`` and ``auth`` attributes (the app process's services)."""

    def provide_memory(state: State) -> Memory:
        found: Memory = services(state).memory
        return found

    def provide_intake(state: State) -> Intake:
        found: Intake = services(state).intake
        return found

    def provide_authenticator(state: State) -> Authenticator:
        found: Authenticator = services(state).auth
        return found

    return {
        "memory": Provide(provide_memory, sync_to_thread=False),
        "intake": Provide(provide_intake, sync_to_thread=False),
        "authenticator": Provide(provide_authenticator, sync_to_thread=False),
        "tenant_id": Provide(tenant, sync_to_thread=False),
    }


def status_headers(degraded: list[str]) -> dict[str, str]:
    headers = {"x-memoire-status": "degraded" if degraded else "ok"}
    if degraded:
        headers["x-memoire-degraded"] = ",".join(sorted(set(degraded)))
    return headers
