"""Tenants: key A can never read, recall, list, change or delete B's facts, users or logs, and one user_id
under two tenants names two different people."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.db import fetch_sync
from tests.support.keys import ADMIN, new_key
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
def server(start_proxy: ProxyFactory) -> ServerThread:
    return start_proxy(auth={"enabled": True, "admin_key": ADMIN})


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


class Tenant:
    def __init__(self, http: httpx.Client, name: str) -> None:
        self.http = http
        self.headers = {"x-memoire-key": new_key(http, name), "authorization": "Bearer sk-client"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers, **kwargs)

    def remember(self, user: str, text: str, **fields: Any) -> str:
        response = self.call("POST", "/v1/facts", json={"user_id": user, "facts": [{"text": text, **fields}]})
        assert response.status_code == 200, response.text
        fact_id: str = response.json()["results"][0]["id"]
        return fact_id

    def recall(self, user: str, query: str) -> list[str]:
        response = self.call(
            "POST", "/v1/recall", json={"user_id": user, "query": query, "temporal": ["current"]}
        )
        assert response.status_code == 200, response.text
        return [f["text"] for f in response.json()["facts"]]


def test_one_tenant_never_sees_or_touches_anothers_data(http: httpx.Client, pg_dsn: str) -> None:
    a, b = Tenant(http, "acme"), Tenant(http, "globex")
    secret = a.remember("ana", "Lives in Denver", slot="home_city", value="Denver")

    # The same user_id under B is another person: B has no "ana" yet, and B's write does not touch A's.
    unknown = b.call("POST", "/v1/recall", json={"user_id": "ana", "query": "where does ana live"})
    assert unknown.status_code == 404
    b.remember("ana", "Lives in Lisbon", slot="home_city", value="Lisbon")
    assert a.recall("ana", "where does ana live") == ["Lives in Denver"]
    assert b.recall("ana", "where does ana live") == ["Lives in Lisbon"]
    rows = fetch_sync(pg_dsn, "SELECT count(DISTINCT tenant_id) AS t, count(*) AS n FROM users")
    assert (rows[0]["t"], rows[0]["n"]) == (2, 2)

    # By fact id: B can neither read, change, nor delete A's fact, nor see its history.
    for method, path, body in (
        ("GET", f"/v1/facts/{secret}", None),
        ("PATCH", f"/v1/facts/{secret}", {"text": "Lives in Paris"}),
        ("DELETE", f"/v1/facts/{secret}", None),
        ("GET", f"/v1/facts/{secret}/history", None),
    ):
        response = b.call(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert a.call("GET", f"/v1/facts/{secret}").json()["text"] == "Lives in Denver"

    # Users: B's listing and profile are of B's ana; deleting B's ana leaves A's alone.
    listed = b.call("GET", "/v1/users/ana/facts").json()["facts"]
    assert [f["text"] for f in listed] == ["Lives in Lisbon"]
    assert [f["text"] for f in b.call("GET", "/v1/users/ana/profile").json()["core"]] == ["Lives in Lisbon"]
    a.remember("zed", "Has a cat", slot="pets", value="cat")
    assert b.call("GET", "/v1/users/zed/facts").status_code == 404
    assert b.call("DELETE", "/v1/users/zed").status_code == 404
    assert b.call("DELETE", "/v1/users/ana").json()["deleted"]["facts"] == 1
    assert a.recall("ana", "where does ana live") == ["Lives in Denver"]
    assert [f["text"] for f in a.call("GET", "/v1/users/zed/facts").json()["facts"]] == ["Has a cat"]


def test_chat_logs_and_memory_through_the_proxy_stay_in_the_keys_tenant(
    http: httpx.Client, pg_dsn: str, fake: FakeUpstream
) -> None:
    a, b = Tenant(http, "acme"), Tenant(http, "globex")
    a.remember("ana", "Is allergic to peanuts", slot="allergies", value="peanuts")
    ask = {"model": "fake-chat", "user": "ana", "messages": [{"role": "user", "content": "Any allergies?"}]}

    as_b = b.call("POST", "/v1/chat/completions", json=ask)
    assert as_b.headers["x-memoire-recalled"] == "0"
    assert "peanuts" not in fake.requests[-1].body.decode()
    as_a = a.call("POST", "/v1/chat/completions", json=ask)
    assert as_a.headers["x-memoire-recalled"] == "1"
    assert "peanuts" in fake.requests[-1].body.decode()

    rows = wait_until(
        lambda: (
            r
            if len(
                r := fetch_sync(
                    pg_dsn,
                    "SELECT t.name FROM chat_logs l JOIN tenants t ON t.id = l.tenant_id ORDER BY t.name",
                )
            )
            == 2
            else None
        )
    )
    assert [r["name"] for r in rows] == ["acme", "globex"]
    # B deletes its ana: A's exchange and facts stay.
    assert b.call("DELETE", "/v1/users/ana").json()["deleted"]["chat_logs"] == 1
    assert fetch_sync(pg_dsn, "SELECT count(*) AS n FROM chat_logs")[0]["n"] == 1
    assert a.recall("ana", "allergies") == ["Is allergic to peanuts"]
