"""Recall: a user's facts ranked for a query's parts, cut relative to the user's own scores, fused by rank.

A query arrives as parts (:mod:`memory.query_plan`: the message's focus, its clauses, earlier turns), each
embedded, each with a weight. One pass over the user's facts scores every fact against every part (cosine,
pgvector; an exact sort over the user's rows: at ~1,000 facts per user a btree on the user and an exact sort
beat HNSW and lose no recall), and ranks each part's candidates.

**Relevance is relative.** All-MiniLM-L6-v2 scores a true paraphrase ("What do I do for a living?" against
"Is a nurse at St. Mary's") between 0.1 and 0.25, where unrelated facts of another user score as much; no
constant cosine separates them. So a fact counts for a part when it stands out of *this user's* facts for
*this part*: its similarity at least ``relevance_z`` standard deviations above the mean of all the user's
facts, or it is the part's best. A small memory (at most ``small_memory`` facts) is offered whole: its
other facts still count, at :data:`SMALL_MEMORY_SHARE`, below those that stand out; with so few facts the
caller's token budget is the cut.

**Wording** is a second source: the facts sharing an English stem with the focus (GIN index), the best by
``ts_rank_cd``, kept when their trigram word similarity with the focus reaches ``min_lexical``, ranked by
it. It is also the only source when there is no query vector (embedder down).

**Fusion.** A fact's score is the weighted reciprocal-rank sum (k = :data:`RRF_K`) over the parts it
counts for and the lexical list, normalised so that the best of every list scores 1, then boosted by
confidence, importance, recency and a date the query names. ``min_score`` is a strict cut on that score.
The constants are the ones that measured best on LoCoMo and the paraphrase set together (bench/README.md).
Only facts whose *effective* temporal status (judged now) is asked for are considered.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgvector import Vector as PgVector

from memory import query_dates
from memory.db import Connection
from memory.embeddings import Vector
from memory.facts import COLUMNS, EFFECTIVE_TEMPORAL, Fact, TemporalStatus, from_row

#: Reciprocal-rank fusion's k: how fast the weight of lower ranks falls.
RRF_K = 60
#: Facts of a very large memory (the approximate path) over which a part's similarity spread is taken.
SPREAD_SAMPLE = 256
#: Candidates each part offers, per fact asked for; the lexical source offers half as many (each costs a
#: trigram comparison).
CANDIDATES_PER_RESULT = 4
#: What the lexical list counts in the fusion, beside a part's weight.
WEIGHT_LEXICAL = 1.0
#: What a part's rank counts, in a small memory, for a fact that does not stand out for that part: the
#: fact is still offered, below those that do.
SMALL_MEMORY_SHARE = 0.1
#: Recency's half-life, in days.
RECENCY_HALF_LIFE_DAYS = 180.0
#: Score factor for a fact dated inside a window the query names ("in January 2023"). Measured on LoCoMo:
#: R@10 of the dated questions 54.6 -> 69.7, and no category worse.
DATE_MATCH_BOOST = 1.5


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    limit: int = 10
    categories: Sequence[str] | None = None
    temporal: Sequence[TemporalStatus] = ("current",)
    min_score: float = 0.0
    context: Sequence[str] = field(default_factory=tuple)
    """Earlier user turns, oldest first: a referring message ("and hers?") is searched with them."""


@dataclass(frozen=True, slots=True)
class Relevance:
    """How recall decides what is relevant (``memory.relevance_z``, ``memory.small_memory``,
    ``memory.min_lexical``)."""

    z: float = 0.75
    small_memory: int = 30
    min_lexical: float = 0.5


# The facts a query may recall: the user's, in the categories and effective temporal statuses asked for.
_USER_FACTS = f"""f.tenant_id = $1 AND f.user_id = $2 AND f.status IN ('active', 'superseded')
      AND ($3::text[] IS NULL OR f.category = ANY($3)) AND {EFFECTIVE_TEMPORAL} = ANY($4::text[])"""

#: The query's English stems, any of which may match ("caroline | support | group"), as a tsquery.
_ANY_TERM = "replace(plainto_tsquery('english', {focus})::text, ' & ', ' | ')::tsquery"


def _lexical(focus: str, limit: str, floor: str) -> str:
    """CTEs ``wanted`` and ``wording``: the user's facts sharing a search term (English stem) with
    the focus, the ``limit`` best by ``ts_rank_cd``, and of them those whose trigram word similarity (both
    ways round) with the focus reaches ``floor``, with that similarity as ``lex``."""
    return f"""wanted AS (
    SELECT {_ANY_TERM.format(focus=focus)} AS terms
), matching AS MATERIALIZED (
    SELECT f.id, f.text FROM memory_facts f, wanted WHERE {_USER_FACTS} AND f.search_terms @@ wanted.terms
    ORDER BY ts_rank_cd(f.search_terms, wanted.terms) DESC, f.id LIMIT {limit}
), wording AS (
    SELECT id, lex FROM (
        SELECT id, greatest(word_similarity({focus}, text), word_similarity(text, {focus}))::float8 AS lex
        FROM matching
    ) AS m WHERE lex >= {floor}
)"""


# One pass over the user's facts scores each against every part and against the query's wording, so that
# the heap is read once and the pool holds no embeddings; then each part's ranking and distribution, the
# facts some part ranks high, and the lexical candidates beside them.
_EXACT = f"""
WITH parts AS (
    SELECT p.v, p.n::int AS n FROM unnest($5::vector[]) WITH ORDINALITY AS p(v, n)
), wanted AS (
    SELECT {_ANY_TERM.format(focus="$8")} AS terms
), pool AS MATERIALIZED (
    SELECT f.id, f.text,
           CASE WHEN f.embedding_model = $6 AND f.embedding_dim = $10 THEN
                ARRAY(SELECT (1 - (f.embedding <=> p.v))::float8 FROM parts p ORDER BY p.n) END AS sims,
           CASE WHEN f.search_terms @@ wanted.terms THEN ts_rank_cd(f.search_terms, wanted.terms) END AS rank
    FROM memory_facts f, wanted
    WHERE {_USER_FACTS}
), ranked AS (
    SELECT id, n::int AS n, sim,
           row_number() OVER (PARTITION BY n ORDER BY sim DESC, id) AS place,
           avg(sim) OVER (PARTITION BY n) AS mean,
           coalesce(stddev_pop(sim) OVER (PARTITION BY n), 0) AS sd,
           count(*) OVER (PARTITION BY n) AS total
    FROM pool, unnest(pool.sims) WITH ORDINALITY AS s(sim, n)
), top AS (
    SELECT id, array_agg(n ORDER BY n) AS parts, array_agg(sim ORDER BY n) AS sims,
           array_agg(place ORDER BY n) AS places, array_agg(mean ORDER BY n) AS means,
           array_agg(sd ORDER BY n) AS sds, max(total) AS total
    FROM ranked WHERE place <= $7 GROUP BY id
), matching AS (
    SELECT id, text FROM pool WHERE rank IS NOT NULL ORDER BY rank DESC, id LIMIT $7 / 2
), wording AS (
    SELECT id, lex FROM (
        SELECT id, greatest(word_similarity($8, text), word_similarity(text, $8))::float8 AS lex
        FROM matching
    ) AS m WHERE lex >= $9
)
SELECT {COLUMNS}, t.parts, t.sims, t.places, t.means, t.sds, t.total, w.lex
FROM top t FULL JOIN wording w ON w.id = t.id
JOIN memory_facts f ON f.tenant_id = $1 AND f.id = coalesce(t.id, w.id)
JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
"""

#: Models with an HNSW index (migration 0003), and their dimension.
HNSW_INDEXED = {"all-MiniLM-L6-v2": 384}

# The approximate path, for users with very many facts: each part's nearest neighbours from the HNSW index
# (with an iterative scan, so that the user, category and temporal filters still fill the list), and each
# part's similarity distribution over a sample of the user's facts, for the same relative cut as the exact
# path. The model is a literal: the partial index must be provable.
_APPROXIMATE = f"""
WITH parts AS (
    SELECT p.v::vector(384) AS v, p.n::int AS n FROM unnest($5::vector[]) WITH ORDINALITY AS p(v, n)
), near AS MATERIALIZED (
    SELECT c.id, p.n, c.sim FROM parts p CROSS JOIN LATERAL (
        SELECT f.id, (1 - (f.embedding::vector(384) <=> p.v))::float8 AS sim
        FROM memory_facts f
        WHERE {_USER_FACTS} AND f.embedding_model = 'all-MiniLM-L6-v2'
        ORDER BY f.embedding::vector(384) <=> p.v LIMIT $6
    ) AS c
), sample AS MATERIALIZED (
    SELECT f.embedding::vector(384) AS e FROM memory_facts f
    WHERE {_USER_FACTS} AND f.embedding_model = 'all-MiniLM-L6-v2' LIMIT {SPREAD_SAMPLE}
), spread AS (
    SELECT p.n, avg(1 - (s.e <=> p.v))::float8 AS mean,
           coalesce(stddev_pop(1 - (s.e <=> p.v)), 0)::float8 AS sd, count(*) AS total
    FROM parts p CROSS JOIN sample s GROUP BY p.n
), top AS (
    SELECT id, array_agg(near.n ORDER BY near.n) AS parts, array_agg(sim ORDER BY near.n) AS sims,
           array_agg(mean ORDER BY near.n) AS means, array_agg(sd ORDER BY near.n) AS sds,
           max(total) AS total
    FROM near JOIN spread USING (n) GROUP BY id
), {_lexical("$7", "$6 / 2", "$8")}
SELECT {COLUMNS}, t.parts, t.sims, t.means, t.sds, t.total, w.lex
FROM top t FULL JOIN wording w ON w.id = t.id
JOIN memory_facts f ON f.tenant_id = $1 AND f.id = coalesce(t.id, w.id)
JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
"""

# Without a query vector (the embedder is down): facts sharing a search term with the query's focus.
_WORDING = f"""
WITH wanted AS (SELECT {_ANY_TERM.format(focus="$5")} AS terms)
SELECT {COLUMNS}, ts_rank_cd(f.search_terms, wanted.terms)::float8 AS rank
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id, wanted
WHERE {_USER_FACTS} AND f.search_terms @@ wanted.terms
ORDER BY rank DESC, f.id LIMIT $6
"""

_COUNT = "SELECT count(*) FROM memory_facts WHERE tenant_id = $1 AND user_id = $2 AND status = 'active'"

_BROWSE = f"""
SELECT {COLUMNS}
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.status IN ('active', 'superseded')
  AND ($3::text[] IS NULL OR f.category = ANY($3))
  AND {EFFECTIVE_TEMPORAL} = ANY($4::text[])
