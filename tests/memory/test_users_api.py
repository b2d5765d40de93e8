"""One fact by id (get, patch, delete), a user's profile, and forgetting a user everywhere."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from memory.exchanges import DEFAULT_TENANT_ID, Exchange, now, pack
from memory.spool import Spool
from tests.support.db import fetch_sync
from tests.support.facts import Api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("db")


def test_a_fact_is_read_corrected_and_deleted_by_id(api: Api) -> None:
    [added] = api.facts("ana", {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"})
    path = f"/v1/facts/{added['id']}"
    fact = api.client.get(path).json()
    assert (fact["text"], fact["status"], fact["user_id"]) == ("Lives in Denver", "active", "ana")

    patched = api.client.patch(path, json={"text": "Lives in Boulder", "value": "Boulder", "importance": 0.9})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["text"], patched.json()["value"], patched.json()["importance"]) == (
        "Lives in Boulder",
        "Boulder",
        0.9,
    )
    # Re-embedded: recall finds it by its new wording, and not by the old one.
    assert [f["text"] for f in api.recall("ana", "Boulder")] == ["Lives in Boulder"]
    # Only the fields given change; null clears.
    cleared = api.client.patch(path, json={"value": None}).json()
    assert (cleared["text"], cleared["value"], cleared["importance"]) == ("Lives in Boulder", None, 0.9)

    archived = api.client.patch(path, json={"status": "archived"}).json()
    assert archived["status"] == "archived"
    assert api.recall("ana", "Boulder") == []

    assert api.client.delete(path).status_code == 204
    assert api.client.get(path).status_code == 404
    assert api.client.delete(path).status_code == 404


def test_bad_patches_name_the_field_and_change_nothing(api: Api) -> None:
    [added] = api.facts("ana", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    path = f"/v1/facts/{added['id']}"
    for body, param in (
        ({"importance": 2}, "importance"),
        ({"text": ""}, "text"),
        ({"status": "superseded"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"valid_from": "2026-01-02T00:00:00Z", "valid_to": "2025-01-01T00:00:00Z"}, "valid_to"),
    ):
        response = api.client.patch(path, json=body)
        assert response.status_code == 400, (body, response.text)
        assert param in (response.json()["error"]["param"] or response.json()["error"]["message"]), body
    assert api.client.get(path).json()["text"] == "Works at Apple"
    assert api.client.patch(f"/v1/facts/{uuid.uuid4()}", json={"importance": 0.1}).status_code == 404


def test_a_superseded_fact_keeps_its_status_and_deleting_it_keeps_the_newer(api: Api) -> None:
    [old] = api.facts("ana", {"text": "Works at Google", "slot": "employer", "value": "Google"})
    [new] = api.facts("ana", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    assert new["outcome"] == "superseded_existing"
    response = api.client.patch(f"/v1/facts/{old['id']}", json={"status": "active"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "status"
    assert api.client.delete(f"/v1/facts/{old['id']}").status_code == 204
    history = api.client.get(f"/v1/facts/{new['id']}/history").json()["history"]
    assert [f["text"] for f in history] == ["Works at Apple"]


def test_profile_shows_who_the_user_is_now(api: Api) -> None:
    api.facts(
        "ana",
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
        {"text": "Likes jazz", "slot": "likes", "value": "jazz"},
        {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"},
    )
    api.facts("ana", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    profile = api.client.get("/v1/users/ana/profile").json()
    assert profile["user_id"] == "ana"
    assert profile["facts"] == {"active": 3, "superseded": 1}
    assert [f["text"] for f in profile["core"]] == ["Works at Apple", "Lives in Denver"]
    assert api.client.get("/v1/users/nobody/profile").status_code == 404


def _spool_exchange(path: Path, user: str) -> None:
    """An exchange of ``user`` still waiting in the API's spool (due in an hour: not delivered meanwhile)."""
    exchange = Exchange(
        id=uuid.uuid4(), tenant_id=DEFAULT_TENANT_ID, user=user, messages=[{"role": "user", "content": "hi"}],
        occurred_at=now(),
    )  # fmt: skip

    async def put() -> None:
        spool = Spool(path)
        await spool.put([(str(exchange.id), pack(exchange))])
        await spool.defer([str(exchange.id)], 3600, "test: held back")
        await spool.close()

    asyncio.run(put())


def test_deleting_a_user_purges_everything_and_verifies_it(api: Api, pg_dsn: str, tmp_path: Path) -> None:
    api.facts("ana", {"text": "Lives in Denver"}, {"text": "Likes jazz"})
    api.facts("bob", {"text": "Likes tea"})
    for text in ("hello", "again"):
        response = api.client.post(
            "/v1/chat/completions",
            json={"model": "fake-chat", "user": "ana", "messages": [{"role": "user", "content": text}]},
            headers={"x-memoire-session": "s1", "authorization": "Bearer sk-x"},
        )
        assert response.status_code == 200
    wait_until(lambda: fetch_sync(pg_dsn, "SELECT count(*) AS n FROM chat_logs")[0]["n"] == 2)
    _spool_exchange(tmp_path / "spool.sqlite3", "ana")
    _spool_exchange(tmp_path / "spool.sqlite3", "bob")

    response = api.client.delete("/v1/users/ana")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": "ana",
        "deleted": {"facts": 2, "chat_logs": 2, "sessions": 1, "response_links": 0, "spool_entries": 1},
        "verified": True,
    }
    counts = fetch_sync(
        pg_dsn,
        """SELECT (SELECT count(*) FROM users WHERE external_id = 'ana') AS users,
                  (SELECT count(*) FROM memory_facts) AS facts,
                  (SELECT count(*) FROM sessions) AS sessions,
                  (SELECT count(*) FROM chat_logs) AS logs""",
    )[0]
    assert dict(counts) == {"users": 0, "facts": 1, "sessions": 0, "logs": 0}
    assert api.client.get("/v1/users/ana/facts").status_code == 404
    assert api.client.delete("/v1/users/ana").status_code == 404
    # Bob's spooled exchange is left alone.
    assert [f["text"] for f in api.recall("bob", "tea")] == ["Likes tea"]
    remaining = asyncio.run(_spool_size(tmp_path / "spool.sqlite3"))
    assert remaining == 1


async def _spool_size(path: Path) -> int:
    spool = Spool(path)
    try:
        return await spool.size()
    finally:
        await spool.close()
