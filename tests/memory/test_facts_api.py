"""``POST /v1/facts``, ``/v1/recall``, a user's facts and history: dedup, supersession and temporal facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.facts import Api, texts
from tests.support.servers import ProxyFactory

pytestmark = pytest.mark.usefixtures("db")


def iso(moment: datetime) -> str:
    return moment.isoformat()


NOW = datetime.now(UTC)


def test_a_move_supersedes_the_old_city_which_becomes_past(api: Api) -> None:
    [austin] = api.facts("u1", {"text": "Lives in Austin", "slot": "home_city", "value": "Austin"})
    assert austin["outcome"] == "added"
    [denver] = api.facts("u1", {"text": "Moved to Denver", "slot": "home_city", "value": "Denver"})
    assert denver["outcome"] == "superseded_existing"

    current = api.recall("u1", "where does the user live?")
    assert texts(current) == ["Moved to Denver"]
    past = api.recall("u1", "where does the user live?", temporal=["past"])
    assert texts(past) == ["Lives in Austin"]
    old = past[0]
    assert old["status"] == "superseded"
    assert old["valid_to"] is not None
    # History is kept: superseded, never deleted, and it points at its replacement.
    history = api.client.get(f"/v1/facts/{denver['id']}/history").json()["history"]
    assert [f["text"] for f in history] == ["Lives in Austin", "Moved to Denver"]
    assert history[0]["superseded_by"] == denver["id"]
    assert history[0]["expired_at"] is not None


def test_new_employer_supersedes_but_a_new_role_leaves_the_employer_alone(api: Api) -> None:
    api.facts(
        "u2",
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
        {"text": "Is a software engineer", "slot": "job_title", "value": "software engineer"},
    )
    [promo] = api.facts(
        "u2", {"text": "Now a staff engineer", "slot": "job_title", "value": "staff engineer"}
    )
    assert promo["outcome"] == "superseded_existing"
    current = {f["slot"]: f["value"] for f in api.recall("u2", temporal=["current"])}
    assert current == {"employer": "Google", "job_title": "staff engineer"}

    [apple] = api.facts("u2", {"text": "Started a new job at Apple", "slot": "employer", "value": "Apple"})
    assert apple["outcome"] == "superseded_existing"
    current = {f["slot"]: f["value"] for f in api.recall("u2")}
    assert current == {"employer": "Apple", "job_title": "staff engineer"}
    past = {f["value"] for f in api.recall("u2", temporal=["past"])}
    assert past == {"Google", "software engineer"}


def test_duplicates_reinforce_and_add_no_row(api: Api) -> None:
    [first] = api.facts("u3", {"text": "Loves hiking in the mountains", "slot": "hobbies", "value": "hiking"})
    [again] = api.facts("u3", {"text": "loves hiking in the mountains.", "confidence": 0.9})
    [same_slot] = api.facts("u3", {"text": "Enjoys going hiking", "slot": "hobbies", "value": "Hiking"})
    assert first["outcome"] == "added"
    assert again == {"id": first["id"], "outcome": "merged"}
    assert same_slot == {"id": first["id"], "outcome": "merged"}
    page = api.listing("u3")
    assert len(page["facts"]) == 1
    assert page["facts"][0]["confidence"] == pytest.approx(0.9)
    # A different value in a multi-valued slot is a second fact, not a duplicate.
    [other] = api.facts("u3", {"text": "Loves swimming", "slot": "hobbies", "value": "swimming"})
    assert other["outcome"] == "added"
    assert len(api.listing("u3")["facts"]) == 2


def test_an_older_fact_cannot_supersede_a_newer_one(api: Api) -> None:
    api.facts(
        "u4",
        {
            "text": "Lives in Denver",
            "slot": "home_city",
            "value": "Denver",
            "valid_from": iso(NOW - timedelta(days=30)),
        },
    )
    [late] = api.facts(
        "u4",
        {
            "text": "Lived in Austin",
            "slot": "home_city",
            "value": "Austin",
            "valid_from": iso(NOW - timedelta(days=400)),
        },
    )
    assert late["outcome"] == "added"
    assert texts(api.recall("u4", "home city")) == ["Lives in Denver"]
    [past] = api.recall("u4", "home city", temporal=["past"])
    assert past["text"] == "Lived in Austin"
    assert past["stored_temporal_status"] == "past"
    assert past["valid_to"] is not None


def test_quitting_ends_the_job_without_a_replacement(api: Api) -> None:
    api.facts("u5", {"text": "Works at Google", "slot": "employer", "value": "Google"})
    [quit_] = api.facts("u5", {"text": "Quit the job at Google", "slot": "employer", "ends": True})
    assert quit_["outcome"] == "superseded_existing"
    assert api.recall("u5", "where does the user work?") == []
    [ended] = api.recall("u5", "where does the user work?", temporal=["past"])
    assert ended["text"] == "Works at Google"
    assert ended["superseded_by"] is None
    assert ended["valid_to"] is not None


async def test_a_future_fact_becomes_current_once_its_start_has_passed(api: Api, db: asyncpg.Pool) -> None:
    api.facts("u6", {"text": "Lives in Austin", "slot": "home_city", "value": "Austin"})
    [move] = api.facts(
        "u6",
        {
            "text": "Will move to Lisbon",
            "slot": "home_city",
            "value": "Lisbon",
            "temporal_status": "future",
            "valid_from": iso(NOW + timedelta(days=10)),
        },
    )
    assert texts(api.recall("u6", "city")) == ["Lives in Austin"]
    assert texts(api.recall("u6", "city", temporal=["future"])) == ["Will move to Lisbon"]
    # Time passes: the move date is now behind us.
    await db.execute(
        """UPDATE memory_facts SET valid_from = now() - interval '1 day' WHERE id = $1""", move["id"]
    )
    await db.execute(
        """UPDATE memory_facts SET valid_to = now() - interval '1 day' WHERE superseded_by = $1""", move["id"]
    )
    assert texts(api.recall("u6", "city")) == ["Will move to Lisbon"]
    assert texts(api.recall("u6", "city", temporal=["past"])) == ["Lives in Austin"]


def test_recall_filters_by_category_and_temporal_status(api: Api) -> None:
    api.facts(
        "u7",
        {"text": "Allergic to peanuts", "slot": "allergies", "value": "peanuts"},
        {"text": "Has a dog named Rex", "slot": "pets", "value": "dog Rex"},
        {"text": "Goes running every Sunday", "temporal_status": "recurring", "category": "activity"},
        {"text": "Studied physics in Paris", "temporal_status": "past", "category": "education"},
    )
    hits = api.recall("u7", "Can I give them a peanut butter cookie?")
    assert texts(hits)[0] == "Allergic to peanuts"
    assert all(f["score"] > 0 for f in hits)
    assert texts(api.recall("u7", "what about pets", categories=["health"])) == ["Allergic to peanuts"]
    assert texts(api.recall("u7", "how often do they go running?", temporal=["recurring"])) == [
        "Goes running every Sunday"
    ]
    everything = api.recall("u7", "", temporal=["all"], limit=10)
    assert len(everything) == 4
    # A small memory is offered whole, ranked, within the filters: nothing past or recurring.
    assert sorted(texts(api.recall("u7", "quantum chromodynamics of neutron stars"))) == [
        "Allergic to peanuts",
        "Has a dog named Rex",
    ]


def test_listing_paginates_and_filters(api: Api) -> None:
    api.facts(
        "u8", *({"text": f"Likes fruit number {i}", "slot": "likes", "value": f"fruit {i}"} for i in range(7))
    )
    seen: list[str] = []
    cursor = None
    while True:
        page = api.listing("u8", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += texts(page["facts"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"Likes fruit number {i}" for i in range(7))
    assert api.listing("u8", slot="home_city")["facts"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"user_id": "x", "facts": [{"text": ""}]}, "facts[0].text"),
        (
            {"user_id": "x", "facts": [{"text": "a", "temporal_status": "someday"}]},
            "facts[0].temporal_status",
        ),
        ({"user_id": "x", "facts": [{"text": "a", "confidence": 2}]}, "facts[0].confidence"),
        (
            {"user_id": "x", "facts": [{"text": "a", "valid_from": "2026-01-01T00:00:00"}]},
            "facts[0].valid_from",
        ),
        ({"user_id": "x", "facts": []}, "facts"),
        ({"facts": [{"text": "a"}]}, "user_id"),
        ({"user_id": "x", "facts": [{"text": "a"}] * 1001}, "facts"),
    ],
)
def test_bad_facts_name_the_field_and_store_nothing(api: Api, body: dict[str, Any], param: str) -> None:
    response = api.client.post("/v1/facts", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert api.client.post("/v1/recall", json={"user_id": "x", "query": "a"}).status_code == 404


def test_one_bad_fact_in_a_batch_stores_none_of_it(api: Api) -> None:
    api.facts("u9", {"text": "Likes tea"}, {"text": "Likes coffee", "slot": "Bad Slot"}, status=400)
    response = api.client.get("/v1/users/u9/facts")
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "user_id"


def test_slots_vocabulary_is_served(api: Api) -> None:
    slots = {s["name"]: s for s in api.client.get("/v1/slots").json()["slots"]}
    for name in ("name", "home_city", "employer", "job_title", "relationship_status", "partner"):
        assert slots[name]["cardinality"] == "single"
    for name in ("likes", "dislikes", "hobbies", "pets", "languages", "allergies"):
        assert slots[name]["cardinality"] == "multi"
    assert all(s["description"] for s in slots.values())


def test_the_hnsw_path_for_large_users_finds_what_the_exact_sort_finds(
    start_proxy: ProxyFactory, db: asyncpg.Pool
) -> None:
    exact = Api(start_proxy())
    approximate = Api(start_proxy(memory={"hnsw_threshold": 0}))
    try:
        exact.facts(
            "big",
            {"text": "Allergic to peanuts", "slot": "allergies", "value": "peanuts"},
            {"text": "Works as a nurse", "slot": "job_title", "value": "nurse"},
            {"text": "Lived in Oslo", "temporal_status": "past", "category": "location"},
            *({"text": f"Likes band number {i}", "slot": "likes", "value": f"band {i}"} for i in range(20)),
        )
        for query, temporal in (("peanut butter?", ["current"]), ("Oslo", ["past"]), ("music", ["all"])):
            want = [f["id"] for f in exact.recall("big", query, temporal=temporal)]
            got = [f["id"] for f in approximate.recall("big", query, temporal=temporal)]
            assert want
            # Approximate search: the best fact is the same, and at most one of the rest may differ.
            assert got[0] == want[0], query
            assert len(set(got) & set(want)) >= len(want) - 1, query
        # Each part of a two-question message is searched in the index.
        both = texts(approximate.recall("big", "What is my job, and which foods must I avoid?", limit=3))
        assert {"Works as a nurse", "Allergic to peanuts"} <= set(both)
    finally:
        exact.client.close()
        approximate.client.close()


async def test_the_hnsw_index_exists_for_the_default_model(db: asyncpg.Pool) -> None:
    definition = await db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_facts_minilm_hnsw'"
    )
    assert "hnsw" in definition
    assert "vector(384)" in definition


def test_close_wording_with_other_numbers_negation_or_dates_is_not_a_duplicate(api: Api) -> None:
    pairs = [
        ({"text": "Is vegetarian"}, {"text": "Is not vegetarian"}),
        ({"text": "Visited Paris in 2019"}, {"text": "Visited Paris in 2021"}),
        (
            {"text": "Went to a support group", "valid_from": "2023-05-07T00:00:00Z"},
            {"text": "Went to a support group", "valid_from": "2023-05-20T00:00:00Z"},
        ),
    ]
    for first, second in pairs:
        api.facts("u10", first)
        [result] = api.facts("u10", second)
        assert result["outcome"] == "added", (first, second)
    # The same fact from two sources keeps both sources' metadata.
    [a] = api.facts("u11", {"text": "Plays chess on Sundays", "metadata": {"dia_id": "D1:3", "src": "x"}})
    [b] = api.facts("u11", {"text": "Plays chess on Sundays.", "metadata": {"dia_id": "D7:2", "src": "x"}})
    assert b == {"id": a["id"], "outcome": "merged"}
    [fact] = api.listing("u11")["facts"]
    assert fact["metadata"] == {"dia_id": ["D1:3", "D7:2"], "src": "x"}


def test_plans_an_older_plan_moving_back_and_a_cancelled_plan(api: Api) -> None:
    day = timedelta(days=1)
    api.facts("u12", {"text": "Lives in Denver", "slot": "home_city", "value": "Denver",
                      "valid_from": iso(NOW - 30 * day)})  # fmt: skip
    # A plan dated before what we know now is history, not a crash.
    [stale] = api.facts("u12", {"text": "Moving to Lisbon", "slot": "home_city", "value": "Lisbon",
                                "temporal_status": "future", "valid_from": iso(NOW - 90 * day)})  # fmt: skip
    assert stale["outcome"] == "added"
    assert texts(api.recall("u12", "city")) == ["Lives in Denver"]

    # A plan, then its cancellation: the current city goes on.
    api.facts("u13", {"text": "Lives in Austin", "slot": "home_city", "value": "Austin"})
    api.facts("u13", {"text": "Will move to Lisbon", "slot": "home_city", "value": "Lisbon",
                      "temporal_status": "future", "valid_from": iso(NOW + 10 * day)})  # fmt: skip
    [cancel] = api.facts("u13", {"text": "No longer moving to Lisbon", "slot": "home_city", "value": "Lisbon",
                                 "ends": True})  # fmt: skip
    assert cancel["outcome"] == "superseded_existing"
    assert api.recall("u13", "city", temporal=["future"]) == []
    [austin] = api.recall("u13", "city")
    assert austin["text"] == "Lives in Austin"
    assert austin["valid_to"] is None


async def test_moving_back_after_a_move_that_happened(api: Api, db: asyncpg.Pool) -> None:
    api.facts("u14", {"text": "Lives in Austin", "slot": "home_city", "value": "Austin",
                      "valid_from": iso(NOW - timedelta(days=400))})  # fmt: skip
    soon = iso(NOW + timedelta(days=5))
    [lisbon] = api.facts("u14", {"text": "Will move to Lisbon", "slot": "home_city", "value": "Lisbon",
                                 "temporal_status": "future", "valid_from": soon})  # fmt: skip
    await db.execute(
        "UPDATE memory_facts SET valid_from = now() - interval '20 days' WHERE id = $1", lisbon["id"]
    )
    await db.execute(
        "UPDATE memory_facts SET valid_to = now() - interval '20 days' WHERE superseded_by = $1", lisbon["id"]
    )
    [back] = api.facts("u14", {"text": "Lives in Austin again", "slot": "home_city", "value": "Austin"})
    assert back["outcome"] == "superseded_existing"
    assert texts(api.recall("u14", "city")) == ["Lives in Austin again"]


def test_a_backdated_or_mismatched_quit_does_not_end_a_later_job(api: Api) -> None:
    api.facts("u15", {"text": "Works at Apple", "slot": "employer", "value": "Apple",
                      "valid_from": "2021-01-01T00:00:00Z"})  # fmt: skip
    [old_quit] = api.facts("u15", {"text": "Quit my job", "slot": "employer", "ends": True,
                                   "valid_to": "2019-03-01T00:00:00Z"})  # fmt: skip
    [other] = api.facts("u15", {"text": "Quit Google", "slot": "employer", "value": "Google", "ends": True})
    assert old_quit["outcome"] == other["outcome"] == "added"  # kept as past facts
    [job] = api.recall("u15", "where do they work?")
    assert job["text"] == "Works at Apple"
    assert job["valid_to"] is None


def test_plans_replace_plans_and_come_true(api: Api) -> None:
    day = timedelta(days=1)
    api.facts("u16", {"text": "Lives in Austin", "slot": "home_city", "value": "Austin"})
    api.facts("u16", {"text": "Moving to Seattle", "slot": "home_city", "value": "Seattle",
                      "temporal_status": "future", "valid_from": iso(NOW + 3 * day)})  # fmt: skip
    [denver] = api.facts("u16", {"text": "Moving to Denver instead", "slot": "home_city", "value": "Denver",
                                 "temporal_status": "future", "valid_from": iso(NOW + 5 * day)})  # fmt: skip
    assert denver["outcome"] == "superseded_existing"
    assert texts(api.recall("u16", "city", temporal=["future"])) == ["Moving to Denver instead"]
    [austin] = api.recall("u16", "city")
    assert austin["valid_to"][:10] == iso(NOW + 5 * day)[:10]  # rescheduled to the plan that stands

    # A plan that comes true early: the move happens now, and the plan is done.
    [moved] = api.facts("u16", {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"})
    assert moved["outcome"] == "superseded_existing"
    assert api.recall("u16", "city", temporal=["future"]) == []
    assert texts(api.recall("u16", "city")) == ["Lives in Denver"]


def test_quitting_ends_the_job_not_the_plan_and_a_future_quit_waits(api: Api) -> None:
    day = timedelta(days=1)
    api.facts("u17", {"text": "Works at Google", "slot": "employer", "value": "Google",
                      "valid_from": iso(NOW - 300 * day)})  # fmt: skip
    api.facts("u17", {"text": "Joining Apple", "slot": "employer", "value": "Apple",
                      "temporal_status": "future", "valid_from": iso(NOW + 30 * day)})  # fmt: skip
    [quit_] = api.facts("u17", {"text": "Quit my job", "slot": "employer", "ends": True})
    assert texts(api.recall("u17", temporal=["past"])) == ["Works at Google"]
    assert texts(api.recall("u17", temporal=["future"])) == ["Joining Apple"]
    assert quit_["outcome"] == "superseded_existing"

    api.facts("u18", {"text": "Works at Apple", "slot": "employer", "value": "Apple"})
    [later] = api.facts("u18", {"text": "Will quit Apple", "slot": "employer", "value": "Apple",
                                "ends": True, "valid_to": iso(NOW + 20 * day)})  # fmt: skip
    assert later["outcome"] == "superseded_existing"
    [still] = api.recall("u18")
    assert still["text"] == "Works at Apple"
    assert still["valid_to"][:10] == iso(NOW + 20 * day)[:10]


def test_ending_prefers_the_exact_value_and_a_replayed_ending_changes_nothing(api: Api) -> None:
    since = iso(NOW - timedelta(days=10))
    api.facts("u19", {"text": "Likes tea", "slot": "likes", "value": "tea", "valid_from": since},
              {"text": "Likes green tea", "slot": "likes", "value": "green tea",
               "valid_from": since})  # fmt: skip
    ending = {"text": "No longer likes tea", "slot": "likes", "value": "tea", "ends": True,
              "valid_to": iso(NOW - timedelta(hours=1))}  # fmt: skip
    [first] = api.facts("u19", ending)
    [again] = api.facts("u19", ending)
    assert again == first
    assert texts(api.recall("u19", "tea")) == ["Likes green tea"]
    assert len(api.listing("u19", status=["active", "superseded"])["facts"]) == 2


def test_new_facts_are_judged_as_of_now(api: Api) -> None:
    api.facts("u20", {"text": "Lives in Denver", "slot": "home_city", "value": "Denver",
                      "valid_from": iso(NOW - timedelta(days=30))})  # fmt: skip
    # Told now about a stay that ended long ago: history, not a move.
    api.facts("u20", {"text": "Lived in Rome", "slot": "home_city", "value": "Rome",
                      "valid_from": "2018-01-01T00:00:00Z", "valid_to": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert texts(api.recall("u20", "city")) == ["Lives in Denver"]
    # A plan whose day has passed, posted twice: one current fact.
    concert = {"text": "Going to a concert", "temporal_status": "future", "category": "event",
               "valid_from": "2026-01-10T20:00:00-05:00"}  # fmt: skip
    [a] = api.facts("u20", concert)
    [b] = api.facts("u20", {**concert, "valid_from": "2026-01-11T01:00:00Z"})  # the same instant
    assert b == {"id": a["id"], "outcome": "merged"}


def test_out_of_range_moments_are_refused_by_name(api: Api) -> None:
    for moment in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"):
        body = api.facts("u21", {"text": "x", "valid_from": moment}, status=400)
        assert body["error"]["param"].startswith("facts[0]")


def test_recall_says_where_its_time_went(api: Api) -> None:
    api.facts("tim", {"text": "Lives in Oslo"})
    response = api.client.post("/v1/recall", json={"user_id": "tim", "query": "where does tim live now"})
    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(timing) == {"embed", "db"}
    assert float(timing["embed"]) > 0  # a query not seen before is embedded
    assert float(timing["db"]) > 0
