"""Who is calling: the Mémoire key on every ``/v1`` request, the admin key on ``/v1/admin``.

A client names its Mémoire key in one of two ways:

- ``Authorization: Bearer mk_…`` (or, as Anthropic's clients send a key, ``x-api-key: mk_…``): the proxy
  sends the server's provider key upstream instead, so ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY=mk_…`` (or
  ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY=mk_…``) are the whole set-up;
- ``X-Memoire-Key: mk_…`` with the client's own provider key in ``Authorization``, passed upstream untouched.

Either way the ``mk_`` key never goes upstream (see :mod:`proxy.upstream`). Whose key it is, and the cache
of those answers, is :mod:`memory.authenticator`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from memory.errors import MemoireError, RateLimited
from memory.keys import ANONYMOUS, Principal
from memory.routes.context import PRINCIPAL
from proxy import services as services_
from proxy.relay import send_error
from proxy.upstream import Headers


def principal_of(scope: Scope) -> Principal:
    """The principal the auth middleware set for this request."""
    return cast(Principal, scope[PRINCIPAL])  # type: ignore[literal-required]


#: Route ``opt`` marking a handler that needs no key (health, metrics, the OpenAPI schema).
PUBLIC = {"public": True}
#: Route ``opt`` marking a handler that needs the admin key instead of a tenant's.
ADMIN = {"admin": True}
#: Route ``opt`` of Anthropic's routes: the proxy's own errors there take Anthropic's shape.
ANTHROPIC = {"error_shape": "anthropic"}


def auth_middleware(app: ASGIApp) -> ASGIApp:
    """Authenticate every request (and rate-limit its key) before its handler runs, unless the handler is
    marked :data:`PUBLIC`. Secure by default: a new route needs a key unless it says otherwise."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        opt = scope["route_handler"].opt
        if scope["type"] != ScopeType.HTTP or opt.get("public"):
            await app(scope, receive, send)
            return
        services = services_.from_scope(scope)
        headers = cast(Headers, scope["headers"])
        shape = opt.get("error_shape", "openai")
        try:
            if opt.get("admin"):
                services.auth.check_admin(headers)
                principal = ANONYMOUS
            else:
                principal = await services.auth.authenticate(headers)
                if principal.key_id is not None:
                    await services.limiter.check(principal.key_id, principal.rate_limit)
        except RateLimited as exc:
            await send_error(send, exc, [(b"retry-after", exc.retry_after_header)], shape)
            return
        except MemoireError as exc:
            await send_error(send, exc, shape=shape)
            return
        scope[PRINCIPAL] = principal  # type: ignore[literal-required]
        await cast(Awaitable[Any], app(scope, receive, send))

    return middleware
