"""Auth: Mémoire keys in both modes, the admin API, key caching and revocation, and per-key rate limits."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from memory import keys
from memory.config import load
from memory.errors import ConfigError
from tests.support.db import fetch_sync
from tests.support.keys import ADMIN, SERVER_PROVIDER_KEY, new_key
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("db")

ASK = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def server(start_proxy: ProxyFactory) -> ServerThread:
    return start_proxy(auth={"enabled": True, "admin_key": ADMIN}, upstream={"api_key": SERVER_PROVIDER_KEY})


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["code"] == code
    return error


def test_bearer_mk_key_sends_the_servers_provider_key_upstream(
    http: httpx.Client, fake: FakeUpstream
) -> None:
    key = new_key(http, "app")
    assert key.startswith("mk_")
    assert len(key) == 3 + 43
    response = http.post("/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].headers
    assert sent["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"
    assert key not in json.dumps(sent)
    # Sent the way Anthropic's clients send a key, it is taken, and never forwarded either.
    response = http.post("/v1/chat/completions", json=ASK, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    assert key not in json.dumps(fake.requests[-1].headers)


def test_x_memoire_key_passes_the_clients_provider_key_untouched(
    http: httpx.Client, fake: FakeUpstream
) -> None:
    key = new_key(http, "app")
    response = http.post(
        "/v1/chat/completions",
        json=ASK,
        headers={"authorization": "Bearer sk-client-own", "x-memoire-key": key},
    )
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].headers
    assert sent["authorization"] == "Bearer sk-client-own"
    assert key not in json.dumps(sent)
    assert "x-memoire-key" not in sent


def test_every_v1_route_needs_a_key_and_errors_are_in_openais_shape(
    http: httpx.Client, fake: FakeUpstream
) -> None:
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("POST", "/v1/recall"),
        ("GET", "/v1/users/ana/facts"),
        ("DELETE", "/v1/users/ana"),
    ):
        missing = http.request(method, path, json=ASK)
        assert "X-Memoire-Key" in assert_openai_error(missing, 401, "invalid_api_key")["message"]
        # A provider key alone is not a Mémoire key, and is not sent on with the server's.
        provider_only = http.request(method, path, json=ASK, headers={"authorization": "Bearer sk-x"})
        assert_openai_error(provider_only, 401, "invalid_api_key")
        wrong = http.request(method, path, json=ASK, headers={"x-memoire-key": "mk_" + "A" * 43})
        assert_openai_error(wrong, 401, "invalid_api_key")
    assert fake.requests == []
    assert http.get("/healthz").status_code == 200


def test_keys_are_stored_hashed_and_revocation_takes_effect(http: httpx.Client, pg_dsn: str) -> None:
    key = new_key(http, "app")
    rows = fetch_sync(pg_dsn, "SELECT * FROM api_keys")
    assert len(rows) == 1
    assert rows[0]["hash"] == keys.digest(key)
    assert key not in repr([dict(r) for r in rows])
    auth = {"x-memoire-key": key, "authorization": "Bearer sk-x"}
    assert http.post("/v1/chat/completions", json=ASK, headers=auth).status_code == 200

    admin = {"authorization": f"Bearer {ADMIN}"}
    listed = http.get("/v1/admin/keys", headers=admin).json()["keys"]
    assert [k["prefix"] for k in listed] == [key[: keys.SHOWN]]
    assert key not in json.dumps(listed)
    revoked = http.delete(f"/v1/admin/keys/{listed[0]['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert_openai_error(http.post("/v1/chat/completions", json=ASK, headers=auth), 401, "invalid_api_key")
    assert http.get("/v1/admin/keys", headers=admin).json()["keys"] == []


def test_key_lookups_are_cached_for_the_configured_time(start_proxy: ProxyFactory, pg_dsn: str) -> None:
    created = create_key(pg_dsn, "cached")
    server = start_proxy(auth={"enabled": True, "cache_ttl": 0.5})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        auth = {"x-memoire-key": created, "authorization": "Bearer sk-x"}
        assert client.post("/v1/chat/completions", json=ASK, headers=auth).status_code == 200
        # Revoked behind the server's back: the cached lookup still answers, with no database round trip …
        fetch_sync(pg_dsn, "UPDATE api_keys SET revoked_at = now()")
        assert client.post("/v1/chat/completions", json=ASK, headers=auth).status_code == 200
        # … until the cache time is over.
        wait_until(
            lambda: client.post("/v1/chat/completions", json=ASK, headers=auth).status_code == 401, timeout=5
        )


def test_a_new_key_never_joins_an_existing_tenant_by_name(http: httpx.Client) -> None:
    new_key(http, "acme")
    admin = {"authorization": f"Bearer {ADMIN}"}
    clash = http.post("/v1/admin/keys", json={"name": "acme"}, headers=admin)
    assert assert_openai_error(clash, 409, "conflict")["param"] == "tenant"
    joined = http.post("/v1/admin/keys", json={"name": "acme-ci", "tenant": "acme"}, headers=admin)
    assert joined.status_code == 201
    assert joined.json()["info"]["tenant"] == "acme"


def test_the_admin_api_needs_the_admin_key(http: httpx.Client, start_proxy: ProxyFactory) -> None:
    key = new_key(http, "app")
    for headers in ({}, {"authorization": f"Bearer {key}"}, {"authorization": "Bearer nope"}):
        assert_openai_error(http.get("/v1/admin/keys", headers=headers), 401, "invalid_api_key")
    without = start_proxy(auth={"enabled": True})
    response = httpx.get(f"{without.url}/v1/admin/keys", headers={"authorization": f"Bearer {ADMIN}"})
    assert_openai_error(response, 403, "permission_denied")


def test_going_over_the_rate_limit_gets_429_with_retry_after(http: httpx.Client, fake: FakeUpstream) -> None:
    slow = new_key(http, "slow", rate_limit=30)  # 30 a minute: a burst of 30 (under auth.rate_burst)
    fast = new_key(http, "fast")
    slow_auth = {"x-memoire-key": slow, "authorization": "Bearer sk-x"}
    codes = [http.get("/v1/models", headers=slow_auth).status_code for _ in range(32)]
    assert codes[:30] == [200] * 30
    limited = http.get("/v1/models", headers=slow_auth)
    error = assert_openai_error(limited, 429, "rate_limit_exceeded")
    assert error["type"] == "requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    # Other keys are not held back.
    assert (
        http.get("/v1/models", headers={"x-memoire-key": fast, "authorization": "Bearer sk-x"}).status_code
        == 200
    )
    assert len(fake.requests) == 31


def test_the_servers_provider_key_serves_only_stateless_operations(
    http: httpx.Client, fake: FakeUpstream
) -> None:
    key = new_key(http, "app")
    bearer = {"authorization": f"Bearer {key}"}
    # Files, stored completions, batches … live in the provider account every tenant shares.
    for method, path in (("GET", "/v1/files"), ("GET", "/v1/chat/completions"), ("POST", "/v1/batches"),
                         ("POST", "/v1/responses/input_tokens"), ("GET", "/v1/conversations/conv_1"),
                         ("DELETE", "/v1/files/file-1"),
                         ("GET", "/v1/models/a/b")):  # fmt: skip
        response = http.request(method, path, headers=bearer, json={})
        assert "X-Memoire-Key" in assert_openai_error(response, 403, "permission_denied")["message"]
    assert fake.requests == []
    assert http.get("/v1/models", headers=bearer).status_code == 200
    assert http.get("/v1/models/fake-chat", headers=bearer).status_code in (200, 404)
    assert http.post("/v1/embeddings", headers=bearer, json={"model": "e", "input": "x"}).status_code == 200
    # With the client's own provider key they pass through.
    own = {"x-memoire-key": key, "authorization": "Bearer sk-client-own"}
    assert http.get("/v1/files", headers=own).status_code == 404  # the fake knows no such route
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-client-own"
    # Mémoire's own namespace never goes upstream, whatever the key.
    before = len(fake.requests)
    assert http.get("/v1/admin/other", headers=own).status_code == 404
    assert (
        http.get("/v1/ADMIN", headers={"authorization": f"Bearer {ADMIN}", "x-memoire-key": key}).status_code
        == 404
    )
    assert len(fake.requests) == before


def test_auth_can_be_off_only_on_loopback() -> None:
    assert not load({"MEMOIRE_AUTH_ENABLED": "false"})[0].auth.enabled
    for host in ("::1", "localhost", "127.0.0.2"):
        load({"MEMOIRE_AUTH_ENABLED": "false", "MEMOIRE_SERVER_HOST": host})
    for host in ("0.0.0.0", "10.1.2.3", "example.com"):
        with pytest.raises(ConfigError, match=r"auth\.enabled"):
            load({"MEMOIRE_AUTH_ENABLED": "false", "MEMOIRE_SERVER_HOST": host})


def create_key(dsn: str, name: str, **options: Any) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return (await keys.create(conn, name, **options)).key
        finally:
            await conn.close()

    return asyncio.run(run())


def memoire(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMOIRE_DATABASE_URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "stack", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_keys_cli_creates_lists_and_revokes(pg_dsn: str, db: asyncpg.Pool) -> None:
    created = memoire("keys", "create", "--name", "ci", "--default-user", "bot", dsn=pg_dsn)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("mk_")
    assert len(key) == 46
    row = await db.fetchrow(
        "SELECT k.*, t.name AS tenant FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE hash = $1",
        keys.digest(key),
    )
    assert row["tenant"] == "ci"
    assert row["default_user"] == "bot"

    listed = memoire("keys", "list", dsn=pg_dsn)
    assert str(row["id"]) in listed.stdout
    assert key not in listed.stdout
    revoked = memoire("keys", "revoke", str(row["id"]), dsn=pg_dsn)
    assert revoked.returncode == 0, revoked.stderr
    assert await db.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", row["id"])
    assert memoire("keys", "list", dsn=pg_dsn).stdout.strip() == "no keys"
    assert memoire("keys", "revoke", "not-a-uuid", dsn=pg_dsn).returncode == 2
    # A key never joins a tenant by accident: a taken name needs --tenant, on purpose.
    clash = memoire("keys", "create", "--name", "ci", dsn=pg_dsn)
    assert clash.returncode == 1
    assert "--tenant ci" in clash.stderr
    joined = memoire("keys", "create", "--name", "ci-2", "--tenant", "ci", dsn=pg_dsn)
    assert joined.returncode == 0, joined.stderr
    tenants = await db.fetchval("SELECT count(DISTINCT tenant_id) FROM api_keys")
    assert tenants == 1
