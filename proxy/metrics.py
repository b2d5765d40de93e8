"""Prometheus metrics: ``GET /metrics``.

- ``memoire_http_request_duration_seconds{method,route,status}``: every request, to the last byte;
- ``memoire_upstream_duration_seconds{status}``: the provider, to its response headers;
- ``memoire_recall_duration_seconds{outcome}``: the proxy's recall before a chat call;
- ``memoire_queue_depth{queue}``: jobs waiting in Redis and exchanges waiting in this process's spool;
- ``memoire_extractions_total{outcome}``: extraction jobs by outcome, counted by every worker in Redis;
- ``memoire_job_failures_total{task}``: jobs failed for good (after their tries), likewise.

Routes are labelled by their template (``/v1/facts/{fact_id}``), never by the raw path, so the number of
series stays bounded. With ``server.workers`` > 1 each process keeps its own request histograms; the queue
and extraction figures come from Redis and agree across processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from memory.errors import QueueUnavailable
from proxy.services import ServicesDep

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Histogram(
    "memoire_http_request_duration_seconds",
    "Requests to Mémoire, to the last byte of the response.",
    ("method", "route", "status"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM = Histogram(
    "memoire_upstream_duration_seconds",
    "Calls to the upstream provider, to its response headers.",
    ("status",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECALL = Histogram(
    "memoire_recall_duration_seconds",
    "The proxy's recall before a chat call (abandoned past memory.recall_timeout).",
    ("outcome",),
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5),
    registry=REGISTRY,
)


class _Snapshot(Collector):
    """Figures read from Redis and the spool just before a scrape (see :func:`metrics`)."""

    def __init__(self) -> None:
        self.queue: dict[str, float] = {}
        self.extractions: dict[str, float] = {}
        self.failures: dict[str, float] = {}
        self.worker_up: float | None = None

    def collect(self) -> Iterable[Any]:
        if self.worker_up is not None:
            yield GaugeMetricFamily(
                "memoire_worker_up",
                "1 while a worker refreshes its health key (every 10 s), 0 when none has lately.",
                value=self.worker_up,
            )
        depth = GaugeMetricFamily("memoire_queue_depth", "Work waiting, by queue.", labels=["queue"])
        for queue, value in sorted(self.queue.items()):
            depth.add_metric([queue], value)
        yield depth
        done = CounterMetricFamily(
            "memoire_extractions", "Extraction jobs finished, by outcome (all workers).", labels=["outcome"]
        )
        for outcome, value in sorted(self.extractions.items()):
            done.add_metric([outcome], value)
        yield done
        failed = CounterMetricFamily(
            "memoire_job_failures",
            "Worker jobs failed for good, after their tries (all workers).",
            labels=["task"],
        )
        for task, value in sorted(self.failures.items()):
            failed.add_metric([task], value)
        yield failed


_SNAPSHOT = _Snapshot()
REGISTRY.register(_SNAPSHOT)


@get("/metrics", opt={"public": True}, include_in_schema=False)
async def metrics(services: ServicesDep) -> Response[bytes]:
    """Prometheus text exposition."""
    try:
        async with asyncio.timeout(1):
            stats = await services.queue.stats()
        _SNAPSHOT.queue["redis"] = float(stats.queued)
        _SNAPSHOT.worker_up = float(stats.worker_alive)
        _SNAPSHOT.extractions = {k: float(v) for k, v in stats.extractions.items()}
        _SNAPSHOT.failures = {k: float(v) for k, v in stats.failures.items()}
    except (QueueUnavailable, TimeoutError):
        _SNAPSHOT.queue.pop("redis", None)
        _SNAPSHOT.worker_up = None  # Redis cannot say
    _SNAPSHOT.queue["spool"] = float(await services.intake.spooled())
    return Response(
        generate_latest(REGISTRY), media_type="text/plain; version=0.0.4; charset=utf-8", status_code=200
    )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Time every request to its last byte, labelled by route template and status."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            route = scope.get("path_template") or "other"
            method = scope["method"] if scope["method"] in _METHODS else "other"  # bounded label values
            REQUESTS.labels(method, route, str(status)).observe(time.perf_counter() - started)

    return middleware
