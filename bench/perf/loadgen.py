"""A lean HTTP/1.1 load generator on uvloop: keep-alive connections, prebuilt requests, timings taken at the
byte level, so that the client adds as little as it can to what is measured.

- :func:`closed_loop`: ``concurrency`` connections, each sending its next request when the last one ends,
  for ``duration`` seconds or ``count`` requests.
- :func:`open_loop`: requests sent on a fixed schedule at ``rate`` per second, whatever the answers; each
  latency counts from the time the request was due (no coordinated omission).

A streamed answer is read event by event: the time to its first event, and for each later event the gap
seen here against the gap at the source (the fake upstream stamps each event with ``x_sent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Sample:
    latency: float
    """Seconds from the request (or, open loop, from when it was due) to the end of the answer."""
    status: int
    first_event: float | None = None
    """Streams: seconds to the first SSE event."""
    distortion: list[float] = field(default_factory=list)
    """Streams: |gap seen here − gap at the source| between consecutive events, seconds."""


class Target:
    """Where requests go, and the requests' bytes, sent in turn."""

    def __init__(self, url: str, bodies: Sequence[dict[str, object]], headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.payloads = [self._encode(parts.path, parts.port, body, headers) for body in bodies]
        self._next = 0

    def _encode(self, path: str, port: int | None, body: dict[str, object], headers: dict[str, str]) -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        lines = [
            f"POST {path} HTTP/1.1",
            f"host: {self.host}:{port}",
            "content-type: application/json",
            f"content-length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data

    def payload(self) -> bytes:
        self._next = (self._next + 1) % len(self.payloads)
        return self.payloads[self._next]


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, payload: bytes, started: float) -> Sample:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        if b"transfer-encoding: chunked" in lowered:
            sample = await self._events(started, status)
        else:
            at = lowered.find(b"content-length:")
            length = int(lowered[at + 15 : lowered.find(b"\r\n", at)]) if at >= 0 else 0
            await self.reader.readexactly(length)
            sample = Sample(time.monotonic() - started, status)
        if b"connection: close" in lowered:
            await self.close()
        return sample

    async def _events(self, started: float, status: int) -> Sample:
        assert self.reader is not None
        pending = b""
        first: float | None = None
        last: tuple[float, float] | None = None  # (arrived, sent)
        distortion: list[float] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            pending += (await self.reader.readexactly(size + 2))[:-2]
            arrived = time.monotonic()
            while (end := pending.find(b"\n\n")) >= 0:
                event, pending = pending[:end], pending[end + 2 :]
                if first is None:
                    first = arrived - started
                at = event.find(b'"x_sent":')
                if at < 0:
                    continue
                sent = float(event[at + 9 : event.find(b"}", at)])
                if last is not None:
                    distortion.append(abs((arrived - last[0]) - (sent - last[1])))
                last = (arrived, sent)
        return Sample(time.monotonic() - started, status, first, distortion)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


async def closed_loop(
    target: Target, concurrency: int, *, duration: float, count: int | None = None
) -> list[Sample]:
    host, port = target.host, target.port
    samples: list[Sample] = []
    deadline = time.monotonic() + duration
    left = [count if count is not None else 1 << 62]

    async def user() -> None:
        conn = Connection(host, port)
        try:
            while time.monotonic() < deadline and left[0] > 0:
                left[0] -= 1
                try:
                    samples.append(await conn.send(target.payload(), time.monotonic()))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    samples.append(Sample(float("nan"), 0))
                    await conn.close()
        finally:
            await conn.close()

    await asyncio.gather(*(user() for _ in range(concurrency)))
    return samples


async def open_loop(
    target: Target, rate: float, *, duration: float, connections: int = 256
) -> tuple[list[Sample], float]:
    """Requests due every ``1 / rate`` s for ``duration`` s, on ``connections`` pooled connections (more are
    opened when all are busy): the samples (requests still unanswered 30 s after the last was due are
    cancelled and count as failures), and the rate achieved (answers per second over the run)."""
    host, port = target.host, target.port
    idle = [Connection(host, port) for _ in range(connections)]
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    total = int(rate * duration)

    busy: set[Connection] = set()

    async def one(due: float) -> None:
        conn = idle.pop() if idle else Connection(host, port)
        busy.add(conn)
        try:
            samples.append(await conn.send(target.payload(), due))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            samples.append(Sample(float("nan"), 0))
            await conn.close()
        busy.discard(conn)
        idle.append(conn)

    for n in range(total):
        due = start + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        task = asyncio.get_running_loop().create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.monotonic() - start
    for task in list(tasks):  # still unanswered 30 s after the last was due: failures, not left running
        task.cancel()
        samples.append(Sample(float("nan"), 0))
    for conn in [*idle, *busy]:
        await conn.close()
    return samples, len([s for s in samples if s.status == 200]) / elapsed
