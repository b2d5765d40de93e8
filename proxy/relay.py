"""Relaying one HTTP exchange between the ASGI client and the upstream, at the raw ASGI level.

The response is relayed as the upstream sends it: status, headers, and each body chunk the moment it
arrives, byte for byte (compressed bodies stay compressed). Per chunk the relay does one ``send`` and, when
capturing, one list append; everything else about the exchange is done later, off the request path.

While the relay waits on the upstream, a watcher listens for the client's ``http.disconnect`` and cancels
it, which closes the upstream request at once, also before the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

from litestar.types import Receive, Send

from memory.errors import MemoireError, PayloadTooLarge, UpstreamBroken, render, render_anthropic
from proxy.metrics import UPSTREAM
from proxy.upstream import Headers, Upstream, UpstreamResponse

log = logging.getLogger(__name__)

HEARTBEAT = b": keep-alive\n\n"
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


@dataclass(slots=True)
class Outcome:
    """What came back, for the tee."""

    status: int
    headers: Mapping[str, str]
    chunks: list[bytes] = field(default_factory=list)


class Tap(Protocol):
    """Reads the start of a response as it is relayed (the Responses route learns the response's id)."""

    def feed(self, chunk: bytes) -> bool:
        """Look at ``chunk`` before it is sent on; True once no more chunks are needed. It must not
        block: what it starts runs behind the relay."""
        ...


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body = cast(bytes, message.get("body", b""))
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(body)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: Whose error shape the proxy's own errors take on a route: OpenAI's, or (``/anthropic``) Anthropic's.
ErrorShape = Literal["openai", "anthropic"]


async def send_error(
    send: Send, exc: MemoireError, extra: Headers | None = None, shape: ErrorShape = "openai"
) -> None:
    body = render_anthropic(exc) if shape == "anthropic" else render(exc)
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _DisconnectWatch:
    """Cancels the current task when the client disconnects, unless the response is already complete."""

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self.finished = False
        self._target = asyncio.current_task()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.finished and self._target is not None:
                    self.gone = True
                    self._target.cancel()
                return

    def stop(self) -> None:
        self._task.cancel()


async def relay(
    upstream: Upstream,
    receive: Receive,
    send: Send,
    *,
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    extra_headers: Headers,
    heartbeat: float = 0.0,
    capture: bool = False,
    tap: Tap | None = None,
    error_shape: ErrorShape = "openai",
    on_end: Callable[[Outcome], None] | None = None,
) -> Outcome | None:
    """Forward one request and relay its response. Returns None if the client left or nothing came back.

    ``on_end`` is called with the whole response captured, before its last byte goes to the client: the
    last chunk of a body of known length, else the end of the chunked body (a client reads on to it, as
    the OpenAI and Anthropic SDKs do after a stream's last event). What it keeps is then safe before the
    client has its answer."""
    watch = _DisconnectWatch(receive)
    try:
        started = time.perf_counter()
        try:
            response = await upstream.open(method, url, headers, body)
        except MemoireError as exc:
            UPSTREAM.labels(exc.code or "error").observe(time.perf_counter() - started)
            watch.finished = True
            await send_error(send, exc, extra_headers, error_shape)
            return None
        UPSTREAM.labels(str(response.status_code)).observe(time.perf_counter() - started)
        try:
            return await _relay_response(
                response, send, watch, extra_headers, heartbeat, capture, tap, on_end
            )
        finally:
            await response.aclose()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        # Swallow only the watcher's own cancellation; one from anyone else (shutdown) goes on.
        if watch.gone and task is not None and task.uncancel() == 0:
            log.debug("client disconnected; upstream request closed")
            return None
        raise
    finally:
        watch.stop()


async def _relay_response(
    response: UpstreamResponse,
    send: Send,
    watch: _DisconnectWatch,
    extra_headers: Headers,
    heartbeat: float,
    capture: bool,
    tap: Tap | None,
    on_end: Callable[[Outcome], None] | None,
) -> Outcome:
    outcome = Outcome(response.status_code, response.headers)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [*Upstream.response_headers(response), *extra_headers],
        }
    )
    chunks = response.aiter_raw()
    if heartbeat > 0 and _heartbeat_allowed(response):
        chunks = _with_heartbeats(chunks, heartbeat)
    captured = outcome.chunks
    tapping = tap is not None and 200 <= response.status_code < 300
    length = response.headers.get("content-length", "") if on_end is not None else ""
    left = int(length) if length.isdigit() else -1
    try:
        async for chunk in chunks:
            if tapping and tap is not None:
                tapping = not tap.feed(chunk)
            if capture and chunk is not HEARTBEAT:
                captured.append(chunk)
            if left > 0:
                left -= len(chunk)
                if left <= 0 and on_end is not None:
                    _ended(on_end, outcome)
                    on_end = None
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamBroken as exc:
        log.warning("upstream failed mid-response (%s); aborting the client's connection", exc.message)
        raise
    watch.finished = True
    if on_end is not None:
        _ended(on_end, outcome)
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return outcome


def _ended(on_end: Callable[[Outcome], None], outcome: Outcome) -> None:
    """Call ``on_end``; what it keeps must never break the answer it comes from."""
    try:
        on_end(outcome)
    except Exception:
        log.exception("keeping a finished exchange failed; the answer goes on")


def _heartbeat_allowed(response: UpstreamResponse) -> bool:
    """Only an uncompressed 200 event stream of unfixed length may get comments spliced in."""
    return (
        response.status_code == 200
        and "content-length" not in response.headers
        and response.headers.get("content-type", "").startswith("text/event-stream")
        and response.headers.get("content-encoding", "identity") == "identity"
    )


async def _with_heartbeats(chunks: AsyncIterator[bytes], idle: float) -> AsyncIterator[bytes]:
    """Yield the upstream's chunks, plus :data:`HEARTBEAT` whenever it stays silent ``idle`` seconds at an
    event boundary (never inside an event, which would corrupt it)."""
    at_boundary = True
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(chunks))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=idle)
            if not done:
                if at_boundary:
                    yield HEARTBEAT
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            yield chunk
            at_boundary = chunk.endswith(_EVENT_ENDS)
            pending = asyncio.ensure_future(anext(chunks))
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
