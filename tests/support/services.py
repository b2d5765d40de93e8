"""Services a test may stop and start again: a private redis-server and a private embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from memory.migrations import migrate
from stack.local import load_embedded_postgres, redis_answers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StoppableRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StoppableRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.url, timeout=0.2):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class StoppablePostgres:
    def __init__(self, pgdata: Path) -> None:
        self.server: Any = load_embedded_postgres().get_server(pgdata, cleanup_mode="delete")
        self.dsn: str = self.server.get_uri()

        async def _migrate() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()

        asyncio.run(_migrate())

    def stop(self) -> None:
        load_embedded_postgres().pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def freeze(self) -> list[int]:
        """Stop every process of this server (SIGSTOP): connections stay open and nothing answers."""
        pgdata = str(self.server.pgdata)
        out = subprocess.run(["pgrep", "-f", pgdata], capture_output=True, text=True, check=False).stdout
        postmaster = [int(p) for p in out.split()]
        children = (
            subprocess.run(
                ["pgrep", "-P", ",".join(map(str, postmaster))], capture_output=True, text=True, check=False
            ).stdout
            if postmaster
            else ""
        )
        pids = postmaster + [int(p) for p in children.split()]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.server.cleanup()
