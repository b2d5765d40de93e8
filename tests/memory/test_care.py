"""Background memory care, run on crafted data: before and after, a second run, and many users in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from memoire.config import CareConfig
from memory.care.decay import decay_stale_facts
from tests.memory.test_facts_api import Api

pytestmark = pytest.mark.usefixtures("db")

CARE = CareConfig(decay_grace_days=30, decay_half_life_days=90, archive_below=0.15, batch_users=4)
DAY = timedelta(days=1)


async def confidence(db: asyncpg.Pool, text: str) -> tuple[float, str]:
    row = await db.fetchrow("SELECT confidence, status FROM memory_facts WHERE text = $1", text)
    return round(float(row["confidence"]), 4), row["status"]


async def test_unused_facts_fade_by_the_documented_curve_then_are_archived(
    api: Api, db: asyncpg.Pool
) -> None:
    api.facts(
        "ana",
        {"text": "Likes jazz", "confidence": 0.8},
        {"text": "Has a dog named Rex", "confidence": 0.8},
        {"text": "Is allergic to peanuts", "confidence": 0.8},
    )
    pinned = await db.fetchval("SELECT id FROM memory_facts WHERE text = 'Is allergic to peanuts'")
    assert api.client.patch(f"/v1/facts/{pinned}", json={"pinned": True}).json()["pinned"] is True
    start = datetime.now(UTC)

    # Within the grace period nothing fades.
    assert await decay_stale_facts(db, CARE, start + 29 * DAY) == {"users": 1}
    # 30 days of grace, then 90 more: half the confidence. A second run at the same time changes nothing.
    assert await decay_stale_facts(db, CARE, start + 120 * DAY + DAY / 2) == {"users": 1, "decayed": 2}
    assert await confidence(db, "Likes jazz") == (0.4, "active")
    assert await decay_stale_facts(db, CARE, start + 120 * DAY + DAY / 2) == {"users": 1}
    assert await confidence(db, "Likes jazz") == (0.4, "active")

    # Used again (recalled) at day 200: a new grace period, and the confidence it has is kept.
    await db.execute(
        "UPDATE memory_facts SET last_recalled_at = $1 WHERE text = 'Has a dog named Rex'", start + 200 * DAY
    )
    # At day 300: jazz has had 180 more days (a quarter of 0.4 = 0.1 < 0.15) and is archived; the dog only
    # 100 days since use, of which 70 past the grace.
    report = await decay_stale_facts(db, CARE, start + 300 * DAY + DAY / 2)
    assert report == {"users": 1, "decayed": 1, "archived": 1}
    assert await confidence(db, "Likes jazz") == (0.1, "archived")
    assert await confidence(db, "Has a dog named Rex") == (round(0.4 * 0.5 ** (70 / 90), 4), "active")
    assert await confidence(db, "Is allergic to peanuts") == (0.8, "active")
    assert await decay_stale_facts(db, CARE, start + 300 * DAY + DAY / 2) == {"users": 1}

    # Archived: recall skips it; the API and its history still show it.
    assert [f["text"] for f in api.recall("ana", "jazz")] == []
    jazz = await db.fetchval("SELECT id FROM memory_facts WHERE text = 'Likes jazz'")
    assert api.client.get(f"/v1/facts/{jazz}").json()["status"] == "archived"
    assert [f["text"] for f in api.client.get(f"/v1/facts/{jazz}/history").json()["history"]] == [
        "Likes jazz"
    ]
    archived = api.client.get("/v1/users/ana/facts", params={"status": "archived"}).json()["facts"]
    assert [f["text"] for f in archived] == ["Likes jazz"]


async def test_essential_and_inactive_facts_do_not_decay(api: Api, db: asyncpg.Pool) -> None:
    api.facts("bo", {"text": "Works at Google", "slot": "employer", "value": "Google"})
    api.facts("bo", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    await db.execute("UPDATE memory_facts SET essential = true WHERE text = 'Works at Apple'")
    before = await db.fetch("SELECT id, confidence, status, decay_days FROM memory_facts ORDER BY id")
    assert await decay_stale_facts(db, CARE, datetime.now(UTC) + 1000 * DAY) == {"users": 1}
    assert await db.fetch("SELECT id, confidence, status, decay_days FROM memory_facts ORDER BY id") == before


async def test_many_users_are_walked_in_batches(api: Api, db: asyncpg.Pool) -> None:
    for i in range(11):
        api.facts(f"user-{i:02d}", {"text": f"Likes the number {i}"})
    later = datetime.now(UTC) + 150 * DAY
    assert await decay_stale_facts(db, CARE, later) == {"users": 11, "decayed": 11}
    assert await decay_stale_facts(db, CARE, later) == {"users": 11}
    assert await decay_stale_facts(db, CARE, later, user="user-03") == {"users": 1}
    levels = {round(float(c), 4) for c in await db.fetchval("SELECT array_agg(confidence) FROM memory_facts")}
    assert levels == {round(0.8 * 0.5 ** (120 / 90), 4)}
