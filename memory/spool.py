"""A local, durable queue of exchanges waiting to be stored.

Every captured exchange is written here first, then stored in PostgreSQL and queued in Redis, and only then
removed. If either service is down, or the process dies in between, the entry stays and is delivered later;
since delivery is idempotent, a replay never stores twice.

SQLite (stdlib) in WAL mode with ``synchronous=FULL``: a committed batch survives a crash of the process and
of the machine. Several processes may share one file (SQLite serialises writers), as the API processes of
one ``memoire serve`` do: a process takes entries to deliver by :meth:`Spool.claim`, which moves their next
try a lease ahead in the same transaction, so the others pass them by. One that dies holding a claim leaves
its entries to whichever process finds them due once the lease is over. All calls go to one thread, so the
event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id               TEXT PRIMARY KEY,
    payload          BLOB NOT NULL,
    created_at       REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL DEFAULT 0,
    last_error       TEXT
);
CREATE INDEX IF NOT EXISTS spool_due ON spool (next_attempt_at, created_at);
"""


#: Seconds opening the spool may wait for the other processes that share it.
OPEN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    payload: bytes
    attempts: int


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoire-spool")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + OPEN_TIMEOUT
            while True:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                try:
                    # Switching a new file to WAL takes it whole, and SQLite answers busy at once (no wait)
                    # when another process sharing the spool is opening or writing it at that moment.
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=FULL")
                    conn.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    conn.close()
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            self._conn = conn
        return self._conn

    async def open(self) -> None:
        await self._run(self._db)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    async def put(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Add entries durably; an id already present is left as it is."""
        rows = [(eid, payload, time.time()) for eid, payload in entries]

        def _put() -> None:
            db = self._db()
            with _transaction(db):
                db.executemany("INSERT OR IGNORE INTO spool (id, payload, created_at) VALUES (?, ?, ?)", rows)

        await self._run(_put)

    async def claim(self, limit: int, lease: float) -> list[Entry]:
        """Take the oldest entries whose retry time has come, at most ``limit``: their next try moves
        ``lease`` seconds ahead, so no other process sharing the file takes them meanwhile. The caller
        removes them once delivered, or defers them (:meth:`defer`)."""

        def _claim() -> list[Entry]:
            db = self._db()
            now = time.time()
            with _transaction(db):
                entries = [
                    Entry(*row)
                    for row in db.execute(
                        "SELECT id, payload, attempts FROM spool"
                        " WHERE next_attempt_at <= ? ORDER BY created_at LIMIT ?",
                        (now, limit),
                    )
                ]
                held = [(now + lease, e.id) for e in entries]
                db.executemany("UPDATE spool SET next_attempt_at = ? WHERE id = ?", held)
            return entries

        result: list[Entry] = await self._run(_claim)
        return result

    async def remove(self, ids: Iterable[str]) -> None:
        rows = [(eid,) for eid in ids]

        def _remove() -> None:
            db = self._db()
            with _transaction(db):
                db.executemany("DELETE FROM spool WHERE id = ?", rows)

        await self._run(_remove)

    async def present(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are still in the spool."""
        wanted = list(ids)

        def _present() -> set[str]:
            db = self._db()
            found: set[str] = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in db.execute(f"SELECT id FROM spool WHERE id IN ({marks})", chunk))  # noqa: S608
            return found

        result: set[str] = await self._run(_present)
        return result

    async def remove_matching(self, matches: Callable[[bytes], bool]) -> int:
        """Remove every entry whose payload ``matches`` (run on the spool's thread); return how many."""

        def _remove() -> int:
            db = self._db()
            with _transaction(db):
                ids = [
                    (eid,) for eid, payload in db.execute("SELECT id, payload FROM spool") if matches(payload)
                ]
                db.executemany("DELETE FROM spool WHERE id = ?", ids)
            return len(ids)

        removed: int = await self._run(_remove)
        return removed

    async def defer(self, ids: Iterable[str], delay: float, error: str) -> None:
        """Count a failed try and keep the entries until ``delay`` seconds from now."""
        rows = [(time.time() + delay, error, eid) for eid in ids]

        def _defer() -> None:
            db = self._db()
            with _transaction(db):
                db.executemany(
                    "UPDATE spool SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                    " WHERE id = ?",
                    rows,
                )

        await self._run(_defer)

    async def size(self) -> int:
        def _size() -> int:
            return int(self._db().execute("SELECT count(*) FROM spool").fetchone()[0])

        result: int = await self._run(_size)
        return result

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest entry is due (0 if one is due now), or None if the spool is empty."""

        def _next() -> float | None:
            row = self._db().execute("SELECT min(next_attempt_at) FROM spool").fetchone()
            return None if row[0] is None else max(0.0, float(row[0]) - time.time())

        result: float | None = await self._run(_next)
        return result


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
