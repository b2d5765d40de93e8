"""Real services for every test: embedded PostgreSQL (migrated once per session), Redis, a fake upstream.

Isolation: each test that touches the database gets emptied tables afterwards; each test that touches Redis
gets a flushed database (``/15``, never the default one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis as redis_sync

from memory import embeddings
from memory.db import init_connection
from memory.embeddings import Embedder, LocalEmbedder
from memory.migrations import migrate
from proxy.app import create_app
from stack.local import load_embedded_postgres
from tests.support.config import MODEL_DIR, TEST_REDIS_URL, make_config
from tests.support.embedder import SharedEmbedder
from tests.support.llm import FakeLLM
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from worker.queue import ArqQueue

DATA_TABLES = (
    "memory_facts",
    "chat_logs",
    "sessions",
    "users",
    "api_keys",
    "job_failures",
    "response_links",
)


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = load_embedded_postgres().get_server(
        tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
    )
    dsn: str = server.get_uri()

    async def _migrate() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(_migrate())
    yield dsn
    server.cleanup()


@pytest.fixture(scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, init=init_connection)
    yield pool
    await pool.close()


@pytest.fixture
async def db(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The pool, with every data table emptied after the test."""
    yield pool
    await pool.execute(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE")
    await pool.execute("DELETE FROM tenants WHERE name <> 'default'")


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis_sync.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    fake = FakeUpstream()
    server = ServerThread(fake).start()
    yield fake, server
    server.stop()


@pytest.fixture
def fake(upstream_server: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
    upstream_server[0].reset()
    return upstream_server[0]


@pytest.fixture
def upstream_url(upstream_server: tuple[FakeUpstream, ServerThread]) -> str:
    return f"{upstream_server[1].url}/v1"


@pytest.fixture(scope="session")
def embedder() -> Iterator[LocalEmbedder]:
    """The real all-MiniLM-L6-v2 on onnxruntime, loaded once for the session."""
    config = make_config(embeddings={"model_dir": str(MODEL_DIR)})
    local = embeddings.create(config)
    assert isinstance(local, LocalEmbedder)
    yield local
    asyncio.run(local.close())


@pytest.fixture(scope="session")
def llm_server() -> Iterator[tuple[FakeLLM, ServerThread]]:
    fake = FakeLLM()
    server = ServerThread(fake).start()
    yield fake, server
    server.stop()


@pytest.fixture
def llm(llm_server: tuple[FakeLLM, ServerThread]) -> FakeLLM:
    """The scripted extraction LLM, emptied of scripts and requests."""
    llm_server[0].reset()
    return llm_server[0]


@pytest.fixture
def llm_url(llm_server: tuple[FakeLLM, ServerThread]) -> str:
    return f"{llm_server[1].url}/v1"


@pytest.fixture
def start_proxy(
    pg_dsn: str,
    redis_url: str,
    upstream_url: str,
    tmp_path: Path,
    db: asyncpg.Pool,
    embedder: LocalEmbedder,
) -> Iterator[ProxyFactory]:
    """Start the API app on loopback; keyword arguments override config sections.

    The app shares the session's embedder unless ``embedder_factory`` gives another, or the ``embeddings``
    section names a remote provider.
    """
    started: list[ServerThread] = []

    def start(
        dsn: str | None = None,
        embedder_factory: Callable[[], Embedder] | None = None,
        port: int = 0,
        **sections: dict[str, Any],
    ) -> ServerThread:
        base: dict[str, dict[str, Any]] = {
            "upstream": {"url": upstream_url, "anthropic_url": upstream_url.removesuffix("/v1")},
            "redis": {"url": redis_url},
            "spool": {"path": str(tmp_path / "spool.sqlite3"), "retry_min": 0.05, "retry_max": 0.3},
            "database": {"pool_min": 1, "pool_max": 4, "connect_timeout": 1.0},
            # Most tests are about something else: auth is on in tests/proxy/test_auth.py and the SDK's.
            "auth": {"enabled": False},
        }
        for name, values in sections.items():
            base[name] = {**base.get(name, {}), **values}
        if embedder_factory is None and sections.get("embeddings", {}).get("provider") != "openai":
            embedder_factory = lambda: SharedEmbedder(embedder)  # noqa: E731
        factory = embedder_factory
        app = create_app(make_config(**base), dsn or pg_dsn, queue=ArqQueue.connect, embedder_factory=factory)
        server = ServerThread(app, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def proxy(start_proxy: ProxyFactory) -> ServerThread:
    return start_proxy()
