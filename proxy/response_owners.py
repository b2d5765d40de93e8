"""Who owns a response id: the links the Responses route writes, read back for continuations and for
``/v1/responses/{id}``.

A link is written when the response's id first shows in its body (the first SSE event of a stream, the
head of a JSON response): into this process's cache at once, and into the database behind the relay by one
writer task, :data:`WRITE_DELAY` later, with every link that came meanwhile in one statement.
The relay never waits for the write: holding the response's end for it held the client's keep-alive
connection too. A continuation that reaches another API process before the write lands finds no link;
with the server's key (where a missing link refuses the call) a miss is therefore read once more after
:data:`MISS_RECHECK` seconds before it counts, which costs only a call that names an id it does not own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import OrderedDict

import asyncpg

from memoire.errors import NotFound, StorageUnavailable
from memory import db, response_links
from memory.health import Health
from memory.response_links import Link

log = logging.getLogger(__name__)

#: Links kept in process, most recent first out last.
CACHE_SIZE = 10_000
#: Seconds before a missing link is looked up again (a write from another process may be landing).
MISS_RECHECK = 0.15
#: Seconds a new link waits for others to join its write. Each write costs the event loop about 0.3 ms
#: (bench.perf, the three APIs: memory off, 1.42× chat's added latency when each call wrote its own link);
#: a continuation that reaches this process within the delay finds the link in its cache.
WRITE_DELAY = 0.005
#: Seconds the app's shutdown waits for the link writes under way.
CLOSE_TIMEOUT = 1.0
#: Bytes of a response searched for its id: it is the first ``"id"`` of a response object or stream.
SNIFF_BYTES = 65536

_RESPONSE_ID = re.compile(rb'"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,200})"')


def unknown_response(response_id: str, param: str) -> NotFound:
    """What a tenant hears of a response id it does not own: the provider's own words for an unknown id."""
    return NotFound(f"No response found with id '{response_id}'.", param=param)


class ResponseOwners:
    def __init__(self, pool: asyncpg.Pool, health: Health) -> None:
        self._pool = pool
        self._health = health
        self._cache: OrderedDict[tuple[uuid.UUID, str], Link] = OrderedDict()
        self._pending: list[tuple[uuid.UUID, str, Link]] = []
        self._writer: asyncio.Task[None] | None = None

    def _remember(self, tenant_id: uuid.UUID, response_id: str, link: Link) -> None:
        key = (tenant_id, response_id)
        self._cache[key] = link
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def find(self, tenant_id: uuid.UUID, response_id: str, *, recheck: bool) -> Link | None:
        """The tenant's link for ``response_id``, or None. With ``recheck`` a miss is read again after
        :data:`MISS_RECHECK` seconds. Raises :class:`StorageUnavailable` when the database cannot say."""
        cached = self._cache.get((tenant_id, response_id))
        if cached is not None:
            return cached
        for attempt in range(2 if recheck else 1):
            if attempt:
                await asyncio.sleep(MISS_RECHECK)
            async with db.connection(self._pool) as conn:
                found = await response_links.find(conn, tenant_id, response_id)
            if found is not None:
                self._remember(tenant_id, response_id, found)
                return found
        return None

    def link(self, tenant_id: uuid.UUID, response_id: str, link: Link) -> None:
        """Link ``response_id`` to the tenant: in process now, in the database by the writer task, which
        writes the links that came while it wrote in one statement (a group commit under load)."""
        self._remember(tenant_id, response_id, link)
        self._pending.append((tenant_id, response_id, link))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        await asyncio.sleep(WRITE_DELAY)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with db.connection(self._pool) as conn:
                    await response_links.record_many(
                        conn, [(tenant, rid, link.user, link.session) for tenant, rid, link in batch]
                    )
            except StorageUnavailable:
                self._health.mark("database", False)
                log.warning(
                    "%d response links not stored: database unavailable; this process still knows them",
                    len(batch),
                )
            except Exception:
                log.exception("%d response links not stored", len(batch))

    def tap(self, tenant_id: uuid.UUID, user: str, session: str | None) -> LinkTap:
        """A relay tap that links the response it sees (its session: ``session``, else its own id)."""
        return LinkTap(self, tenant_id, user, session)

    async def close(self) -> None:
        """Let the writes under way finish."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=WRITE_DELAY + CLOSE_TIMEOUT)


class LinkTap:
    """Finds a response's id in the first bytes the relay passes, and links it."""

    def __init__(self, owners: ResponseOwners, tenant_id: uuid.UUID, user: str, session: str | None) -> None:
        self._owners = owners
        self._tenant_id = tenant_id
        self._user = user
        self._session = session
        self._tail = b""
        self._seen = 0
        self.response_id: str | None = None

    def feed(self, chunk: bytes) -> bool:
        # Keep a short tail, in case the id is split across two chunks.
        found = _RESPONSE_ID.search(self._tail + chunk)
        if found is None:
            self._tail = chunk[-256:]
            self._seen += len(chunk)
            return self._seen > SNIFF_BYTES
        self.response_id = found.group(1).decode()
        link = Link(self._user, self._session or self.response_id)
        self._owners.link(self._tenant_id, self.response_id, link)
        return True
