"""The API app on loopback, as the tests run it: embedded PostgreSQL, Redis (db 14), the local embedder.

Everything started here is stopped by :meth:`Stack.close`: the app, the database (its data dir deleted) and
the ``redis-server`` if one had to be started.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import redis as redis_sync
from redis.exceptions import RedisError

from memory.config import Config
from memory.migrations import migrate
from proxy.app import create_app
from stack.local import load_embedded_postgres
from tests.support.servers import ServerThread
from worker.queue import ArqQueue

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / ".cache" / "models"
REDIS_URL = "redis://127.0.0.1:6379/14"
#: Started when nothing answers on REDIS_URL: loopback only, no persistence.
REDIS_SERVER = ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]


def add_settings_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable), read by :func:`parse_settings`."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"a config override, e.g. {example} (repeatable)",
    )


def parse_settings(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["memory.min_lexical=0.4"]`` → ``{"memory": {"min_lexical": "0.4"}}``."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"--set wants section.key=value, not {pair!r}")
        out.setdefault(section, {})[key] = value.strip()
    return out


def make_config(overrides: dict[str, dict[str, str]], spool: Path) -> Config:
    sections: dict[str, dict[str, Any]] = {
        "upstream": {"url": "http://127.0.0.1:9/v1"},
        "redis": {"url": REDIS_URL},
        "spool": {"path": str(spool)},
        "database": {"pool_min": 1, "pool_max": 4},
        "embeddings": {"model_dir": str(MODEL_DIR)},
        "auth": {"enabled": False},  # the app listens on loopback only
    }
    for section, values in overrides.items():
        sections[section] = {**sections.get(section, {}), **values}
    return msgspec.convert(sections, Config, strict=False)


class Stack:
    def __init__(self, overrides: dict[str, dict[str, str]]) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="memoire-locomo-"))
        self.config = make_config(overrides, self.tmp / "spool.sqlite3")
        self._pg: Any = None
        self._redis_proc: subprocess.Popen[bytes] | None = None
        self.server: ServerThread | None = None
        self.dsn = ""

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> Stack:
        try:
            self._redis_proc = ensure_redis(REDIS_URL)
            self._pg = load_embedded_postgres().get_server(self.tmp / "pg", cleanup_mode="delete")
            self.dsn = self._pg.get_uri()
            asyncio.run(_migrate(self.dsn))
            self.server = ServerThread(
                create_app(self.config, self.dsn, queue=ArqQueue.connect), uvloop=True
            ).start(timeout=60)
            self._wait_for_embedder()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_embedder(self, timeout: float = 300.0) -> None:
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while not self.server.app.state.memory.embedder_ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the embedder did not load")
            time.sleep(0.1)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
        release_redis(REDIS_URL, self._redis_proc)
        self._redis_proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def ensure_redis(url: str) -> subprocess.Popen[bytes] | None:
    """Make sure a Redis answers on ``url`` (its database flushed): the server started if none did."""
    client = redis_sync.Redis.from_url(url)
    started: subprocess.Popen[bytes] | None = None
    try:
        try:
            client.ping()
        except (RedisError, OSError):
            started = subprocess.Popen(REDIS_SERVER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except (RedisError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        client.flushdb()
    finally:
        client.close()
    return started


def release_redis(url: str, started: subprocess.Popen[bytes] | None) -> None:
    """Undo :func:`ensure_redis`: stop the server it started, or flush the database it used."""
    if started is not None:
        started.terminate()
        started.wait(10)
        return
    client = redis_sync.Redis.from_url(url)
    try:
        client.flushdb()
    except (RedisError, OSError):
        pass
    finally:
        client.close()


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
