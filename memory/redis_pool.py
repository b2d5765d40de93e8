"""How every process reaches Redis: a connection pool that connects lazily (so a client can be made while
Redis is down) and gives up after ``redis.timeout`` seconds rather than retrying on its own."""

from __future__ import annotations

from redis.asyncio import ConnectionPool

from memory.config import RedisConfig


def connection_pool(config: RedisConfig) -> ConnectionPool:
    return ConnectionPool.from_url(
        config.url,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.timeout,
        retry_on_timeout=False,
    )
