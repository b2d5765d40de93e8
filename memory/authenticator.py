"""Which key a request presents, and whose it is: an ``mk_`` key checked against the database, each answer
remembered for ``auth.cache_ttl`` seconds; and the admin key.

A client names its Mémoire key in ``X-Memoire-Key``, else as an ``mk_`` bearer token or ``x-api-key`` (see
:mod:`proxy.auth`, which calls this for every request). Lookups are cached in process and refreshed behind
the request, so a request normally costs no database round trip; while the database is down a key seen
before keeps working.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Sequence

import asyncpg
from cachetools import LRUCache

from memory import db, keys
from memory.config import AuthConfig
from memory.errors import AuthenticationError, PermissionDenied, StorageUnavailable
from memory.keys import ANONYMOUS, Principal

#: A request's headers as ASGI gives them: lower-cased names, raw values.
Headers = Sequence[tuple[bytes, bytes]]

#: Most keys (valid or not) remembered at once.
CACHE_SIZE = 10_000
#: Seconds a key lookup may wait for the database.
LOOKUP_TIMEOUT = 2.0

_NO_KEY = (
    "No Mémoire API key provided. Send `Authorization: Bearer mk_…` (or `x-api-key: mk_…`), or your "
    "provider key as usual and the Mémoire key in `X-Memoire-Key`."
)
_BAD_KEY = (
    "Incorrect Mémoire API key provided. Keys look like mk_… and are created with `memoire keys create`."
)


def presented_key(headers: Headers) -> bytes | None:
    """The Mémoire key the request carries: ``X-Memoire-Key``, else an ``mk_`` bearer token, else an
    ``mk_`` ``x-api-key`` (how Anthropic's clients send their key)."""
    bearer: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"x-memoire-key":
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            token = value[7:].strip()
            if token.startswith(keys.PREFIX.encode()):
                bearer = token
        elif name == b"x-api-key" and value.strip().startswith(keys.PREFIX.encode()):
            api_key = value.strip()
    return bearer or api_key


def _bearer(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None


class Authenticator:
    """Checks keys against the database, remembering each answer for ``auth.cache_ttl`` seconds.

    A known key whose entry has expired keeps working while it is looked up again in the background, so
    the hot path never waits on the database for a key it has seen; an unknown key waits for its lookup,
    shared by every request that presents it at the same time. The cache is a bounded LRU.
    """

    def __init__(self, pool: asyncpg.Pool, config: AuthConfig) -> None:
        self._pool = pool
        self._config = config
        # Each answer with when it is due to be checked again; one past it is still served, while checked.
        self._cache: LRUCache[bytes, tuple[float, Principal | None]] = LRUCache(CACHE_SIZE)
        self._lookups: dict[bytes, asyncio.Task[Principal | None]] = {}
        self._generation = 0
        """Bumped by :meth:`forget`: a lookup started before it must not cache its (stale) answer."""
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
        """Drop every cached lookup (after a key is revoked in this process), and the answers of lookups
        still on their way."""
        self._cache.clear()
        self._generation += 1

    async def _principal(self, digest: bytes) -> Principal | None:
        hit = self._cache.get(digest)
        if hit is not None:
            if hit[0] > time.monotonic():
                return hit[1]
            if hit[1] is not None:  # known: answer now, check again behind the request
                self._lookup(digest)
                return hit[1]
        # asyncio.shield: a request that goes away does not cancel the lookup others wait on.
        return await asyncio.shield(self._lookup(digest))

    def _lookup(self, digest: bytes) -> asyncio.Task[Principal | None]:
        task = self._lookups.get(digest)
        if task is None:
            task = asyncio.create_task(self._fetch(digest))
            self._lookups[digest] = task
            generation = self._generation
            task.add_done_callback(lambda done: self._settle(digest, done, generation))
        return task

    async def _fetch(self, digest: bytes) -> Principal | None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT), db.connection(self._pool) as conn:
                return await keys.lookup(conn, digest)
        except TimeoutError as exc:
            raise StorageUnavailable("cannot check the API key: the database did not answer") from exc

    def _settle(self, digest: bytes, task: asyncio.Task[Principal | None], generation: int) -> None:
        del self._lookups[digest]
        if generation != self._generation:
            return  # a key was revoked meanwhile: this answer may predate it
        expires = time.monotonic() + self._config.cache_ttl
        if task.cancelled() or task.exception() is not None:
            # The database is away: a known key keeps its answer, checked again after another cache_ttl
            # (not on every request).
            stale = self._cache.get(digest)
            if stale is not None:
                self._cache[digest] = (expires, stale[1])
            return
        self._cache[digest] = (expires, task.result())
