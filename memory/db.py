"""The PostgreSQL pool, and the one boundary where asyncpg's errors become ours.

The pool registers the pgvector codec in its ``init`` hook. It is created even while PostgreSQL is down
(then with no connection open), so that the proxy starts and serves calls fail-open; connections are made
on demand once the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from pgvector.asyncpg import register_vector

from memory.config import DatabaseConfig
from memory.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: A connection, direct or from the pool.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

#: SQLSTATE classes that mean "the database is not there right now": 08 connection exception,
#: 53 insufficient resources, 57 operator intervention (shutdown, cannot connect now).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


# PostgreSQL's jsonb cannot hold U+0000. An even run of backslashes before "u0000" is the escape itself;
# an odd run means the text had a literal backslash followed by "u0000", which must stay as it is.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def json_text(value: Any) -> str:
    """``value`` as JSON text for jsonb, with NUL characters replaced by U+FFFD."""
    text = msgspec.json.encode(value).decode()
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "u0000" in text else text


def _json_encode(value: Any) -> str:
    return json_text(value)


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_json_encode, decoder=msgspec.json.decode, schema="pg_catalog")
    try:
        await register_vector(conn)
    except ValueError:
        # The vector extension does not exist yet: only before the first migration.
        log.debug("pgvector type not registered: extension missing")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (as opposed to a bad query)."""
    if isinstance(exc, (OSError, TimeoutError, asyncpg.exceptions.InterfaceError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _UNAVAILABLE_CLASSES
    return False


def describe(exc: BaseException) -> str:
    """``exc`` for a log line or an error column. A database error's message and detail can quote the row
    (users' facts), so only its class and SQLSTATE are given."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__} (SQLSTATE {getattr(exc, 'sqlstate', None)})"
    return f"{type(exc).__name__}: {exc}"


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection's reset, beyond asyncpg's own rollback of a transaction left open: none."""


async def create_pool(config: DatabaseConfig, dsn: str, *, stateless: bool = False) -> asyncpg.Pool:
    """A pool for ``dsn``. If the server does not answer, a pool that connects on first use.

    ``stateless``: the caller never leaves session state on a connection (no session-level ``SET``,
    ``LISTEN`` or advisory lock; the API's requests), so a released connection is only rolled back if a
    transaction was left open, and skips asyncpg's reset statement (``RESET ALL``, ``UNLISTEN *`` …): a
    round trip on every release, 0.45 ms of each recall. The worker's extraction jobs hold session locks and
    keep the full reset.
    """
    kwargs: dict[str, Any] = {
        "max_size": config.pool_max,
        "command_timeout": config.command_timeout,
        "timeout": config.connect_timeout,
        "init": init_connection,
    }
    if stateless:
        kwargs["reset"] = _keep_session
    if config.custom_plans:
        # asyncpg prepares every statement, and after five runs PostgreSQL may switch one to a generic
        # plan, blind to which tenant and user it serves: recall's then took twice as long (1,000 facts a
        # user among 100,000: 13.2 ms generic, 6.7 ms custom). Planning each run costs far less. A startup
        # setting, so that the pool's RESET ALL on release keeps it.
        kwargs["server_settings"] = {"plan_cache_mode": "force_custom_plan"}
    try:
        return await asyncpg.create_pool(dsn, min_size=config.pool_min, **kwargs)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("database unavailable at start (%s); connecting on demand", type(exc).__name__)
        return await asyncpg.create_pool(dsn, min_size=0, **kwargs)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A connection in a transaction; connection failures become :class:`StorageUnavailable`."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    except Exception as exc:
        if is_unavailable(exc):
            raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A connection outside a transaction (reads); connection failures become StorageUnavailable."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except Exception as exc:
        if is_unavailable(exc):
            raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        raise


async def close_pool(pool: asyncpg.Pool, grace: float = 5.0) -> None:
    """Close gracefully, or terminate if connections do not come back in time (a dead server)."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        pool.terminate()
