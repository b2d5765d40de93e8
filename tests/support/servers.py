"""Real HTTP servers on loopback for tests: any ASGI app, served by uvicorn in a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")


class ServerThread:
    """``app`` on a loopback port (a free one unless ``port`` names it); ``uvloop`` runs it on uvloop, as
    ``memoire serve`` does."""

    def __init__(self, app: Any, *, uvloop: bool = False, port: int = 0) -> None:
        self.app = app
        self.uvloop = uvloop
        # IPPROTO_TCP, so that asyncio sets TCP_NODELAY (else each response waits for a delayed ACK).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,
            access_log=False,
            loop="asyncio",
            http="httptools",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        if self.uvloop:
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        self.loop.close()

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the server's event loop (to reach objects that live there)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The ASGI lifespan protocol for a fake with nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """A fake's whole request body."""
    body: bytes = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


ProxyFactory = Callable[..., ServerThread]


async def proxy_flush(proxy: ServerThread) -> None:
    """Wait until the proxy's intake has delivered everything it was given."""
    from litestar import Litestar

    app = proxy.app
    assert isinstance(app, Litestar)
    proxy.call(app.state.services.intake.flush())
