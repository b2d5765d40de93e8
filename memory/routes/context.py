"""What a REST handler needs from the app: the memory core, its JSON body, the tenant, and the status
headers."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec
from litestar import Request

from memory.errors import decode
from memory.keys import Principal
from memory.service import Memory

#: Where the auth middleware keeps the request's principal in the ASGI scope.
PRINCIPAL = "memoire.principal"

AnyRequest = Request[Any, Any, Any]
_T = TypeVar("_T")


def memory(request: AnyRequest) -> Memory:
    found: Memory = request.app.state.memory
    return found


async def json_body(request: AnyRequest, decoder: msgspec.json.Decoder[_T], empty: bytes = b"") -> _T:
    """The request's body through ``decoder``, held to the JSON limits (``server.max_json_depth``); an
    empty body reads as ``empty`` when one is given."""
    return decode(decoder, await request.body() or empty, memory(request).config.server.max_json_depth)


def tenant(request: AnyRequest) -> uuid.UUID:
    """The caller's tenant, from the key the auth middleware checked."""
    principal: Principal = request.scope[PRINCIPAL]  # type: ignore[literal-required]
    return principal.tenant_id


def status_headers(degraded: list[str]) -> dict[str, str]:
    headers = {"x-memoire-status": "degraded" if degraded else "ok"}
    if degraded:
        headers["x-memoire-degraded"] = ",".join(sorted(set(degraded)))
    return headers
