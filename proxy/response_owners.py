"""Who owns a response id: the links the Responses route writes, read back for continuations and for
``/v1/responses/{id}``.

A link is written when the response's id first shows in its body (the first SSE event of a stream, the
head of a JSON response): into this process's cache at once, and into the database behind the relay by one
writer task. The relay never waits for the write: holding the response's end for it held the client's
keep-alive connection too. The writer is paced: a link that comes while the writer is idle is written on
the next turn of the event loop, and links that come within :data:`WRITE_INTERVAL` of the last write wait
for the next one, which takes them in one statement, or for :data:`BATCH` of them, whichever comes first.
At a call a second every link is written at once; at a thousand, a statement of 256 links four times a
second, so the database's share never comes in one long burst.

A continuation that reaches another API process before the write lands finds no link. With the server's
key (where a missing link refuses the call) a miss is read again along :data:`MISS_RECHECKS` before it
counts, which costs only a call that names an id it does not own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid

import asyncpg
from cachetools import LRUCache

from memory import db, response_links
from memory.errors import NotFound, StorageUnavailable
from memory.health import Health
from memory.response_links import Link

log = logging.getLogger(__name__)

#: Links kept in process, least recently used out first: a continuation usually follows its response within
#: minutes, and 10,000 links (about 2 MB) cover that at hundreds of responses a second.
CACHE_SIZE = 10_000
#: Seconds after a miss at which the link is looked up again: a write from another process may be landing,
#: at most :data:`WRITE_INTERVAL` and one statement's time after its response's head.
MISS_RECHECKS = (0.02, 0.1, 0.25, 0.5, 1.0, 1.5)
#: Seconds between two writes of links. Each write holds the event loop about 0.25 ms (the links were
#: encoded as they came, so the batch is only joined), and costs the database about 3 µs a link, which a
#: relayed call in flight waits out on a machine the database shares (bench.perf, the three APIs, memory
#: off at concurrency 1: written every 5 ms, 1.39× chat's added p50; every 250 ms, 1.01× p50 but 1.52× p99,
#: as four calls a second met a write). Under load a continuation that reaches another process this soon
#: waits for it.
WRITE_INTERVAL = 1.0
#: Links per write: more pending than this are written without waiting out the interval. It bounds how long
#: one write keeps the database busy, which the calls in flight on a machine it shares wait out: a second's
#: links in one statement (2,000 at concurrency 16) took 10 ms, and responses' p99 was 1.32× chat's. At
#: 2.6 µs a link (binary COPY), 512 take about 1.3 ms, what 256 took before, and half as many writes spare
#: half the writes' fixed cost (0.2 ms of the proxy's loop each). bench.perf, the three APIs, memory off,
#: responses' p99 ratio to chat: 1.11× at concurrency 1 and 1.08× at 16 with 256 a write; 1.06× and 1.08×
#: with 512.
BATCH = 512
#: Seconds the app's shutdown waits for the link writes under way.
CLOSE_TIMEOUT = 1.0
#: Seconds a link lookup may take before the call goes on without it (or, with the server's key, is
#: answered 503): a hung database must not hold the call.
LOOKUP_TIMEOUT = 1.0
#: Seconds one write of links may take before it counts as failed and is tried again.
WRITE_TIMEOUT = 5.0
#: Links kept for writing while the database is away; past this, the oldest are only in the cache.
MAX_PENDING = 100_000
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
        self._cache: LRUCache[tuple[uuid.UUID, str], Link] = LRUCache(CACHE_SIZE)
        self._pending: list[bytes] = []
        self._last_write = -WRITE_INTERVAL
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def _remember(self, tenant_id: uuid.UUID, response_id: str, link: Link) -> None:
        self._cache[(tenant_id, response_id)] = link

    async def find(
        self, tenant_id: uuid.UUID, response_id: str, *, recheck: bool, within: float = LOOKUP_TIMEOUT
    ) -> Link | None:
        """The tenant's link for ``response_id``, or None. With ``recheck`` a miss is read again along
        :data:`MISS_RECHECKS`. Raises :class:`StorageUnavailable` when the database cannot say within
        ``within`` seconds (a hung database must not hold the call)."""
        cached = self._cache.get((tenant_id, response_id))
        if cached is not None:
            return cached
        try:
            async with asyncio.timeout(within + (MISS_RECHECKS[-1] if recheck else 0.0)):
                return await self._look_up(tenant_id, response_id, recheck)
        except TimeoutError as exc:
            raise StorageUnavailable("the response's owner could not be read in time") from exc

    async def _look_up(self, tenant_id: uuid.UUID, response_id: str, recheck: bool) -> Link | None:
        waited = 0.0
        for due in (0.0, *MISS_RECHECKS) if recheck else (0.0,):
            if due > waited:
                await asyncio.sleep(due - waited)
                waited = due
                cached = self._cache.get((tenant_id, response_id))
                if cached is not None:
                    return cached
            async with db.connection(self._pool) as conn:
                found = await response_links.find(conn, tenant_id, response_id)
            if found is not None:
                self._remember(tenant_id, response_id, found)
                return found
        return None

    def link(self, tenant_id: uuid.UUID, response_id: str, link: Link) -> None:
        """Link ``response_id`` to the tenant: in process now, in the database by the writer task."""
        self._remember(tenant_id, response_id, link)
        self._pending.append(response_links.encode(tenant_id, response_id, link.user, link.session))
        if len(self._pending) >= BATCH:
            self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        """Write what is pending, then again every :data:`WRITE_INTERVAL` while links keep coming, or as
        soon as :data:`BATCH` are pending, at most that many a statement; the task ends after an interval
        with nothing to write. Links the database did not take are written again at the next turn (up to
        :data:`MAX_PENDING`, the oldest dropped first)."""
        loop = asyncio.get_running_loop()
        await self._pause(self._last_write + WRITE_INTERVAL - loop.time())
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            self._last_write = loop.time()
            left = await self._write(batch)
            if left:
                if self._closing.is_set():
                    log.error("%d response links not stored before shutdown", len(left))
                    return
                self._pending = [*left, *self._pending][-MAX_PENDING:]
            # After a failure the interval is waited out whole: a full batch must not retry at once.
            await self._pause(self._last_write + WRITE_INTERVAL - loop.time(), when_full=not left)

    async def _write(self, batch: list[bytes]) -> list[bytes]:
        """Write ``batch``; return what is to be written again. A batch the database refuses for its
        content is written link by link, so one bad link cannot sink the others."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT), db.connection(self._pool) as conn:
                await response_links.record(conn, batch)
        except (StorageUnavailable, TimeoutError):
            self._health.mark("database", False)
            log.warning("%d response links wait for the database; this process knows them", len(batch))
            return batch
        except asyncpg.PostgresError:
            if len(batch) == 1:
                log.exception("a response link was refused by the database and is kept in process only")
                return []
        else:
            return []
        for at, one in enumerate(batch):
            if await self._write([one]):  # the database went away meanwhile: the rest waits with it
                return batch[at:]
        return []

    async def _pause(self, seconds: float, *, when_full: bool = True) -> None:
        """Wait ``seconds`` (at least one turn of the loop), or until the app closes, or (``when_full``)
        until a batch is full."""
        self._wake.clear()
        if seconds <= 0 or self._closing.is_set() or (when_full and len(self._pending) >= BATCH):
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((self._wake if when_full else self._closing).wait(), seconds)

    def tap(self, tenant_id: uuid.UUID, user: str, session: str | None) -> LinkTap:
        """A relay tap that links the response it sees (its session: ``session``, else its own id)."""
        return LinkTap(self, tenant_id, user, session)

    async def close(self) -> None:
        """Write the pending links now; after :data:`CLOSE_TIMEOUT` seconds, give up on them."""
        self._closing.set()
        self._wake.set()
        if self._writer is None or self._writer.done():
            return
        done, _ = await asyncio.wait({self._writer}, timeout=CLOSE_TIMEOUT)
        if not done:
            self._writer.cancel()
            log.error("%d response links not stored before shutdown", len(self._pending))


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
