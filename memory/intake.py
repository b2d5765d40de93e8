"""The intake: takes captured exchanges off the request path and stores them, whatever is down.

    submit(build, record) ─▶ journal.append(record)
                         └─▶ asyncio queue ─▶ collect: build, spool.put, journal.spooled
                                                  ─▶ deliver: record in PostgreSQL, enqueue in Redis,
                                                              spool.remove

``submit`` never blocks and never raises: it runs as the request's answer ends. Its only work there is to
append the exchange's record (the captured bytes, unparsed) to this process's :mod:`journal`, so that a
process killed before the exchange reached the spool loses nothing: whichever process sweeps the journal
next revives the record (``revive``) and spools it. Building the exchange (parsing the captured bodies)
happens in the background. Each step after the spool is idempotent, so a failure at any point only leaves
the entry in the spool to be tried again, with backoff, until it is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import asyncpg
import msgspec

from memoire import rules
from memory import db, exchanges, sweep, users
from memory.config import SpoolConfig
from memory.errors import QueueUnavailable, StorageUnavailable
from memory.exchanges import Exchange
from memory.health import Health
from memory.journal import Journal, Written
from memory.queue import Queue
from memory.spool import Entry, Spool

log = logging.getLogger(__name__)
#: Seconds ``accept`` waits for the spool before it answers 503.
ACCEPT_TIMEOUT = 5.0
#: Seconds between two sweeps of the journal for the segments of processes that are gone.
SWEEP_INTERVAL = 10.0
#: Seconds the journal is left alone after it could not be written (a full disk): exchanges then wait in
#: memory only, as they did before there was one, and the failure is logged once.
JOURNAL_PAUSE = 5.0

Build = sweep.Build
Revive = sweep.Revive


class _Durable:
    """An exchange whose sender waits until it is in the spool (``/v1/ingest``)."""

    __slots__ = ("exchange", "spooled")

    def __init__(self, exchange: Exchange, spooled: asyncio.Future[None]) -> None:
        self.exchange = exchange
        self.spooled = spooled

    def __call__(self) -> Exchange:
        return self.exchange


class _Journaled:
    """A build whose record is in the journal until the spool holds its exchange."""

    __slots__ = ("build", "written")

    def __init__(self, build: Build, written: Written) -> None:
        self.build = build
        self.written = written

    def __call__(self) -> Exchange | None:
        return self.build()


class Intake:
    def __init__(
        self,
        *,
        spool: Spool,
        pool: asyncpg.Pool,
        queue: Queue,
        config: SpoolConfig,
        health: Health,
        journal: Journal | None = None,
        revive: Revive | None = None,
    ) -> None:
        """``journal`` keeps what :meth:`submit` is given with a record until it is spooled, and
        ``revive`` reads the records of a process that is gone back into builds."""
        self._spool = spool
        self._journal = journal
        self._revive = revive
        self._pool = pool
        self._queue = queue
        self._config = config
        self._health = health
        self._inbox: asyncio.Queue[Build] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._delivering = False
        self._journal_paused_until = 0.0

    def submit(self, build: Build, record: bytes | None = None) -> None:
        """Hand over an exchange to store; returns at once. ``record`` (what ``revive`` reads back into
        ``build``) is first appended to the journal: once this returns, the exchange outlives the
        process."""
        if record is not None and self._journal is not None:
            now = time.monotonic()
            if now >= self._journal_paused_until:
                try:
                    build = _Journaled(build, self._journal.append(record))
                except OSError as exc:
                    self._journal_paused_until = now + JOURNAL_PAUSE
                    log.error(  # noqa: TRY400 (the reason is in the message; a traceback adds nothing)
                        "the journal cannot be written (%s); for %.0f s exchanges wait in memory only",
                        exc,
                        JOURNAL_PAUSE,
                    )
        self._inbox.put_nowait(build)

    async def start(self) -> None:
        await self._spool.open()
        self._tasks = [
            asyncio.create_task(self._collect_loop(), name="intake-collect"),
            asyncio.create_task(self._deliver_loop(), name="intake-deliver"),
        ]
        if self._journal is not None:
            self._tasks.append(asyncio.create_task(self._sweep_loop(), name="intake-sweep"))

    async def close(self, grace: float = 5.0) -> None:
        """Spool whatever is still in memory, try one last delivery, and stop."""
        # Let the collector finish spooling what it holds: cancelling it mid-write would lose a batch.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._inbox.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._collect_pending()
        if self._journal is not None:
            self._journal.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while await self._deliver_due():
                    pass
        await self._spool.close()

    async def sweep(self) -> int:
        """Spool the journal records of processes that are gone; returns how many."""
        if self._journal is None or self._revive is None:
            return 0
        return await sweep.sweep(self._journal, self._revive, self._spool_builds, self._config.batch_size)

    async def _sweep_loop(self) -> None:
        """Sweep at start (the process may replace one that died), then every :data:`SWEEP_INTERVAL`."""
        while True:
            try:
                await self.sweep()
            except Exception:  # the loop must outlive any one sweep
                log.exception("sweeping the journal failed")
            await asyncio.sleep(SWEEP_INTERVAL)

    async def flush(self) -> None:
        """Wait until everything submitted so far has been delivered or deferred (for tests and shutdown)."""
        await self._inbox.join()
        # What this process has claimed is not due, but it is not delivered yet either.
        while self._delivering or await self._spool.next_due_in() == 0:  # noqa: ASYNC110 (polls the file)
            await asyncio.sleep(0.005)

    async def spooled(self) -> int:
        """Exchanges waiting in the spool (for ``/metrics``)."""
        return await self._spool.size()

    async def accept(self, exchange: Exchange) -> None:
        """Hand over an exchange and return once it is safe in the spool (batched with others: one write
        for many). Raises :class:`StorageUnavailable` if the spool cannot be written within
        :data:`ACCEPT_TIMEOUT` seconds."""
        durable = _Durable(exchange, asyncio.get_running_loop().create_future())
        self._inbox.put_nowait(durable)
        try:
            async with asyncio.timeout(ACCEPT_TIMEOUT):
                await asyncio.shield(durable.spooled)
        except TimeoutError as exc:
            raise StorageUnavailable("the exchange could not be written to the spool in time") from exc

    async def drop_spooled(self, tenant_id: uuid.UUID, user: str) -> int:
        """Drop the user's exchanges waiting in the spool (those in memory are spooled first); returns how
        many. Call it in the transaction that forgets the user, holding :func:`users.lock_names`: delivery
        takes the same lock and stores only entries still in the spool, in every process."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._inbox.join()
                await self.sweep()  # a process that died may have journaled the user's exchanges

        def matches(payload: bytes) -> bool:
            try:
                exchange = exchanges.unpack(payload)
            except msgspec.DecodeError:
                return False
            return exchange.tenant_id == tenant_id and exchange.user == user

        return await self._spool.remove_matching(matches)

    # -- collect: build exchanges and make them durable --------------------------------------------

    async def _collect_loop(self) -> None:
        while True:
            builds = [await self._inbox.get()]
            while len(builds) < self._config.batch_size and not self._inbox.empty():
                builds.append(self._inbox.get_nowait())
            try:
                await self._spool_builds(builds)
            except Exception:  # the loop must outlive any one batch
                log.exception("collecting %d exchanges failed", len(builds))
            finally:
                for _ in builds:
                    self._inbox.task_done()

    async def _collect_pending(self) -> None:
        builds: list[Build] = []
        while not self._inbox.empty():
            builds.append(self._inbox.get_nowait())
            self._inbox.task_done()
        if builds:
            await self._spool_builds(builds)

    async def _spool_builds(self, builds: list[Build]) -> None:
        rows: list[tuple[str, bytes]] = []
        for build in builds:
            try:
                exchange = build()
                if exchange is not None:
                    rows.append((str(exchange.id), exchanges.pack(exchange)))
            except Exception as exc:
                log.exception("could not read a captured exchange; it is not stored")
                if isinstance(build, _Durable):
                    build.spooled.set_exception(exc)
        if rows:
            await self._put(rows)
        for build in builds:
            if isinstance(build, _Durable) and not build.spooled.done():
                build.spooled.set_result(None)
            elif isinstance(build, _Journaled) and self._journal is not None:
                try:
                    self._journal.spooled(build.written)
                except OSError:  # the record stays: a sweep after this process may spool it again
                    log.exception("could not mark a journaled exchange as spooled")

    async def _put(self, rows: list[tuple[str, bytes]]) -> None:
        delay = self._config.retry_min
        while True:
            try:
                await self._spool.put(rows)
                break
            except Exception:
                # The disk is full or unwritable: keep the exchanges in memory and try again.
                log.exception(
                    "could not write %d exchanges to the spool; retrying in %.1fs", len(rows), delay
                )
                await asyncio.sleep(delay)
                delay = min(self._config.retry_max, delay * 2)
        self._wake.set()

    # -- deliver: spool → PostgreSQL → Redis ----------------------------------------------------------

    async def _deliver_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await self._deliver_due() is not None:
                    continue
                delay = await self._spool.next_due_in()
            except Exception:
                log.exception("reading the spool failed")
                delay = self._config.retry_max
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _deliver_due(self) -> bool | None:
        """Claim the due entries (no other process sharing the spool delivers them too) and deliver them:
        None when none was due, else whether all were delivered."""
        self._delivering = True
        try:
            entries = await self._spool.claim(self._config.batch_size, self._config.claim_seconds)
            return await self._deliver(entries) if entries else None
        finally:
            self._delivering = False

    async def _deliver(self, entries: list[Entry]) -> bool:
        """Store and queue ``entries``; on failure defer them. Returns whether they were all delivered."""
        batch: list[tuple[Entry, Exchange]] = []
        for entry in entries:
            try:
                batch.append((entry, exchanges.unpack(entry.payload)))
            except msgspec.DecodeError as exc:
                # Written by an incompatible version: kept for an operator, never dropped, out of the way.
                log.error(  # noqa: TRY400 (the reason is in the message; a traceback adds nothing)
                    "spool entry %s cannot be read (%s); it is kept and skipped", entry.id, exc
                )
                await self._spool.defer([entry.id], self._config.retry_max * 100, f"unreadable: {exc}")
        return bool(batch) and await self._store(batch) and len(batch) == len(entries)

    async def _store(self, batch: list[tuple[Entry, Exchange]]) -> bool:
        entries = [entry for entry, _ in batch]
        attempts = max(e.attempts for e in entries)
        try:
            async with db.transaction(self._pool) as conn:
                # Under the users' locks, only what is still spooled: a user forgotten since this batch was
                # read (by this process or another) has had their entries taken out.
                await users.lock_names(conn, ((ex.tenant_id, rules.storable(ex.user)) for _, ex in batch))
                present = await self._spool.present(entry.id for entry, _ in batch)
                await exchanges.record(conn, [ex for entry, ex in batch if entry.id in present])
        except StorageUnavailable as exc:
            self._health.mark("database", ok=False)
            await self._defer(entries, attempts, str(exc))
            return False
        except Exception as exc:
            if len(batch) > 1:
                # One bad exchange must not hold back the others: store them one by one.
                results = [await self._store([pair]) for pair in batch]
                return all(results)
            reason = db.describe(exc)
            if attempts == 0 and not db.is_database_error(exc):
                log.exception("storing exchange %s failed; it stays in the spool", entries[0].id)
            else:
                log.warning("storing exchange %s failed (%s); it stays in the spool", entries[0].id, reason)
            await self._defer(entries, attempts, reason)
            return False
        self._health.mark("database", ok=True)
        try:
            await self._queue.extract((ex.tenant_id, ex.id) for _, ex in batch)
        except (QueueUnavailable, TimeoutError) as exc:
            self._health.mark("redis", ok=False)
            await self._defer(entries, attempts, f"redis: {type(exc.__cause__ or exc).__name__}")
            return False
        self._health.mark("redis", ok=True)
        await self._spool.remove(e.id for e in entries)
        return True

    async def _defer(self, entries: list[Entry], attempts: int, error: str) -> None:
        delay = min(self._config.retry_max, self._config.retry_min * 2**attempts)
        await self._spool.defer((e.id for e in entries), delay, error)
