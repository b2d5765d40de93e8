"""What the performance benchmark runs against, each in its own process on loopback, all stopped at the end:

- the fake upstream (:mod:`bench.perf.upstream`);
- an embedded PostgreSQL in a temporary directory, migrated; Redis db 13 (flushed; a server is started if
  none answers);
- Mémoire (``memoire serve``, one process, as deployed) with an API key of its own, in Bearer mode (the
  server's provider key goes upstream);
- optionally the LiteLLM proxy, from its own venv (made once under ``~/.cache/memoire-bench``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from bench.locomo.stack import _migrate, ensure_redis, release_redis
from stack.local import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / ".cache" / "models"
REDIS_URL = "redis://127.0.0.1:6379/13"
LITELLM_VERSION = "1.106.2"
LITELLM_VENV = Path.home() / ".cache" / "memoire-bench" / f"litellm-{LITELLM_VERSION}"
#: Keep LiteLLM from reaching the internet (cost map, blog posts …) and from logging per request.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    "OTEL_SDK_DISABLED": "true",
    "HF_HUB_OFFLINE": "1",
}
LITELLM_CONFIG = """model_list:
  - model_name: fake-chat
    litellm_params: {{model: openai/fake-chat, api_base: "{upstream}", api_key: sk-fake-upstream}}
litellm_settings:
  {{telemetry: false, drop_params: true, set_verbose: false, request_timeout: 30, num_retries: 0}}
general_settings:
  master_key: {key}
  disable_spend_logs: true
  disable_error_logs: true
  disable_adding_master_key_hash_to_db: true
  background_health_checks: false
"""
LITELLM_KEY = "sk-bench-master"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


async def _tenant_of(dsn: str, key_name: str) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        tenant: uuid.UUID = await conn.fetchval("SELECT tenant_id FROM api_keys WHERE name = $1", key_name)
    finally:
        await conn.close()
    return tenant


def ensure_litellm() -> Path:
    """The LiteLLM proxy's venv (installed once, pinned): its ``litellm`` executable."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
        )
    return exe


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _place(pid: int, cpus: set[int], *, descendants: bool = True) -> None:
    """Every thread of ``pid`` (and of its descendants) onto ``cpus``; threads and children made later
    inherit it."""
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tasks:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)
        if descendants:
            with contextlib.suppress(OSError):
                for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                    _place(int(child), cpus)


