"""The API application: the proxy routes, health, and the lifespan that owns every pool and client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import RedisError

from memory import db, embeddings
from memory.authenticator import Authenticator
from memory.config import Config, RedisConfig
from memory.errors import InvalidField, MemoireError, QueueUnavailable, RequestError, render
from memory.health import Health
from memory.intake import Intake
from memory.journal import Journal
from memory.migrations import pending
from memory.queue import Queue
from memory.routes import ROUTES
from memory.routes.context import dependencies
from memory.service import EmbedderFactory, Memory
from memory.spool import Spool
from proxy import heap, ratelimit, tee
from proxy.admin_jobs import failed_jobs, retry_job, run_task
from proxy.anthropic_messages import create_message
from proxy.auth import PUBLIC, auth_middleware
from proxy.chat import chat_completions
from proxy.context import memory_context
from proxy.memory_block import BlockBuilder
from proxy.metrics import metrics, metrics_middleware
from proxy.openapi import openapi_config
from proxy.passthrough import anthropic_passthrough, passthrough
from proxy.ratelimit import RateLimiter
from proxy.response_owners import ResponseOwners
from proxy.responses import create_response
from proxy.services import Services, ServicesDep
from proxy.upstream import AnthropicTarget, Upstream

log = logging.getLogger(__name__)

_JSON = "application/json"


def _error_response(exc: MemoireError) -> Response[bytes]:
    return Response(render(exc), status_code=exc.status, media_type=_JSON)


def _memoire_error(_: Request[Any, Any, Any], exc: MemoireError) -> Response[bytes]:
    return _error_response(exc)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    error = RequestError(str(exc.detail)) if exc.status_code < 500 else MemoireError(str(exc.detail))
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        # Litestar's parameter validation: name the first bad parameter, as for bodies.
        first = exc.extra[0] if isinstance(exc.extra[0], dict) else {}
        key = str(first.get("key") or "") or None
        error = InvalidField(f"{first.get('message', exc.detail)} at `{key}`", param=key)
    response = _error_response(error)
    response.status_code = exc.status_code
    return response


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if db.is_database_error(exc):
        # Its message and detail can quote the row (users' facts): log the class of error only.
        log.error("database error %s on %s", db.describe(exc), request.url.path)
    else:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(MemoireError("internal error; it has been logged"))


@get("/healthz", sync_to_thread=False, opt=PUBLIC)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", opt=PUBLIC)
async def readyz(services: ServicesDep) -> Response[dict[str, object]]:
    """The database and Redis answer, and the schema is current; and whether a worker runs."""
    checks: dict[str, object] = {}
    try:
        async with asyncio.timeout(2), services.pool.acquire() as conn:
            missing = await pending(conn)
        checks["database"] = "ok" if not missing else f"{len(missing)} migrations pending"
    except Exception as exc:
        if not db.is_unavailable(exc) and not isinstance(exc, TimeoutError):
            raise
        checks["database"] = "unavailable"
    try:
        async with asyncio.timeout(2):
            await services.queue.ping()
        checks["redis"] = "ok"
    except (QueueUnavailable, TimeoutError):
        checks["redis"] = "unavailable"
    services.health.mark("database", checks["database"] == "ok")
    services.health.mark("redis", checks["redis"] == "ok")
    ready = all(v == "ok" for v in checks.values())
    # Shown, not required: the API serves and keeps exchanges while no worker runs.
    checks["worker"] = await _worker_state(services)
    checks["status"] = "ready" if ready else "unavailable"
    return Response(checks, status_code=200 if ready else 503)


async def _worker_state(services: Services) -> str:
    """``ok`` while a worker refreshes its health key, ``not running`` when none has lately, ``unknown``
    when Redis cannot say."""
    try:
        async with asyncio.timeout(2):
            alive = await services.queue.worker_alive()
    except (QueueUnavailable, TimeoutError):
        return "unknown"
    return "ok" if alive else "not running"


async def _settle_when_loaded(memory: NamedDependency[Memory]) -> None:
    if memory.embedder_ready:
        return  # in before the first freeze
    await memory.loaded()
    if memory.embedder_ready:  # a load that failed built nothing to keep
        heap.settle(collect=False)  # serving by now: no full collection, only the freeze


def _services(state: State) -> Services:
    found: Services = state.services
    return found


def create_app(
    config: Config,
    dsn: str,
    *,
    queue: Callable[[RedisConfig], Queue],
    embedder_factory: EmbedderFactory | None = None,
    owns_process: bool = False,
) -> Litestar:
    """The API app for ``config``, storing into the database at ``dsn`` and queueing jobs on ``queue``
    (made from the Redis settings; the top floor passes the worker's, ``worker.queue.ArqQueue.connect``).

    ``embedder_factory`` replaces the configured embedder (tests use it to make one that fails).
    ``owns_process``: the app is all its process serves (``memoire serve``), so once started it settles the
    process's heap (:mod:`proxy.heap`); an app embedded in another process (tests) leaves it alone.
    """
    factory = embedder_factory or (lambda: embeddings.create(config))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        health = Health()
        pool = await db.create_pool(config.database, dsn, stateless=True)
        jobs = queue(config.redis)
        limits = ratelimit.connect(config.redis)
        intake = Intake(
            spool=Spool(config.spool_path),
            pool=pool,
            queue=jobs,
            config=config.spool,
            health=health,
            journal=Journal(config.journal_dir),
            revive=tee.revive,
        )
        await intake.start()
        memory = Memory(config, pool, factory)
        await memory.start()
        owners = ResponseOwners(pool, health)
        upstream = Upstream(config.upstream)  # late: the steps that can fail come first, so no session leaks
        app.state.services = Services(
            config=config,
            upstream=upstream,
            anthropic=AnthropicTarget(config.upstream),
            pool=pool,
            queue=jobs,
            intake=intake,
            health=health,
            memory=memory,
            block=BlockBuilder(config.memory.block_tokens, config.care.profile_tokens),
            auth=Authenticator(pool, config.auth),
            limiter=RateLimiter(limits, config.auth, health),
            owners=owners,
        )
        settled: asyncio.Task[None] | None = None
        if owns_process:
            heap.settle()
            # The embedder may still be loading (Memory.start waits 5 s): what it builds is settled once in.
            settled = asyncio.create_task(_settle_when_loaded(memory), name="memoire-heap-settle")
        try:
            yield
        finally:
            if settled is not None:
                settled.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await settled
            await owners.close()
            await intake.close()
            await memory.close()
            await upstream.aclose()
            await jobs.aclose()
            with contextlib.suppress(RedisError, OSError):
                await limits.aclose(close_connection_pool=True)
            await db.close_pool(pool)

    return Litestar(
        route_handlers=[
            chat_completions,
            create_response,
            create_message,
            passthrough,
            anthropic_passthrough,
            memory_context,
            healthz,
            readyz,
            metrics,
            run_task,
            failed_jobs,
            retry_job,
            *ROUTES,
        ],
        lifespan=[lifespan],
        # What route handlers take as parameters (the raw ASGI relays read services_.from_scope instead).
        dependencies={
            **dependencies(_services),
            "services": Provide(_services, sync_to_thread=False),
        },
        middleware=[metrics_middleware, auth_middleware],
        exception_handlers={
            MemoireError: _memoire_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        openapi_config=openapi_config(),
        logging_config=None,
    )
