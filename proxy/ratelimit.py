"""Per-key rate limits, kept in Redis so that every API process shares them.

GCRA (the generic cell rate algorithm, as in redis-cell and throttled): one key per API key holding the
"theoretical arrival time" of the next request, updated atomically by a Lua script with Redis's own clock,
so API processes on several machines agree. A request is allowed while the arrival time stays within
``burst`` emission intervals of now.

The check fails open: with Redis down or slower than ``auth.rate_limit_timeout``, the call goes through and
the health tracker marks Redis down (the ``x-memoire-degraded`` header says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from memory.config import AuthConfig, RedisConfig
from memory.errors import RateLimited
from memory.health import Health
from memory.redis_pool import connection_pool

log = logging.getLogger(__name__)


def connect(config: RedisConfig) -> Redis:
    """The limiter's Redis client. It connects lazily, so it can be made while Redis is down."""
    return Redis(connection_pool=connection_pool(config))


# KEYS[1]: the bucket. ARGV: emission interval (µs), burst. Returns 0 if allowed, else µs to wait.
_GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst * interval
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"""

#: After a failed check, seconds before Redis is tried again (meanwhile calls go through unchecked).
RETRY_AFTER_FAILURE = 1.0


class RateLimiter:
    def __init__(
        self, redis: Redis, config: AuthConfig, health: Health, prefix: str = "memoire:rate"
    ) -> None:
        self._redis = redis
        self._config = config
        self._health = health
        self._prefix = prefix
        self._script = redis.register_script(_GCRA)
        self._skip_until = 0.0

    async def check(self, key_id: uuid.UUID, per_minute: int | None) -> None:
        """Raise :class:`RateLimited` if the key is over its limit; let the call through if Redis is not
        there to say."""
        limit = self._config.rate_limit if per_minute is None else per_minute
        if limit <= 0 or time.monotonic() < self._skip_until:
            return
        interval = 60_000_000 // limit
        try:
            async with asyncio.timeout(self._config.rate_limit_timeout):
                # A key allowed fewer requests a minute than the burst may burst only that many.
                burst = min(self._config.rate_burst, limit)
                wait = await self._script(keys=[f"{self._prefix}:{key_id}"], args=[interval, burst])
        except (RedisError, OSError, TimeoutError) as exc:
            self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE
            self._health.mark("redis", False)
            log.debug("rate limit not checked: %s", type(exc).__name__)
            return
        self._health.mark("redis", True)
        if wait:
            raise RateLimited(
                f"Rate limit reached for this key: {limit} requests per minute. Try again shortly.",
                retry_after=int(wait) / 1_000_000,
            )
