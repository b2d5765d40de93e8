"""The SDK's backlog: exchanges waiting to be ingested, sent by one daemon thread, retried until they land.

The app never waits on it: :meth:`Backlog.put` appends and returns. The thread sends entries oldest first;
when Mémoire is down or answers 5xx/429 it keeps the entry and tries again with exponential backoff, so an
outage delays ingestion but loses nothing the process still holds. An entry the server refuses as invalid
(any other 4xx) is dropped with a warning: sending it again cannot succeed. Each entry carries an
idempotency key, so an entry sent twice (the answer was lost) is stored once.

The backlog lives in memory (``max_size`` entries, the oldest dropped first, with a warning) and is flushed
for up to ``flush_timeout`` seconds when the interpreter exits.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("memoire.sdk")

#: The outcome of one send: "ok", "retry" (keep it and back off) or "drop" (it can never succeed).
Send = Callable[[dict[str, Any]], str]


class Backlog:
    def __init__(
        self,
        send: Send,
        *,
        max_size: int = 10_000,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        flush_timeout: float = 2.0,
    ) -> None:
        self._send = send
        self._entries: collections.deque[dict[str, Any]] = collections.deque()
        self._max_size = max_size
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._current: dict[str, Any] | None = None
        self._discard_current = False
        self._closed = False
        self._dropped_warned = False
        atexit.register(_flush_at_exit, weakref.ref(self), flush_timeout)

    def put(self, entry: dict[str, Any]) -> None:
        """Queue ``entry`` for sending; returns at once."""
        with self._cond:
            if len(self._entries) >= self._max_size:
                self._entries.popleft()
                if not self._dropped_warned:
                    log.warning("Mémoire backlog full (%d exchanges); dropping the oldest", self._max_size)
                    self._dropped_warned = True
            self._entries.append(entry)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="memoire-backlog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def drop(self, matches: Callable[[dict[str, Any]], bool], wait: float = 5.0) -> int:
        """Remove entries that ``matches`` (a forgotten user's); returns how many. An entry being sent right
        now is not sent again, and this waits (up to ``wait`` seconds) for its send to end, so that a
        delete that follows comes after it."""
        deadline = time.monotonic() + wait
        with self._cond:
            kept = [e for e in self._entries if not matches(e)]
            dropped = len(self._entries) - len(kept)
            self._entries = collections.deque(kept)
            if self._busy and self._current is not None and matches(self._current):
                self._discard_current = True
                dropped += 1
                while self._busy and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            return dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries) + (1 if self._busy else 0)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued entry to be sent; whether the backlog is empty."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._entries or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        delay = self._retry_min
        while True:
            with self._cond:
                while not self._entries and not self._closed:
                    self._cond.wait()
                if not self._entries:
                    return
                entry = self._entries.popleft()
                self._busy = True
                self._current = entry
                self._discard_current = False
            outcome = "retry"
            try:
                outcome = self._send(entry)
            except Exception:  # the thread must outlive any one entry
                log.exception("sending an exchange to Mémoire failed")
            with self._cond:
                self._busy = False
                self._current = None
                if outcome == "retry" and not self._discard_current:
                    self._entries.appendleft(entry)
                self._cond.notify_all()
                if outcome != "retry":
                    delay = self._retry_min
                    continue
                deadline = time.monotonic() + delay
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)  # new entries do not cut the backoff short; close() does
                if self._closed:
                    return
                delay = min(self._retry_max, delay * 2)


def _flush_at_exit(ref: weakref.ref[Backlog], timeout: float) -> None:
    backlog = ref()
    if backlog is not None and len(backlog):
        if not backlog.flush(timeout):
            log.warning("Mémoire: %d exchanges not ingested before exit", len(backlog))
        backlog.close()
