"""The memory core as the API, the proxy and the worker use it: remember facts, recall them.

:class:`Memory` holds the pool and the embedder (loaded in the background at start, so the process serves
at once) and turns a user's external id into the stored user. It is the one place that embeds before a
write, so every write path (``/v1/facts``, extraction) embeds, dedups and supersedes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cachetools import LRUCache, TTLCache

from memory import browse, db, query_plan, recall, slots, users, writer
from memory.config import Config
from memory.embeddings import Embedder, Vector
from memory.errors import EmbedderUnavailable, MemoireError
from memory.facts import Fact, NewFact
from memory.recall import Query
from memory.recall_stats import RecallStats

log = logging.getLogger(__name__)

EmbedderFactory = Callable[[], Embedder]

#: Seconds a user's profile is served from memory before it is read again.
PROFILE_TTL = 30.0
#: Users whose profile (and stored id) is kept in process, least recently used out first: the users active
#: within a few minutes, at a few KB each (a profile is a handful of facts).
PROFILE_CACHE_SIZE = 50_000
#: Users whose size (over ``memory.hnsw_threshold`` facts or not) is known, and for how many seconds.
SIZE_CACHE_SIZE = 100_000
SIZE_TTL = 300.0
#: Seconds since it was read that a cached profile still stands in when recall cannot answer in time.
PROFILE_FALLBACK = 120.0


@dataclass(frozen=True, slots=True)
class Recalled:
    facts: list[Fact] | None
    """Relevant to the query; None when the user is unknown."""
    profile: list[Fact]
    """The user's essential facts, whatever the query."""
    degraded: list[str]
    embed_ms: float = 0.0
    """Time spent embedding the query (0 when cached or not needed)."""
    db_ms: float = 0.0
    """Time spent in the database (the user, the ranked facts, the profile)."""


