"""``memoire up`` as a user runs it: one command, the whole stack, a clean stop, and a second start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest

from stack.local import EmbeddedPostgres, auto_shared_buffers, redis_answers, running_embedded_dsn
from tests.support.config import MODEL_DIR
from tests.support.llm import FakeLLM
from tests.support.services import free_port
from tests.support.waiting import wait_until


def start_up(
    data_dir: Path, port: int, upstream_url: str, redis_url: str, llm_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEMOIRE_UPSTREAM_URL": upstream_url,
        "MEMOIRE_REDIS_URL": redis_url,
        "MEMOIRE_LLM_PROVIDER": "openai-compatible",
        "MEMOIRE_LLM_BASE_URL": llm_url,
        "MEMOIRE_LLM_MODEL": "fake-extractor",
        "MEMOIRE_EMBEDDINGS_MODEL_DIR": str(MODEL_DIR),
    }
    env.pop("MEMOIRE_DATABASE_URL", None)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "stack", "up", "--port", str(port), "--data-dir", str(data_dir)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=60)
    output = log.read_text()
    assert proc.returncode == 0, output
    return output


def development_key(log: Path) -> str:
    """The key ``memoire up`` prints on first start."""
    [line] = [line for line in log.read_text().splitlines() if "OPENAI_API_KEY=" in line]
    return line.split("OPENAI_API_KEY=", 1)[1].strip()


def statuses(dsn: str) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return [
                r["status"] for r in await conn.fetch("SELECT status FROM chat_logs ORDER BY occurred_at")
            ]
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.mark.timeout(240)
def test_up_runs_the_stack_stops_cleanly_and_starts_again(
    tmp_path: Path, upstream_url: str, llm: FakeLLM, llm_url: str
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nobody answers there: `up` starts its own
    log = tmp_path / "up.log"
    proc = start_up(data_dir, port, upstream_url, redis_url, llm_url, log)
    try:
        started = time.monotonic()
        wait_until(lambda: healthy(port) or proc.poll() is not None, timeout=60, interval=0.05)
        assert proc.poll() is None, log.read_text()
        print(f"memoire up: /healthz 200 after {time.monotonic() - started:.2f} s (first start, initdb)")
        assert redis_answers(redis_url)
        key = development_key(log)
        # The key commands find the running stack's database through --data-dir.
        listed = subprocess.run(
            [sys.executable, "-m", "stack", "keys", "list", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if k != "MEMOIRE_DATABASE_URL"},
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert key[:9] in listed.stdout
        assert "'development'" in listed.stdout

        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0) as client:
            reply = client.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "Hello from the fake upstream."
            stream = client.chat.completions.create(
                model="fake-chat", messages=[{"role": "user", "content": "stream"}], stream=True
            )
            assert (
                "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "
            )

        dsn = running_embedded_dsn(data_dir)
        assert dsn is not None
        # The worker extracts each exchange.
        wait_until(lambda: statuses(dsn) == ["extracted", "extracted"], timeout=30)
        output = stop(proc, signal.SIGTERM, log)
        assert "Mémoire is up" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Everything it started is gone: PostgreSQL, its Redis, the API.
    assert running_embedded_dsn(data_dir) is None
    assert not redis_answers(redis_url)
    assert not healthy(port)

    # A second start on the same data dir keeps what the first stored; Ctrl-C stops it as cleanly.
    log = tmp_path / "up-again.log"
    proc = start_up(data_dir, port, upstream_url, redis_url, llm_url, log)
    try:
        started = time.monotonic()
        wait_until(lambda: healthy(port) or proc.poll() is not None, timeout=60, interval=0.05)
        assert proc.poll() is None
        print(f"memoire up: /healthz 200 after {time.monotonic() - started:.2f} s (warm start)")
        dsn = running_embedded_dsn(data_dir)
        assert dsn is not None
        assert statuses(dsn) == ["extracted", "extracted"]
        # The first start's key still works, and no new one is made.
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {key}"})
        assert models.status_code == 200
        assert "OPENAI_API_KEY=" not in stop(proc, signal.SIGINT, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert running_embedded_dsn(data_dir) is None


def test_the_embedded_server_caches_as_much_as_it_is_given(tmp_path: Path) -> None:
    async def shared_buffers(dsn: str) -> str:
        conn = await asyncpg.connect(dsn)
        try:
            value: str = await conn.fetchval("SHOW shared_buffers")
            return value
        finally:
            await conn.close()

    for size, shown in ((160, "160MB"), (192, "192MB")):  # a new size takes effect at the next start
        postgres = EmbeddedPostgres(tmp_path, shared_buffers=size)
        try:
            assert asyncio.run(shared_buffers(postgres.start())) == shown
        finally:
            postgres.stop()
    assert 128 <= auto_shared_buffers() <= 4096
