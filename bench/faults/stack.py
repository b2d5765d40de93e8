"""The stack the fault suite breaks: its own PostgreSQL and Redis, the fake provider, and ``memoire up``.

Everything runs on loopback in a temporary directory. PostgreSQL (the embedded wheel) and Redis (a
``redis-server`` with the append-only file ``memoire up`` gives its own) are the suite's, so that it can kill
them and start them again; ``memoire up`` is pointed at them and supervises the API processes (two, its
default) and the worker, as a user runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.perf.stack import MODEL_DIR, free_port, wait_http
from stack.local import load_embedded_postgres, redis_answers

#: Seconds a service may take to come back.
START_TIMEOUT = 60.0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def api_processes(up: int) -> list[int]:
    """The processes that serve the API under ``memoire up`` (pid ``up``): uvicorn's workers under its
    ``serve``, or the one ``serve``."""
    serve = [pid for pid in children(up) if " serve" in cmdline(pid)]
    workers = [pid for s in serve for pid in children(s) if "spawn_main" in cmdline(pid)]
    return workers or serve


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class FaultStack:
    def __init__(self, server_path: Path | None = None) -> None:
        """``server_path``: the checkout whose ``memoire`` serves (another version, to compare); default,
        this one."""
        self.tmp = Path(tempfile.mkdtemp(prefix="memoire-faults-"))
        self.server_path = server_path
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.provider_url = ""
        self.url = ""
        self.key = ""
        self.dsn = ""
        self._pg: Any = None
        self._redis: subprocess.Popen[bytes] | None = None
        self._provider: subprocess.Popen[bytes] | None = None
        self.up: subprocess.Popen[bytes] | None = None

    # -- the services ------------------------------------------------------------------------------

    def start(self) -> FaultStack:
        try:
            self._pg = load_embedded_postgres().get_server(self.tmp / "pg", cleanup_mode="delete")
            self.dsn = self._pg.get_uri()
            self.start_redis()
            port = free_port()
            self._provider = self._spawn("provider", [sys.executable, "-m", "bench.faults.provider",
                                                      "--port", str(port)], server=False)  # fmt: skip
            self.provider_url = f"http://127.0.0.1:{port}"
            wait_http(f"{self.provider_url}/health", 10, self._provider)
            self._start_memoire()
        except BaseException:
            self.close()
            raise
        return self

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        workdir = self.tmp / "redis"
        workdir.mkdir(exist_ok=True)
        self._redis = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", str(workdir),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not redis_answers(self.redis_url, timeout=0.2):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill_redis(self) -> None:
        assert self._redis is not None
        self._redis.kill()
        self._redis.wait()

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster (its pid is the first line of ``postmaster.pid``); its backends see it
        gone and exit."""
        postmaster = int((Path(self._pg.pgdata) / "postmaster.pid").read_text().split()[0])
        pids = [postmaster, *children(postmaster)]
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "PostgreSQL's backends did not exit"
            time.sleep(0.05)

    def start_postgres(self) -> None:
        """Start it again (crash recovery replays its WAL)."""
        self._pg.ensure_postgres_running()

    # -- Mémoire -------------------------------------------------------------------------------------

    def memoire_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "MEMOIRE_DATABASE_URL": self.dsn,
            "MEMOIRE_REDIS_URL": self.redis_url,
            "MEMOIRE_UPSTREAM_URL": f"{self.provider_url}/v1",
            "MEMOIRE_UPSTREAM_API_KEY": "sk-fake-upstream",
            "MEMOIRE_LLM_PROVIDER": "openai-compatible",
            "MEMOIRE_LLM_BASE_URL": f"{self.provider_url}/v1",
            "MEMOIRE_LLM_MODEL": "fake-extractor",
            "MEMOIRE_LLM_API_KEY": "sk-fake-llm",
            "MEMOIRE_EMBEDDINGS_MODEL_DIR": str(MODEL_DIR),
        }
        if self.server_path is not None:
            env["PYTHONPATH"] = str(self.server_path)
        return env

    def _spawn(self, name: str, argv: list[str], *, server: bool = True) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own (so that it and its children are stopped together)."""
        cwd = self.server_path if server and self.server_path is not None else None
        with (self.tmp / f"{name}.log").open("ab") as log:
            return subprocess.Popen(argv, env=self.memoire_env(), stdout=log, stderr=subprocess.STDOUT,
                                    cwd=cwd, start_new_session=True)  # fmt: skip

    def _memoire(self, *args: str) -> str:
        cwd = self.server_path
        done = subprocess.run([sys.executable, "-m", "stack", *args], env=self.memoire_env(), cwd=cwd,
                              capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
        return done.stdout

    def _start_memoire(self) -> None:
        self._memoire("migrate")
        self._memoire("models", "prepare")
        self.key = self._memoire("keys", "create", "--name", "faults", "--rate-limit", "1000000").split()[-1]
        port = free_port()
        self.up = self._spawn("up", [sys.executable, "-m", "stack", "up", "--port", str(port),
                                     "--data-dir", str(self.tmp / "data")])  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.url}/healthz", START_TIMEOUT, self.up)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.api_processes() or not self.worker_processes():
            assert time.monotonic() < deadline, "memoire up did not start its processes"
            time.sleep(0.1)
        time.sleep(2.0)  # the API's other processes (``server.workers``) come up

    def api_processes(self) -> list[int]:
        assert self.up is not None
        return api_processes(self.up.pid)

    def worker_processes(self) -> list[int]:
        assert self.up is not None
        return [pid for pid in children(self.up.pid) if " worker" in cmdline(pid)]

    def llm_calls(self) -> dict[str, list[float]]:
        """When each exchange (by its marker) went to the extraction LLM."""
        calls: dict[str, list[float]] = httpx.get(f"{self.provider_url}/calls", timeout=10).json()
        return calls

    def close(self, *, keep: bool = False) -> None:
        """Stop everything; ``keep`` leaves the temporary directory (logs, the spool) to look into."""
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
            try:
                self.up.wait(60)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()
        if self.up is not None:  # whatever of its processes outlived it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.up.pid, signal.SIGKILL)
        for proc in (self._provider, self._redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._pg is not None:
            self._pg.cleanup()
        if keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