class Memory:
    def __init__(self, config: Config, pool: asyncpg.Pool, embedder_factory: EmbedderFactory) -> None:
        self.config = config
        self.pool = pool
        self._factory = embedder_factory
        self._embedder: Embedder | None = None
        self._embedder_error: str | None = "loading"
        self._loading: asyncio.Task[None] | None = None
        self.stats = RecallStats(pool, config.memory.stats_interval)
        self.relevance = recall.Relevance(
            config.memory.relevance_z, config.memory.small_memory, config.memory.min_lexical
        )
        self.policy = writer.Policy(dedup_similarity=config.memory.dedup_similarity)
        # Users' profiles (essential facts), and until when they are trusted.
        self._profiles: LRUCache[tuple[uuid.UUID, uuid.UUID], tuple[float, list[Fact]]] = LRUCache(
            PROFILE_CACHE_SIZE
        )
        self._user_ids: LRUCache[tuple[uuid.UUID, str], uuid.UUID] = LRUCache(PROFILE_CACHE_SIZE)
        # Whether users have more facts than memory.hnsw_threshold.
        self._large: TTLCache[tuple[uuid.UUID, uuid.UUID], bool] = TTLCache(SIZE_CACHE_SIZE, SIZE_TTL)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, wait: float | None = 5.0) -> None:
        """Load the embedder in a thread (an ONNX export may run first) and start the stats flusher.

        Waits up to ``wait`` seconds (None: until done) for the embedder; past that it goes on loading in
        the background, and recall works by wording alone until it is ready.
        """
        self._loading = asyncio.create_task(self._load(), name="memoire-embedder-load")
        self.stats.start()
        await asyncio.wait({self._loading}, timeout=wait)

    async def _load(self) -> None:
        try:
            self._embedder = await asyncio.to_thread(self._factory)
            self._embedder_error = None
            log.info("embedder ready: %s (%d dimensions)", self._embedder.model, self._embedder.dim)
        except MemoireError as exc:
            self._embedder_error = exc.message
            log.warning("embedder unavailable: %s; recall falls back to wording only", exc.message)
        except Exception as exc:
            self._embedder_error = repr(exc)
            log.exception("embedder failed to load; recall falls back to wording only")

    async def loaded(self) -> None:
        """Returns once the embedder has loaded, or failed to (at once if :meth:`start` was not called)."""
        if self._loading is not None:
            await asyncio.wait({self._loading})

    async def close(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        await self.stats.close()
        if self._embedder is not None:
            await self._embedder.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise EmbedderUnavailable(f"the embedding model is not available: {self._embedder_error}")
        return self._embedder

    @property
    def embedder_ready(self) -> bool:
        return self._embedder is not None

    # -- writing ---------------------------------------------------------------------------------------

    async def remember(
        self,
        tenant_id: uuid.UUID,
        user: str,
        facts: Sequence[NewFact],
        *,
        sources: Sequence[uuid.UUID] = (),
        user_id: uuid.UUID | None = None,
        conn: db.Connection | None = None,
    ) -> list[writer.Result]:
        """Embed ``facts`` and apply them for ``user`` in one transaction: all of them or none.

        With ``conn``, the caller's connection and transaction are used (the extraction job, which also
        updates its chat log in the same transaction).
        """
        embedder = self.embedder
        vectors = await embedder.embed([fact.text for fact in facts])
        if conn is not None:
            return await self._apply(conn, tenant_id, user, facts, vectors, sources, user_id)
        async with db.transaction(self.pool) as fresh:
            return await self._apply(fresh, tenant_id, user, facts, vectors, sources, user_id)

    async def _apply(
        self,
        conn: db.Connection,
        tenant_id: uuid.UUID,
        user: str,
        facts: Sequence[NewFact],
        vectors: Sequence[Vector],
        sources: Sequence[uuid.UUID],
        user_id: uuid.UUID | None,
    ) -> list[writer.Result]:
        if user_id is None:
            user_id = await users.ensure(conn, tenant_id, user)
        return await writer.remember(
            conn,
            tenant_id=tenant_id,
            user_id=user_id,
            facts=facts,
            vectors=vectors,
            model=self.embedder.model,
            policy=self.policy,
            sources=sources,
            now=_now(),
        )

    # -- reading ---------------------------------------------------------------------------------------

    async def context(
        self, conn: db.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, limit: int
    ) -> list[Fact]:
        """What the extractor should know of the user before reading ``text``: the facts relevant to it,
        and every current fact in a single-valued slot (so it can tell what changed)."""
        query = recall.Query(text=text[:2000], limit=limit, temporal=("current", "future", "recurring"))
        planned = query_plan.plan(query.text)
        vectors = await self.embedder.embed_queries([p.text for p in planned], scope=str(tenant_id))
        relevant = await recall.recall(
            conn,
            tenant_id=tenant_id,
            user_id=user_id,
            query=query,
            parts=[(v, p.weight) for v, p in zip(vectors, planned, strict=True)],
            model=self.embedder.model,
            relevance=self.relevance,
            wording=query_plan.wording(query.text),
        )
        single = [slot.name for slot in slots.VOCABULARY if slot.cardinality == "single"]
        slotted, _ = await browse.list_facts(
            conn, tenant_id, user_id, browse.Filters(temporal=("current",), slots=single), limit=limit
        )
        seen = {fact.id for fact in relevant}
        return relevant + [f for f in slotted if f.id not in seen]

    async def recall_for_call(
        self, tenant_id: uuid.UUID, user: str, query: Query, *, profile: bool = True
    ) -> Recalled:
        """Facts relevant to ``query`` (None when the user is unknown), with the user's profile (essential
        facts; cached for :data:`PROFILE_TTL` seconds, so most calls cost no query for it) unless
        ``profile`` is false, what was degraded on the way (``embedder``: recall went on with wording
        alone, or, for an unknown user, the embedder has not loaded), and where the time went.

        The query is embedded (in the embedder's thread) while the user is looked up, so the two overlap;
        no connection is held while the embedding is awaited, so a slow embedder cannot drain the pool.
        """
        degraded: list[str] = []
        model = self._embedder.model if self._embedder else self.config.embeddings.model
        started = time.perf_counter()
        planned = query_plan.plan(query.text, query.context)
        embedding = asyncio.ensure_future(self._query_vectors(planned, tenant_id)) if planned else None
        try:
            async with db.connection(self.pool) as conn:
                user_id = await users.find(conn, tenant_id, user)
                if user_id is None:
                    if embedding is not None and self._embedder is None:
                        degraded.append("embedder")
                    return Recalled(None, [], degraded)
                large = await self._is_large(conn, tenant_id, user_id)
            if profile:
                self._user_ids[(tenant_id, user)] = user_id
            looked_up = time.perf_counter()
            vectors, embed_ms = await embedding if embedding is not None else (None, 0.0)
            if embedding is not None and vectors is None:
                degraded.append("embedder")
            parts = [(v, p.weight) for v, p in zip(vectors or [], planned, strict=True)]
            resumed = time.perf_counter()
            async with db.connection(self.pool) as conn:
                facts = await recall.recall(
                    conn,
                    tenant_id=tenant_id,
                    user_id=user_id,
                    query=query,
                    parts=parts,
                    model=model,
                    relevance=self.relevance,
                    wording=query_plan.wording(query.text) if planned else None,
                    approximate=large,
                )
                essential = await self._profile(conn, tenant_id, user_id) if profile else []
        finally:
            if embedding is not None:  # not awaited when the user is unknown or the database failed
                embedding.cancel()
                embedding.add_done_callback(discard_outcome)
        done = time.perf_counter()
        self.stats.add(tenant_id, [fact.id for fact in facts])
        return Recalled(facts, essential, degraded, embed_ms, (looked_up - started + done - resumed) * 1000)

    async def _query_vectors(
        self, planned: Sequence[query_plan.Part], tenant_id: uuid.UUID
    ) -> tuple[list[Vector] | None, float]:
        """The vectors of the query's parts, in one call (None without an embedder), and the milliseconds
        it took."""
        started = time.perf_counter()
        try:
            vectors: list[Vector] | None = await self.embedder.embed_queries(
                [part.text for part in planned], scope=str(tenant_id)
            )
        except EmbedderUnavailable:
            vectors = None
        return vectors, (time.perf_counter() - started) * 1000

    def known_profile(self, tenant_id: uuid.UUID, user: str) -> list[Fact]:
        """The user's profile as last read in this process (at most :data:`PROFILE_FALLBACK` seconds ago),
        without a query: what a proxied call gets when its recall times out or the database is down."""
        user_id = self._user_ids.get((tenant_id, user))
        cached = self._profiles.get((tenant_id, user_id)) if user_id is not None else None
        if cached is None or cached[0] - PROFILE_TTL + PROFILE_FALLBACK < time.monotonic():
            return []
        return cached[1]

    def forget_profile(self, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None) -> None:
        """Drop the cached profile of a user (all of the tenant's with no user): after a fact of theirs
        is edited or deleted here. Other processes see the change within :data:`PROFILE_TTL`."""
        for key in [k for k in self._profiles if k[0] == tenant_id and user_id in (None, k[1])]:
            del self._profiles[key]

    async def _profile(self, conn: db.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[Fact]:
        key = (tenant_id, user_id)
        now = time.monotonic()
        cached = self._profiles.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await browse.essential(conn, tenant_id, user_id, self.config.care.profile_facts)
        self._profiles[key] = (now + PROFILE_TTL, found)
        return found

    async def _is_large(self, conn: db.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Whether the user has more than ``memory.hnsw_threshold`` facts; counted at most every 5 minutes."""
        key = (tenant_id, user_id)
        cached = self._large.get(key)
        if cached is not None:
            return cached
        large = await recall.fact_count(conn, tenant_id, user_id) > self.config.memory.hnsw_threshold
        self._large[key] = large
        return large


def discard_outcome(task: asyncio.Future[Any]) -> None:
    """Take an abandoned task's outcome, so that it is not reported as never retrieved (a done callback)."""
    if not task.cancelled():
        task.exception()


def _now() -> datetime:
    return datetime.now(UTC)
