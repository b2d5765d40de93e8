"""Every other ``/v1/*`` route crosses untouched and is not recorded; health endpoints answer."""

from __future__ import annotations

import asyncpg
import httpx
import openai
import pytest

from tests.support.servers import ProxyFactory, ServerThread, proxy_flush
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.usefixtures("db")


async def test_models_and_embeddings_pass_through(
    proxy: ServerThread, fake: FakeUpstream, db: asyncpg.Pool
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-client", max_retries=0) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["fake-chat"]
        embedding = await client.embeddings.create(model="emb", input="hello", encoding_format="float")
        assert embedding.data[0].embedding == [0.1, 0.2]
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models"), ("POST", "/v1/embeddings")]
    assert fake.requests[1].headers["authorization"] == "Bearer sk-client"
    await proxy_flush(proxy)
    assert await db.fetchval("SELECT count(*) FROM chat_logs") == 0


async def test_path_query_and_upstream_404_are_kept(proxy: ServerThread, fake: FakeUpstream) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.delete(f"{proxy.url}/v1/files/file-abc%2F1?purpose=batch&x=1")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-request-id"] == "req_fake_123"
    assert (fake.requests[-1].method, fake.requests[-1].query) == ("DELETE", "purpose=batch&x=1")
    assert (
        fake.requests[-1].path == "/v1/files/file-abc/1"
    )  # the fake's server decoded %2F; it arrived encoded


async def test_stored_completions_listing_is_not_taken_for_a_chat_call(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{proxy.url}/v1/chat/completions?limit=2")
    assert response.status_code == 404  # the fake has no such listing; what matters is it was forwarded
    assert (fake.requests[-1].method, fake.requests[-1].query) == ("GET", "limit=2")


async def test_health_and_readiness(proxy: ServerThread, start_proxy: ProxyFactory) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{proxy.url}/healthz")).json() == {"status": "ok"}
        ready = await http.get(f"{proxy.url}/readyz")
        assert ready.status_code == 200
        # No worker runs here: shown, and the API is ready without one.
        assert ready.json() == {"database": "ok", "redis": "ok", "worker": "not running", "status": "ready"}
        broken = start_proxy(redis={"url": "redis://127.0.0.1:9/0"})
        assert (await http.get(f"{broken.url}/healthz")).status_code == 200
        not_ready = await http.get(f"{broken.url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["redis"] == "unavailable"
        assert not_ready.json()["worker"] == "unknown"


async def test_unknown_route_outside_v1_gets_openai_shaped_404(proxy: ServerThread) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{proxy.url}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "path",
    ["/v1/../admin", "/v1/%2e%2e/admin", "/v1/models%2F..%2F..%2Fx", "/v1/a%5C..%5Cx", "/v1@evil.example/x"],
)
async def test_paths_that_would_leave_the_upstream_base_are_refused(
    start_proxy: ProxyFactory, fake: FakeUpstream, path: str
) -> None:
    proxy = start_proxy(upstream={"api_key": "sk-operator"})
    async with httpx.AsyncClient() as http:
        request = http.build_request("GET", f"{proxy.url}/")
        request.url = request.url.copy_with(raw_path=path.encode())
        response = await http.send(request)
    assert response.status_code in (400, 404)
    assert fake.requests == []  # nothing went out with the operator's key