class PerfStack:
    def __init__(self, *, chunks: int, interval: float, litellm: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="memoire-perf-"))
        self.chunks, self.interval, self.with_litellm = chunks, interval, litellm
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pg: EmbeddedPostgres | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self.dsn = ""
        self.upstream = self.memoire = self.litellm = ""
        self.key = ""
        self.tenant_id: uuid.UUID | None = None
        """The bench key's tenant: where its users live."""
        self.ingested = 0
        """Exchanges accepted by /v1/ingest so far."""

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def start(self) -> PerfStack:
        try:
            self._redis = ensure_redis(REDIS_URL)
            self._pg = EmbeddedPostgres(self.tmp)  # sized as `memoire up` sizes it
            self.dsn = self._pg.start()
            asyncio.run(_migrate(self.dsn))
            port = free_port()
            proc = self.spawn(
                "upstream",
                [sys.executable, "-m", "bench.perf.upstream", "--port", str(port),
                 "--chunks", str(self.chunks), "--interval", str(self.interval)],
            )  # fmt: skip
            self.upstream = f"http://127.0.0.1:{port}/v1"
            wait_http(f"http://127.0.0.1:{port}/health", 10, proc)
            self._start_memoire()
            if self.with_litellm:
                self._start_litellm()
        except BaseException:
            self.close()
            raise
        return self

    def memoire_env(self) -> dict[str, str]:
        return {
            "MEMOIRE_DATABASE_URL": self.dsn,
            "MEMOIRE_REDIS_URL": REDIS_URL,
            "MEMOIRE_UPSTREAM_URL": self.upstream,
            "MEMOIRE_UPSTREAM_API_KEY": "sk-fake-upstream",
            "MEMOIRE_UPSTREAM_ANTHROPIC_URL": self.upstream.removesuffix("/v1"),
            "MEMOIRE_ANTHROPIC_API_KEY": "sk-fake-upstream",
            "MEMOIRE_EMBEDDINGS_MODEL_DIR": str(MODEL_DIR),
            "MEMOIRE_SPOOL_PATH": str(self.tmp / "spool.sqlite3"),
            # One API process, as every earlier run measured, and as the LiteLLM proxy beside it runs: the
            # stack has one CPU, which a second process would only share.
            "MEMOIRE_SERVER_WORKERS": "1",
        }

    def _start_memoire(self) -> None:
        env = self.memoire_env()
        subprocess.run(
            [sys.executable, "-m", "stack", "models", "prepare"], env={**os.environ, **env}, check=True,
            capture_output=True,
        )  # fmt: skip
        created = subprocess.run(
            [sys.executable, "-m", "stack", "keys", "create", "--name", "bench",
             "--rate-limit", "1000000000"],
            env={**os.environ, **env}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.key = created.stdout.strip().splitlines()[-1]
        self.tenant_id = asyncio.run(_tenant_of(self.dsn, "bench"))
        port = free_port()
        proc = self.spawn(
            "memoire",
            [
                sys.executable,
                "-m",
                "stack",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(self.tmp / "data"),
            ],
            env,
        )
        self.memoire = f"http://127.0.0.1:{port}"
        wait_http(f"{self.memoire}/readyz", 120, proc)
        deadline = time.monotonic() + 120
        while True:  # the embedder loads in the background: recall says so until it has
            answer = httpx.post(
                f"{self.memoire}/v1/recall", json={"user_id": "warm-up", "query": "is the embedder here?"},
                headers={"authorization": f"Bearer {self.key}"},
            )  # fmt: skip
            if answer.status_code == 404 and "embedder" not in answer.headers.get("x-memoire-degraded", ""):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the embedder did not load: {answer.status_code} {answer.text}")
            time.sleep(0.2)

    def _start_litellm(self) -> None:
        exe = ensure_litellm()
        config = self.tmp / "litellm.yaml"
        config.write_text(LITELLM_CONFIG.format(upstream=self.upstream, key=LITELLM_KEY))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_"))}
        log = (self.tmp / "litellm.log").open("ab")
        proc = subprocess.Popen(
            [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--num_workers", "1"],
            env={**env, **LITELLM_ENV}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs["litellm"] = proc
        self.litellm = f"http://127.0.0.1:{port}"
        wait_http(f"{self.litellm}/health/readiness", 180, proc)

    def rss(self, name: str) -> int:
        """Resident memory of a process and its children, in bytes."""
        pids = [self.procs[name].pid]
        children = Path(f"/proc/{pids[0]}/task/{pids[0]}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    @contextlib.contextmanager
    def pinned(self) -> Iterator[bool]:
        """The stack under test (Mémoire and its PostgreSQL) on the first CPU, the world it serves (this load
        generator, the fake upstream) on the others, while the block runs; yields False, pinning nothing,
        with one CPU.

        On two cores, where the scheduler put the proxy beside the load or the database changed from one
        slice to the next, and the memory-off figures at concurrency 16 (where the proxy is the
        bottleneck) swung with it: added p50 from 5.8 to 9.6 ms for the same work. The database sits with
        Mémoire because its work is the stack's: placed with the fake upstream, a write the proxy had
        deferred stalled the upstream's answer to the call in flight, which the direct calls beside it
        never met; and each recall crossed CPUs (bench.perf, the three APIs, concurrency 1: chat's added
        p50 0.99 ms with the database on the other CPU, 0.63 with it beside Mémoire)."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            yield False
            return
        stack, world = {cpus[0]}, set(cpus[1:])
        postmaster = next(
            (pid for pid in _pids() if "postgres" in _cmdline(pid) and str(self.tmp) in _cmdline(pid)), None
        )
        placed = {
            self.procs["memoire"].pid: stack,
            self.procs["upstream"].pid: world,
        }
        if postmaster is not None:
            placed[postmaster] = stack  # and its backends, its children
        try:
            # This process alone: Mémoire and the fakes are its children, placed on their own.
            _place(os.getpid(), world, descendants=False)
            for pid, where in placed.items():
                _place(pid, where)
            yield True
        finally:
            _place(os.getpid(), set(cpus), descendants=False)
            for pid in placed:
                _place(pid, set(cpus))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self._pg is not None:
            self._pg.stop()
            self._pg = None
        release_redis(REDIS_URL, self._redis)
        self._redis = None
        shutil.rmtree(self.tmp, ignore_errors=True)