ORDER BY f.importance DESC, coalesce(f.valid_from, f.observed_at) DESC
LIMIT $5
"""


async def recall(
    conn: Connection,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    query: Query,
    parts: Sequence[tuple[Vector, float]],
    model: str,
    relevance: Relevance,
    wording: str | None = None,
    approximate: bool = False,
) -> list[Fact]:
    """The user's facts relevant to ``query``, best first. With an empty query: the most important ones.

    ``parts`` are the query's embedded parts and their weights (:mod:`memory.query_plan`); without any,
    recall goes by ``wording`` (the query's focus) alone. ``approximate`` takes the HNSW path (a user with
    more than ``memory.hnsw_threshold`` facts: :meth:`memory.service.Memory._is_large`).
    """
    categories = list(query.categories) if query.categories else None
    temporal = list(query.temporal)
    text = query.text.replace("\x00", " ").strip()
    if not text:
        rows = await conn.fetch(_BROWSE, tenant_id, user_id, categories, temporal, query.limit)
        return [from_row(row) for row in rows]
    vectors = [PgVector(vector) for vector, _ in parts]  # an ndarray in a list would read as rows
    weights = [weight for _, weight in parts]
    focus = (wording or text).replace("\x00", " ")
    if not parts:
        rows = await conn.fetch(_WORDING, tenant_id, user_id, categories, temporal, focus, query.limit)
        top = max((float(row["rank"]) for row in rows), default=0.0) or 1.0
        return _ranked(query, [(row, float(row["rank"]) / top) for row in rows])
    candidates = query.limit * CANDIDATES_PER_RESULT
    dims = {int(vector.shape[0]) for vector, _ in parts}
    dim = dims.pop() if len(dims) == 1 else -1  # the parts come from one model: one dimension
    if approximate and HNSW_INDEXED.get(model) == dim:
        async with conn.transaction():
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await conn.execute("SET LOCAL hnsw.ef_search = 100")
            rows = await conn.fetch(
                _APPROXIMATE,
                tenant_id,
                user_id,
                categories,
                temporal,
                vectors,
                candidates,
                focus,
                relevance.min_lexical,
            )
        return _ranked(query, _fuse_approximate(rows, weights, relevance))
    rows = await conn.fetch(
        _EXACT,
        tenant_id,
        user_id,
        categories,
        temporal,
        vectors,
        model,
        candidates,
        focus,
        relevance.min_lexical,
        dim,
    )
    return _ranked(query, _fuse(rows, weights, relevance))


async def fact_count(conn: Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(_COUNT, tenant_id, user_id)
    return count


def _lexical_places(rows: Sequence[Any]) -> dict[uuid.UUID, int]:
    """The rank of each lexical candidate by its trigram similarity."""
    ranked = sorted((r for r in rows if r["lex"] is not None), key=lambda r: (-r["lex"], r["id"]))
    return {row["id"]: place for place, row in enumerate(ranked, start=1)}


def _fuse(
    rows: Sequence[Any],
    weights: Sequence[float],
    relevance: Relevance,
    places: dict[tuple[uuid.UUID, int], int] | None = None,
) -> list[tuple[Any, float]]:
    """Each row with its fused score: the weighted reciprocal ranks of the parts it is relevant to, and of
    its lexical rank. ``places``: each (fact, part)'s rank, where the rows do not carry it."""
    lexical = _lexical_places(rows)
    best = (sum(weights) + WEIGHT_LEXICAL) / (RRF_K + 1)
    fused: list[tuple[Any, float]] = []
    for row in rows:
        total = WEIGHT_LEXICAL / (RRF_K + lexical[row["id"]]) if row["id"] in lexical else 0.0
        if row["parts"] is not None:
            small = row["total"] <= relevance.small_memory
            ranks = row["places"] if places is None else [places[(row["id"], n)] for n in row["parts"]]
            for n, sim, place, mean, sd in zip(
                row["parts"], row["sims"], ranks, row["means"], row["sds"], strict=True
            ):
                if place == 1 or (sd > 0 and (sim - mean) / sd >= relevance.z):
                    total += weights[n - 1] / (RRF_K + place)
                elif small:
                    total += SMALL_MEMORY_SHARE * weights[n - 1] / (RRF_K + place)
        if total > 0:
            fused.append((row, total / best))
    return fused


