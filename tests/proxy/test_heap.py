"""An app that owns its process (``memoire serve``) settles the heap once it has started, so a full garbage
collection no longer walks what startup built; an app embedded in another process leaves that process's
heap alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import gc, sys
import msgspec
from litestar.testing import TestClient
from memory.config import Config
from memory.errors import EmbedderUnavailable
from proxy.app import create_app
from worker.queue import ArqQueue

def no_embedder():
    raise EmbedderUnavailable("not in this test")

dsn, redis_url, spool, owns = sys.argv[1:5]
config = msgspec.convert(
    {"redis": {"url": redis_url}, "spool": {"path": spool}, "auth": {"enabled": False}}, Config, strict=False
)
app = create_app(
    config, dsn, queue=ArqQueue.connect, embedder_factory=no_embedder, owns_process=owns == "owns"
)
before = gc.get_freeze_count()
with TestClient(app) as client:
    assert client.get("/healthz").status_code == 200
    print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


@pytest.mark.parametrize("owns", ["owns", "embedded"])
def test_a_served_app_settles_its_heap_and_an_embedded_one_does_not(
    owns: str, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, pg_dsn, redis_url, str(tmp_path / "spool.sqlite3"), owns],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    before, frozen, tracked = map(int, done.stdout.split())
    assert before == 0
    if owns == "owns":
        # Everything startup built is frozen; what a collection still walks is what came after it.
        assert frozen > 20_000
        assert tracked < frozen / 4
    else:
        assert frozen == 0
