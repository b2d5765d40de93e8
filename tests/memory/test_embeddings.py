"""Embeddings: the local model's vectors, the query cache, the remote backend, and models never mixed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from memory import embeddings
from memory.embeddings import LocalEmbedder, RemoteEmbedder
from memory.errors import EmbedderUnavailable
from tests.support.servers import ProxyFactory, ServerThread


async def test_local_vectors_are_unit_length_and_closer_for_closer_meanings(embedder: LocalEmbedder) -> None:
    moved, lives, works = await embedder.embed(["I moved to Denver", "Lives in Denver", "Works at Google"])
    assert embedder.dim == 384
    assert moved.shape == (384,)
    for vector in (moved, lives, works):
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-4)
    assert float(moved @ lives) > float(moved @ works) + 0.2


async def test_queries_are_embedded_by_the_int8_copy_close_to_full_precision(embedder: LocalEmbedder) -> None:
    texts = ["Where did I move last spring?", "Is peanut butter safe for me?", "Remind me of my sister's job"]
    full = await embedder.embed(texts)
    for text, stored in zip(texts, full, strict=True):
        query = await embedder.embed_query(text)
        assert float(np.linalg.norm(query)) == pytest.approx(1.0, abs=1e-3)
        # Another model (the int8 copy), yet the same meaning: what recall compares queries with.
        assert 0.9 < float(stored @ query) < 0.99999


async def test_without_quantized_queries_no_int8_copy_is_made_and_queries_match_facts(tmp_path: Path) -> None:
    from tests.support.config import MODEL_DIR, make_config

    [exported] = [d for d in MODEL_DIR.iterdir() if d.is_dir()]
    copy = tmp_path / "models" / exported.name
    copy.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copyfile(exported / name, copy / name)
    local = embeddings.create(
        make_config(embeddings={"model_dir": str(tmp_path / "models"), "quantized_queries": False})
    )
    try:
        assert not (copy / "model-int8.onnx").exists()
        [stored] = await local.embed(["Where did I move last spring?"])
        query = await local.embed_query("Where did I move last spring?")
        assert float(stored @ query) == pytest.approx(1.0, abs=1e-5)
    finally:
        await local.close()


async def test_query_embeddings_come_from_the_cache_the_second_time(embedder: LocalEmbedder) -> None:
    first = await embedder.embed_query("what does the user like to eat? cache test")
    again = await embedder.embed_query("what does the user like to eat? cache test")
    assert again is first
    # The cache is per tenant: another tenant asking the same is computed again (no timing oracle).
    other = await embedder.embed_query("what does the user like to eat? cache test", scope="tenant-b")
    assert other is not first
    assert np.allclose(other, first)
    # Embedding runs in its own thread: the event loop keeps running meanwhile.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await embedder.embed([f"sentence number {i} about nothing in particular" for i in range(64)])
    ticker.cancel()
    assert ticks > 1


async def test_a_querys_parts_are_embedded_in_one_call_and_cached_each(embedder: LocalEmbedder) -> None:
    known = await embedder.embed_query("where do I live now? parts test")
    both = await embedder.embed_queries(["where do I live now? parts test", "which languages? parts test"])
    assert both[0] is known  # from the cache; only the other text was computed
    assert await embedder.embed_query("which languages? parts test") is both[1]
    assert np.allclose(both[1], (await embedder.embed(["which languages? parts test"]))[0], atol=0.05)
    assert await embedder.embed_queries([]) == []


async def test_the_remote_backend_sorts_normalises_and_fails_clearly(llm_url: str) -> None:
    remote = RemoteEmbedder(llm_url, "fake-embed", api_key="sk-e", dimensions=None, timeout=5, cache=10)
    try:
        a, b = await remote.embed(["red red apple", "blue sky"])
        assert remote.dim == 8
        assert float(np.linalg.norm(a)) == pytest.approx(1.0)
        assert not np.allclose(a, b)  # index order kept though the server answered out of order
        assert np.allclose(a, (await remote.embed(["red red apple"]))[0])
    finally:
        await remote.close()
    down = RemoteEmbedder("http://127.0.0.1:9/v1", "x", api_key=None, dimensions=None, timeout=1, cache=0)
    try:
        with pytest.raises(EmbedderUnavailable):
            await down.embed(["anything"])
    finally:
        await down.close()


@pytest.fixture
def two_models(start_proxy: ProxyFactory, llm_url: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    local: ServerThread = start_proxy()
    remote: ServerThread = start_proxy(
        embeddings={"provider": "openai", "base_url": llm_url, "model": "fake-embed"},
        embedder_factory=None,
    )
    with (
        httpx.Client(base_url=local.url, timeout=30) as a,
        httpx.Client(base_url=remote.url, timeout=30) as b,
    ):
        yield a, b


@pytest.mark.usefixtures("db")
def test_vectors_of_two_models_never_meet_in_one_search(
    two_models: tuple[httpx.Client, httpx.Client],
) -> None:
    local, remote = two_models

    def add(client: httpx.Client, text: str) -> None:
        response = client.post("/v1/facts", json={"user_id": "mia", "facts": [{"text": text}]})
        assert response.status_code == 200, response.text

    def recall(client: httpx.Client, query: str) -> list[dict[str, Any]]:
        response = client.post("/v1/recall", json={"user_id": "mia", "query": query, "temporal": ["all"]})
        assert response.status_code == 200, response.text
        facts: list[dict[str, Any]] = response.json()["facts"]
        return facts

    add(local, "Plays the cello in an orchestra")
    add(remote, "Grows tomatoes on the balcony")
    facts = {f["text"]: f for f in recall(local, "cello orchestra tomatoes balcony")}
    assert facts["Plays the cello in an orchestra"]["embedding_model"] == "all-MiniLM-L6-v2"
    assert facts["Grows tomatoes on the balcony"]["embedding_model"] == "fake-embed"
    # Each side compares vectors of its own model only; the other's facts come by wording, or not at all.
    assert next(f["text"] for f in recall(remote, "tomatoes balcony")) == "Grows tomatoes on the balcony"
    assert [f["text"] for f in recall(local, "string instrument music")] == [
        "Plays the cello in an orchestra"
    ]
