"""Background memory care, run on crafted data: before and after, a second run, and many users in batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from memory import users
from memory.care.consolidate import CONTEXT_CHARS, CONTEXT_FACTS, consolidate_user, summarize_user
from memory.care.decay import decay_stale_facts
from memory.care.dedup import deduplicate_user
from memory.care.optimize import optimize_memory
from memory.care.supersession import supersede_user
from memory.config import CareConfig, LLMConfig
from memory.embeddings import LocalEmbedder
from memory.exchanges import DEFAULT_TENANT_ID
from memory.extraction.llm import create as create_llm
from tests.support.facts import Api, insert_facts
from tests.support.llm import FakeLLM

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
    assert "Likes jazz" not in [f["text"] for f in api.recall("ana", "jazz")]
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


async def user_key(db: asyncpg.Pool, user: str) -> tuple[uuid.UUID, uuid.UUID]:
    return DEFAULT_TENANT_ID, await db.fetchval("SELECT id FROM users WHERE external_id = $1", user)


async def test_duplicates_that_slipped_through_are_merged_keeping_sources_and_the_earliest_start(
    db: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    await insert_facts(
        db, embedder, "ana",
        {"text": "Likes jazz", "sources": [a], "created_at": now - 3 * DAY},
        {"text": "Likes jazz", "sources": [b], "valid_from": now - 400 * DAY, "created_at": now - 2 * DAY},
        {"text": "Lives in Denver", "slot": "home_city", "value": "Denver", "sources": [a]},
        {"text": "Resides in Denver, CO", "slot": "home_city", "value": "denver", "sources": [c]},
        {"text": "Has 2 cats", "sources": [a]},
        {"text": "Has 3 cats", "sources": [b]},
    )  # fmt: skip
    tenant, user = await user_key(db, "ana")
    assert await deduplicate_user(db, tenant, user, threshold=0.9) == {"merged": 2}
    active = {r["text"]: r for r in await db.fetch("SELECT * FROM memory_facts WHERE status = 'active'")}
    assert set(active) == {"Likes jazz", "Lives in Denver", "Has 2 cats", "Has 3 cats"}
    assert active["Likes jazz"]["source_chat_log_ids"] == [a, b]
    assert active["Likes jazz"]["valid_from"] == now - 400 * DAY
    assert active["Lives in Denver"]["source_chat_log_ids"] == [a, c]
    merged = await db.fetchrow("SELECT * FROM memory_facts WHERE text = 'Resides in Denver, CO'")
    assert (merged["status"], merged["superseded_by"]) == ("deleted", active["Lives in Denver"]["id"])
    assert await deduplicate_user(db, tenant, user, threshold=0.9) == {}


async def test_a_slot_with_two_current_values_keeps_the_latest(
    db: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    now = datetime.now(UTC)
    await insert_facts(
        db, embedder, "bo",
        {"text": "Works at Google", "slot": "employer", "value": "Google", "valid_from": now - 900 * DAY},
        {"text": "Works at Apple", "slot": "employer", "value": "Apple", "valid_from": now - 30 * DAY},
        {"text": "Likes tea", "slot": "likes", "value": "tea"},
        {"text": "Likes coffee", "slot": "likes", "value": "coffee"},
    )  # fmt: skip
    tenant, user = await user_key(db, "bo")
    assert await supersede_user(db, tenant, user) == {"superseded": 1}
    google = await db.fetchrow("SELECT * FROM memory_facts WHERE value = 'Google'")
    apple = await db.fetchrow("SELECT * FROM memory_facts WHERE value = 'Apple'")
    assert (google["status"], google["valid_to"], google["superseded_by"]) == (
        "superseded",
        now - 30 * DAY,
        apple["id"],
    )
    assert await db.fetchval("SELECT count(*) FROM memory_facts WHERE status = 'active'") == 3
    assert await supersede_user(db, tenant, user) == {}


async def test_optimize_promotes_who_the_user_is_and_demotes_what_went_stale(
    api: Api, db: asyncpg.Pool
) -> None:
    api.facts(
        "cy",
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
        {"text": "Is called Cy", "slot": "name", "value": "Cy"},
        {"text": "Is allergic to penicillin", "importance": 0.95},
        {"text": "Likes sudoku", "importance": 0.3},
        {"text": "Plays chess on Sundays", "importance": 0.4},
    )
    await db.execute(
        "UPDATE memory_facts SET recall_count = 9, last_recalled_at = now() WHERE text LIKE 'Plays%'"
    )
    care = CareConfig(profile_facts=4)
    now = datetime.now(UTC)
    assert await optimize_memory(db, care, now) == {"users": 1, "promoted": 4}
    essential = {r["text"] for r in await db.fetch("SELECT text FROM memory_facts WHERE essential")}
    assert essential == {
        "Works at Google",
        "Is called Cy",
        "Is allergic to penicillin",
        "Plays chess on Sundays",
    }
    assert await optimize_memory(db, care, now) == {"users": 1}

    # A new employer supersedes the old; chess goes unused for 100 days.
    api.facts("cy", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    later = now + 100 * DAY
    assert await optimize_memory(db, care, later) == {"users": 1, "promoted": 1, "demoted": 2}
    essential = {r["text"] for r in await db.fetch("SELECT text FROM memory_facts WHERE essential")}
    assert essential == {"Works at Apple", "Is called Cy", "Is allergic to penicillin"}
    assert await optimize_memory(db, care, later) == {"users": 1}


async def test_the_profile_is_injected_on_every_call_whatever_the_query(
    api: Api, db: asyncpg.Pool, fake: Any
) -> None:
    api.facts(
        "dee",
        {"text": "Is called Dee", "slot": "name", "value": "Dee"},
        {"text": "Is vegan", "importance": 0.9},
        {"text": "Likes kayaking"},
    )
    await optimize_memory(db, CareConfig(), datetime.now(UTC))
    reply = api.client.post(
        "/v1/chat/completions",
        json={
            "model": "fake-chat",
            "user": "dee",
            "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        },
    )
    assert reply.status_code == 200
    system = fake.requests[-1].json()["messages"][0]["content"]
    about = system.split("About the user:")[1]
    assert '"Is called Dee"' in about
    assert '"Is vegan"' in about
    # The profile holds the essential facts only; the rest of a small memory is offered beside it.
    profile = about.split("Current:")[0]
    assert "kayaking" not in profile
    assert '"Likes kayaking"' in system
    assert reply.headers["x-memoire-recalled"] == "3"


async def test_consolidate_merges_and_writes_the_profile_summary_once(
    api: Api, db: asyncpg.Pool, embedder: LocalEmbedder, llm: FakeLLM, llm_url: str
) -> None:
    api.facts("eve", {"text": "Is called Eve", "slot": "name", "value": "Eve"}, {"text": "Works as a nurse"})
    await insert_facts(db, embedder, "eve", {"text": "Works as a nurse"})  # slipped past the write path
    llm.on("Is called Eve", {"summary": "Eve is a nurse."})
    summarizer = create_llm(LLMConfig(provider="openai-compatible", base_url=llm_url, model="fake"))
    assert summarizer is not None
    try:
        tenant, user = await user_key(db, "eve")
        assert await consolidate_user(db, summarizer, tenant, user, 0.9) == {"merged": 1, "summarized": 1}
        calls = len(llm.requests)
        assert await consolidate_user(db, summarizer, tenant, user, 0.9) == {}
        assert len(llm.requests) == calls  # nothing changed: no call
        profile = api.client.get("/v1/users/eve/profile").json()
        assert profile["summary"] == "Eve is a nurse."
        # The facts are quoted as data in the prompt.
        assert '- "Is called Eve"' in llm.prompts()[-1]
    finally:
        await summarizer.close()


async def test_the_summary_of_a_user_with_50000_facts_reads_a_bounded_context(
    db: asyncpg.Pool, llm: FakeLLM, llm_url: str
) -> None:
    async with db.acquire() as conn:
        user_id = await users.ensure(conn, DEFAULT_TENANT_ID, "big")
        await conn.execute(
            """INSERT INTO memory_facts (tenant_id, user_id, text, importance)
               SELECT $1, $2, 'Remembers thing number ' || n, (n % 100) / 100.0
               FROM generate_series(1, 50000) n""",
            DEFAULT_TENANT_ID,
            user_id,
        )
    llm.on("Remembers thing", {"summary": "Remembers many things."})
    summarizer = create_llm(LLMConfig(provider="openai-compatible", base_url=llm_url, model="fake"))
    assert summarizer is not None
    try:
        assert await summarize_user(db, summarizer, DEFAULT_TENANT_ID, user_id) == "summarized"
    finally:
        await summarizer.close()
    prompt = llm.prompts()[-1]
    assert prompt.count("Remembers thing number") == CONTEXT_FACTS
    assert len(prompt) < CONTEXT_CHARS + 1000
    assert await db.fetchval("SELECT facts_used FROM user_profiles") == CONTEXT_FACTS


async def test_a_merge_never_joins_two_values_of_a_slot_and_keeps_what_the_other_fact_had(
    db: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    now = datetime.now(UTC)
    await insert_facts(
        db, embedder, "fay",
        {"text": "Is allergic to shellfish", "slot": "allergies", "created_at": now - 2 * DAY},  # no value
        {"text": "Is allergic to peanuts", "slot": "allergies", "value": "peanuts", "created_at": now - DAY},
        {"text": "Takes insulin daily", "created_at": now - 2 * DAY},
        {"text": "Takes insulin daily"},
    )  # fmt: skip
    await db.execute(
        """UPDATE memory_facts SET pinned = true, importance = 0.9, recall_count = 40, last_recalled_at = $1
           WHERE text = 'Takes insulin daily' AND created_at > $2""",
        now,
        now - DAY,
    )
    tenant, user = await user_key(db, "fay")
    assert await deduplicate_user(db, tenant, user, threshold=0.9) == {"merged": 1}
    active = {r["text"]: r for r in await db.fetch("SELECT * FROM memory_facts WHERE status = 'active'")}
    assert set(active) == {"Is allergic to shellfish", "Is allergic to peanuts", "Takes insulin daily"}
    kept = active["Takes insulin daily"]
    assert (kept["pinned"], round(kept["importance"], 2), kept["recall_count"]) == (True, 0.9, 40)
    assert kept["last_recalled_at"] == now


async def test_large_users_are_deduplicated_through_the_hnsw_index(
    db: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    now = datetime.now(UTC)
    await insert_facts(
        db, embedder, "gus",
        {"text": "Collects vinyl records", "created_at": now - DAY},
        {"text": "Collects vinyl records"},
        {"text": "Speaks Portuguese"},
    )  # fmt: skip
    tenant, user = await user_key(db, "gus")
    assert await deduplicate_user(db, tenant, user, threshold=0.9, hnsw_threshold=0) == {"merged": 1}
    assert await deduplicate_user(db, tenant, user, threshold=0.9, hnsw_threshold=0) == {}


async def test_two_stays_in_one_city_on_different_dates_stay_two_facts(
    db: asyncpg.Pool, embedder: LocalEmbedder
) -> None:
    now = datetime.now(UTC)
    stay = {"text": "Lived in Austin", "slot": "home_city", "value": "Austin"}
    await insert_facts(
        db, embedder, "hal",
        {**stay, "valid_from": now - 3000 * DAY, "created_at": now - 2 * DAY},
        {**stay, "valid_from": now - 900 * DAY},
    )  # fmt: skip
    await db.execute(
        "UPDATE memory_facts SET temporal_status = 'past', valid_to = valid_from + interval '300 days'"
    )
    tenant, user = await user_key(db, "hal")
    assert await deduplicate_user(db, tenant, user, threshold=0.9) == {}
    assert await db.fetchval("SELECT count(*) FROM memory_facts WHERE status = 'active'") == 2