def _fuse_approximate(
    rows: Sequence[Any], weights: Sequence[float], relevance: Relevance
) -> list[tuple[Any, float]]:
    """As :func:`_fuse`, ranking each part's neighbours here (the index returned them nearest first); the
    spread is taken over a sample of the user's facts."""
    places: dict[tuple[uuid.UUID, int], int] = {}
    for n in range(1, len(weights) + 1):
        ranked = sorted(
            (r for r in rows if r["parts"] is not None and n in r["parts"]),
            key=lambda r: (-r["sims"][r["parts"].index(n)], r["id"]),
        )
        for place, row in enumerate(ranked, start=1):
            places[(row["id"], n)] = place
    return _fuse(rows, weights, relevance, places)


def _ranked(query: Query, scored: Sequence[tuple[Any, float]]) -> list[Fact]:
    """Boost each fused score, cut at ``min_score`` and ``limit``."""
    now = datetime.now(UTC)
    named = query_dates.windows(query.text)
    out: list[tuple[float, Any]] = []
    for row, fused in scored:
        age_days = max(0.0, (now - (row["valid_from"] or row["observed_at"])).total_seconds() / 86400)
        recency = math.pow(0.5, age_days / RECENCY_HALF_LIFE_DAYS)
        boost = 0.7 + 0.1 * float(row["confidence"]) + 0.1 * float(row["importance"]) + 0.1 * recency
        if named:
            moment = row["valid_from"] or row["observed_at"]
            if any(start <= moment < end for start, end in named):
                boost *= DATE_MATCH_BOOST
        score = round(fused * boost, 6)
        if score >= query.min_score:
            out.append((score, row))
    out.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
    return [from_row(row, score) for score, row in out[: query.limit]]
