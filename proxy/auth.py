"""Who is calling: the Mémoire key on every ``/v1`` request, the admin key on ``/v1/admin``.

A client names its Mémoire key in one of two ways:

- ``Authorization: Bearer mk_…``: the proxy sends the server's provider key upstream instead, so
  ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY=mk_…`` are the whole set-up;
- ``X-Memoire-Key: mk_…`` with the client's own provider key in ``Authorization``, passed upstream untouched.

Either way the ``mk_`` key never goes upstream (see :mod:`proxy.upstream`). Lookups are cached in process for
``auth.cache_ttl`` seconds, so a request normally costs no database round trip; while the database is down a
key seen before keeps working.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable
from typing import Any, cast

import asyncpg
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from memoire.config import AuthConfig
from memoire.errors import (
    AuthenticationError,
    MemoireError,
    PermissionDenied,
    RateLimited,
    StorageUnavailable,
)
from memory import db, keys
from memory.keys import ANONYMOUS, Principal
from memory.routes.context import PRINCIPAL
from proxy import services as services_
from proxy.relay import send_error
from proxy.upstream import Headers

#: Most keys (valid or not) remembered at once.
CACHE_SIZE = 10_000
#: Seconds a key lookup may wait for the database.
LOOKUP_TIMEOUT = 2.0

_NO_KEY = (
    "No Mémoire API key provided. Send `Authorization: Bearer mk_…`, or your provider key in "
    "`Authorization` and the Mémoire key in `X-Memoire-Key`."
)
_BAD_KEY = (
    "Incorrect Mémoire API key provided. Keys look like mk_… and are created with `memoire keys create`."
)


def presented_key(headers: Headers) -> bytes | None:
    """The Mémoire key the request carries: ``X-Memoire-Key``, else an ``mk_`` bearer token."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-memoire-key":
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            token = value[7:].strip()
            if token.startswith(keys.PREFIX.encode()):
                bearer = token
    return bearer


def _bearer(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, config: AuthConfig) -> None:
        self._pool = pool
        self._config = config
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}
        self._inflight: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._admin = keys.digest(config.admin_key) if config.admin_key else None

    async def authenticate(self, headers: Headers) -> Principal:
        key = presented_key(headers)
        if key is None:
            if self._config.enabled:
                raise AuthenticationError(_NO_KEY)
            return ANONYMOUS
        principal = await self._principal(keys.digest(key)) if key.startswith(b"mk_") else None
        if principal is None:
            raise AuthenticationError(_BAD_KEY)
        return principal

    def check_admin(self, headers: Headers) -> None:
        token = _bearer(headers)
        if self._admin is None:
            raise PermissionDenied("the admin API is disabled: set auth.admin_key (MEMOIRE_AUTH_ADMIN_KEY)")
        if token is None or not hmac.compare_digest(keys.digest(token), self._admin):
            raise AuthenticationError("Incorrect admin key provided.")

    def forget(self) -> None:
        """Drop every cached lookup (after a key is revoked in this process)."""
        self._cache.clear()

    async def _principal(self, digest: bytes) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(digest)
        if pending is not None:  # one lookup per key at a time, however many requests wait on it
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            principal = await self._lookup(digest)
        except StorageUnavailable as exc:
            if hit is not None:  # known before the outage: keep it working
                principal = hit[1]
            else:
                future.set_exception(exc)
                future.exception()  # retrieved here, so waiters see it and nothing warns
                raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()
            else:
                future.cancel()
            raise
        finally:
            del self._inflight[digest]
        future.set_result(principal)
        if len(self._cache) >= CACHE_SIZE:
            for stale in list(self._cache)[: CACHE_SIZE // 10]:
                del self._cache[stale]
        self._cache[digest] = (now + self._config.cache_ttl, principal)
        return principal

    async def _lookup(self, digest: bytes) -> Principal | None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT), db.connection(self._pool) as conn:
                return await keys.lookup(conn, digest)
        except TimeoutError as exc:
            raise StorageUnavailable("cannot check the API key: the database did not answer") from exc


def principal_of(scope: Scope) -> Principal:
    """The principal the auth middleware set for this request."""
    return cast(Principal, scope[PRINCIPAL])  # type: ignore[literal-required]


#: Route ``opt`` marking a handler that needs no key (health, metrics, the OpenAPI schema).
PUBLIC = {"public": True}
#: Route ``opt`` marking a handler that needs the admin key instead of a tenant's.
ADMIN = {"admin": True}


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
        try:
            if opt.get("admin"):
                services.auth.check_admin(headers)
                principal = ANONYMOUS
            else:
                principal = await services.auth.authenticate(headers)
                if principal.key_id is not None:
                    await services.limiter.check(principal.key_id, principal.rate_limit)
        except RateLimited as exc:
            await send_error(send, exc, [(b"retry-after", exc.retry_after_header)])
            return
        except MemoireError as exc:
            await send_error(send, exc)
            return
        scope[PRINCIPAL] = principal  # type: ignore[literal-required]
        await cast(Awaitable[Any], app(scope, receive, send))

    return middleware
