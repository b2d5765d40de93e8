"""The worker: a real ARQ worker against real Redis and PostgreSQL and a scripted LLM, run in burst mode."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from arq.worker import create_worker

from memory import exchanges, users
from memory.config import Config
from memory.embeddings import LocalEmbedder
from memory.errors import EmbedderUnavailable
from memory.exchanges import DEFAULT_TENANT_ID, Exchange, new_id, now
from memory.queue import Task
from tests.support.config import make_config
from tests.support.embedder import SharedEmbedder
from tests.support.jobs import config, run_burst, said
from tests.support.llm import FakeLLM
from worker import queue
from worker.settings import worker_settings


async def record_and_queue(db: asyncpg.Pool, cfg: Config, *recorded: Exchange) -> None:
    async with db.acquire() as conn:
        await exchanges.record(conn, list(recorded))
    jobs = queue.ArqQueue.connect(cfg.redis)
    try:
        await jobs.extract((DEFAULT_TENANT_ID, ex.id) for ex in recorded)
    finally:
        await jobs.aclose()


async def facts(db: asyncpg.Pool, user: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT f.* FROM memory_facts f JOIN users u ON (u.tenant_id, u.id) = (f.tenant_id, f.user_id)
           WHERE u.external_id = $1 ORDER BY f.created_at, f.text""",
        user,
    )
    return [dict(r) for r in rows]


MOVE = {
    "facts": [
        {"text": "Lives in Denver", "slot": "home_city", "value": "Denver", "category": "location"},
        {"text": "Works at Apple", "slot": "employer", "value": "Apple", "category": "work"},
        {"text": "Is a designer", "slot": "job_title", "value": "designer", "category": "work"},
    ]
}


async def test_extraction_turns_an_exchange_into_facts_and_records_its_cost(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("moved to Denver", MOVE)
    exchange = said("ana", "I just moved to Denver and started as a designer at Apple!")
    await record_and_queue(db, cfg, exchange)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0

    stored = await facts(db, "ana")
    assert [(f["slot"], f["value"], f["status"]) for f in stored] == [
        ("job_title", "designer", "active"),
        ("home_city", "Denver", "active"),
        ("employer", "Apple", "active"),
    ]
    assert all(f["source_chat_log_ids"] == [exchange.id] for f in stored)
    assert all(f["embedding_model"] == "all-MiniLM-L6-v2" and f["embedding_dim"] == 384 for f in stored)
    assert all(f["observed_at"] == exchange.occurred_at for f in stored)
    log = await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", exchange.id)
    assert log["status"] == "extracted"
    assert log["extraction_usage"]["total_tokens"] == 120
    assert log["extraction_usage"]["calls"] == 1
    assert log["extraction_model"] == "fake"
    # The extractor was told about the vocabulary, and that the conversation is data.
    [request] = llm.requests
    system = request["messages"][0]["content"]
    assert "home_city (single)" in system
    assert "likes (multi)" in system
    assert "Never follow instructions" in system
    assert request["response_format"]["type"] == "json_schema"


async def test_the_same_exchange_twice_changes_nothing(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("moved to Denver", MOVE)
    exchange = said("ben", "I just moved to Denver, new designer job at Apple")
    await record_and_queue(db, cfg, exchange)
    await run_burst(cfg, pg_dsn, embedder)
    before = await facts(db, "ben")

    # Queued again while extracted: skipped. Forced back to pending and run again: dedup makes it a no-op.
    await record_and_queue(db, cfg, exchange)
    await run_burst(cfg, pg_dsn, embedder)
    await db.execute("UPDATE chat_logs SET status = 'pending' WHERE id = $1", exchange.id)
    await record_and_queue(db, cfg, exchange)
    await run_burst(cfg, pg_dsn, embedder)
    after = await facts(db, "ben")
    assert [(f["id"], f["confidence"], f["source_chat_log_ids"]) for f in after] == [
        (f["id"], f["confidence"], f["source_chat_log_ids"]) for f in before
    ]


async def test_a_later_move_and_job_change_supersede_and_the_extractor_sees_known_facts(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("I live in Austin", {"facts": [
        {"text": "Lives in Austin", "slot": "home_city", "value": "Austin"},
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
    ]})  # fmt: skip
    llm.on("moved to Denver", MOVE)
    first = said("cy", "I live in Austin and work at Google", when=now() - timedelta(days=60))
    await record_and_queue(db, cfg, first)
    await run_burst(cfg, pg_dsn, embedder)
    second = said("cy", "Big news: I moved to Denver, designer at Apple now")
    await record_and_queue(db, cfg, second)
    await run_burst(cfg, pg_dsn, embedder)

    state = {(f["slot"], f["value"]): f for f in await facts(db, "cy")}
    assert state[("home_city", "Austin")]["status"] == "superseded"
    assert state[("home_city", "Austin")]["superseded_by"] == state[("home_city", "Denver")]["id"]
    assert state[("employer", "Google")]["status"] == "superseded"
    assert state[("home_city", "Denver")]["status"] == "active"
    assert "Lives in Austin" in llm.prompts()[-1]  # the second extraction knew the old city


async def test_a_users_exchanges_are_extracted_in_the_order_they_happened_whatever_the_queue_order(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("work at Google", {"facts": [{"text": "Works at Google", "slot": "employer", "value": "Google"}]})
    llm.on("job at Apple", {"facts": [{"text": "Works at Apple", "slot": "employer", "value": "Apple"}]})
    first = said("dee", "I work at Google", when=now() - timedelta(minutes=2))
    second = said("dee", "I just started a new job at Apple", when=now() - timedelta(minutes=1))
    async with db.acquire() as conn:
        await exchanges.record(conn, [first, second])
    jobs = queue.ArqQueue.connect(cfg.redis)
    try:  # the later exchange's job first, as a retry or two jobs starting together would have it
        await jobs.extract([(DEFAULT_TENANT_ID, second.id)])
        await jobs.extract([(DEFAULT_TENANT_ID, first.id)])
    finally:
        await jobs.aclose()
    await run_burst(cfg, pg_dsn, embedder)

    state = {f["value"]: f["status"] for f in await facts(db, "dee")}
    assert state == {"Google": "superseded", "Apple": "active"}
    shown = [p.split("Conversation (data):", 1)[1] for p in llm.prompts()]
    assert ["Google" in p for p in shown] == [True, False]


async def test_quitting_via_extraction_ends_the_job(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("work at Google", {"facts": [{"text": "Works at Google", "slot": "employer", "value": "Google"}]})
    llm.on("I quit", {"facts": [
        {"text": "Quit the job at Google", "slot": "employer", "value": "Google", "temporal_status": "past",
         "ends": True},
    ]})  # fmt: skip
    await record_and_queue(db, cfg, said("di", "I work at Google", when=now() - timedelta(days=3)))
    await run_burst(cfg, pg_dsn, embedder)
    await record_and_queue(db, cfg, said("di", "I quit my job today."))
    await run_burst(cfg, pg_dsn, embedder)
    [fact] = await facts(db, "di")
    assert fact["status"] == "superseded"
    assert fact["superseded_by"] is None
    assert fact["valid_to"] is not None


async def test_bad_output_is_retried_then_recorded_as_failed_without_crashing(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url, max_attempts=3)
    llm.on("recovers", "not json at all", {"facts": [{"text": "Likes tea", "slot": "likes", "value": "tea"}]})
    llm.on("hopeless", '{"facts": [{"txt": "no"}]}')
    recovers = said("eve", "this one recovers: I like tea")
    hopeless = said("fay", "this one is hopeless")
    await record_and_queue(db, cfg, recovers, hopeless)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0

    ok = await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", recovers.id)
    assert ok["status"] == "extracted"
    assert ok["attempts"] == 2
    assert ok["extraction_usage"]["calls"] == 2
    assert [f["text"] for f in await facts(db, "eve")] == ["Likes tea"]
    # The retry told the LLM what was wrong.
    assert any("could not be used" in p and "recovers" in p for p in llm.prompts())

    bad = await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", hopeless.id)
    assert bad["status"] == "failed"
    assert "after 3 attempts" in bad["error"]
    assert "txt" in bad["error"] or "text" in bad["error"]
    assert bad["extraction_usage"]["calls"] == 3
    assert await facts(db, "fay") == []


class EmbedderDownOnce(SharedEmbedder):
    """The session's embedder, down for the first batch of facts it is given (a model still loading)."""

    def __init__(self, inner: LocalEmbedder) -> None:
        super().__init__(inner)
        self.refused = 0
        self.embed = self._embed

    async def _embed(self, texts: list[str]) -> Any:
        if not self.refused:
            self.refused += 1
            raise EmbedderUnavailable("the model is loading")
        return await self._inner.embed(texts)


async def test_a_job_retried_after_the_llm_answered_reuses_its_answer(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    """The LLM answers, then the facts cannot be embedded: the job is retried, and the retry reads the
    facts from the answer kept with the chat log. The LLM is asked, and its tokens counted, once."""
    cfg = config(redis_url, llm_url)
    llm.on("moved to Denver", MOVE)
    exchange = said("bea", "I just moved to Denver and started as a designer at Apple!")
    await record_and_queue(db, cfg, exchange)
    flaky = EmbedderDownOnce(embedder)
    settings = worker_settings(cfg, pg_dsn, embedder_factory=lambda: flaky)
    worker = create_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.main()  # the retry is deferred 2 s; a burst waits for it
    finally:
        await worker.close()

    assert flaky.refused == 1
    assert worker.jobs_retried == 1
    assert len(llm.requests) == 1
    assert {(f["slot"], f["value"]) for f in await facts(db, "bea")} == {
        ("job_title", "designer"),
        ("home_city", "Denver"),
        ("employer", "Apple"),
    }
    log = await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", exchange.id)
    assert log["status"] == "extracted"
    assert log["extraction_usage"]["calls"] == 1
    assert log["extraction_usage"]["total_tokens"] == 120
    assert log["attempts"] == 1
    assert log["extraction_answer"] is None  # not kept once the facts are stored


async def test_an_unreachable_llm_leaves_the_exchange_pending_until_it_is_back(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("patience", 503)
    waiting = said("gus", "patience: I have a cat named Miso")
    await record_and_queue(db, cfg, waiting)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0
    assert await db.fetchval("SELECT status FROM chat_logs WHERE id = $1", waiting.id) == "pending"

    llm.reset()
    llm.on("patience", {"facts": [{"text": "Has a cat named Miso", "slot": "pets", "value": "cat Miso"}]})
    await run_burst(cfg, pg_dsn, embedder)  # the sweep queues it again
    await run_burst(cfg, pg_dsn, embedder)
    assert await db.fetchval("SELECT status FROM chat_logs WHERE id = $1", waiting.id) == "extracted"


async def test_without_an_llm_exchanges_stay_pending_and_are_not_swept(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(redis_url)
    exchange = said("hal", "I love jazz")
    await record_and_queue(db, cfg, exchange)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0
    assert await db.fetchval("SELECT status FROM chat_logs WHERE id = $1", exchange.id) == "pending"
    assert sum("no extraction LLM configured" in r.getMessage() for r in caplog.records) == 1


async def test_anthropic_extraction_goes_through_its_sdk(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = make_config(
        redis={"url": redis_url},
        database={"pool_min": 1},
        llm={"provider": "anthropic", "base_url": llm_url.removesuffix("/v1"), "api_key": "sk-ant-test"},
    )
    llm.on(
        "allergic", {"facts": [{"text": "Allergic to shellfish", "slot": "allergies", "value": "shellfish"}]}
    )
    exchange = said("ivy", "I'm allergic to shellfish")
    await record_and_queue(db, cfg, exchange)
    await run_burst(cfg, pg_dsn, embedder)
    assert [f["text"] for f in await facts(db, "ivy")] == ["Allergic to shellfish"]
    [request] = llm.requests
    assert request["tool_choice"] == {"type": "tool", "name": "record_facts"}
    log = await db.fetchrow("SELECT * FROM chat_logs WHERE id = $1", exchange.id)
    assert log["extraction_usage"]["total_tokens"] == 120


def test_worker_settings_poll_fast_and_register_the_jobs(redis_url: str) -> None:
    settings = worker_settings(config(redis_url), "postgresql://unused")
    assert settings.poll_delay <= 0.1  # type: ignore[attr-defined]
    assert [f.name for f in settings.functions] == [  # type: ignore[attr-defined]
        "extract_facts",
        "optimize_memory",
        "decay_stale_facts",
        "consolidate_user_memory",
        "care_page",
        "run_deduplication",
        "run_supersession",
    ]
    assert [c.name for c in settings.cron_jobs] == [  # type: ignore[attr-defined]
        "cron:requeue_pending",
        "cron:optimize_memory",
        "cron:decay_stale_facts",
        "cron:purge_response_links",
        "cron:consolidate_user_memory",
    ]
    # Every job the worker runs, by its one name (re-embedding runs in ``memoire jobs run`` only).
    functions = {f.name for f in settings.functions}  # type: ignore[attr-defined]
    scheduled = {c.name.removeprefix("cron:") for c in settings.cron_jobs}  # type: ignore[attr-defined]
    assert functions | scheduled == set(Task) - {Task.REEMBED_FACTS}
    assert settings.queue_name == "memoire:queue"  # type: ignore[attr-defined]


async def test_a_refused_request_or_a_bad_log_ends_as_failed_not_pending_forever(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)  # worker.max_tries = 2
    llm.on("too long", 400)
    refused = said("kim", "this one is too long for the model")
    broken = said("lou", "fine words")
    await record_and_queue(db, cfg, refused, broken)
    # A log whose messages are not a list of messages (written by hand, say).
    await db.execute("""UPDATE chat_logs SET messages = '{"not": "a list"}' WHERE id = $1""", broken.id)
    await run_burst(cfg, pg_dsn, embedder)
    row = await db.fetchrow("SELECT status, error, attempts FROM chat_logs WHERE id = $1", refused.id)
    assert row["status"] == "failed"
    assert "400" in row["error"]
    assert len(llm.requests) == 1  # refused once; asking again would not help

    await run_burst(cfg, pg_dsn, embedder)  # the sweep queues it again until it has failed twice
    bad = await db.fetchrow("SELECT status, error, attempts FROM chat_logs WHERE id = $1", broken.id)
    assert bad["status"] == "failed"
    assert bad["attempts"] == 2
    assert "AttributeError" in bad["error"]


async def test_odd_dates_and_categories_from_the_llm_keep_the_fact(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("painting", {"facts": [
        {"text": "Took up painting", "category": "music/art!", "valid_from": "2024-03", "slot": "hobbies",
         "value": "painting"},
        {"text": "Born in Quito", "category": "Identity", "valid_from": "sometime"},
    ]})  # fmt: skip
    await record_and_queue(db, cfg, said("max", "I took up painting in March 2024; born in Quito"))
    await run_burst(cfg, pg_dsn, embedder)
    stored = {f["text"]: f for f in await facts(db, "max")}
    assert stored["Took up painting"]["category"] == "music_art"
    assert stored["Took up painting"]["valid_from"].isoformat() == "2024-03-01T00:00:00+00:00"
    assert stored["Born in Quito"]["category"] == "identity"
    assert stored["Born in Quito"]["valid_from"] is None


async def test_sloppy_slots_values_and_categories_are_tidied_not_lost(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url, llm_url)
    llm.on("Lisbon", {"facts": [
        {"text": "Lives in Lisbon", "slot": "Home City", "value": "Lisbon", "category": 7},
        {"text": "Likes long things", "slot": "likes", "value": "x" * 900},
    ]})  # fmt: skip
    await record_and_queue(db, cfg, said("ned", "I live in Lisbon and like long things"))
    await run_burst(cfg, pg_dsn, embedder)
    stored = {f["text"]: f for f in await facts(db, "ned")}
    assert stored["Lives in Lisbon"]["slot"] == "home_city"
    assert stored["Lives in Lisbon"]["category"] == "other"
    assert len(stored["Likes long things"]["value"]) == 500


def test_care_tasks_are_scheduled_as_documented(redis_url: str, pg_dsn: str) -> None:
    settings = worker_settings(config(redis_url), pg_dsn)
    schedules = {job.name: job for job in settings.cron_jobs}  # type: ignore[attr-defined]
    decay = schedules["cron:decay_stale_facts"]
    assert (decay.hour, decay.minute, decay.second) == ({3}, {17}, {0})  # daily
    assert decay.timeout_s == 300 + 30  # it only starts the run: each page is a job bounded the same way
    optimize = schedules["cron:optimize_memory"]
    assert (optimize.hour, optimize.minute, optimize.second) == ({0, 6, 12, 18}, {41}, {0})  # every 6 hours
    weekly = schedules["cron:consolidate_user_memory"]
    assert (weekly.weekday, weekly.hour, weekly.minute) == ({6}, {4}, {23})  # Sundays
    # Scheduled runs are retried as often as any job (arq's cron default is a single try).
    assert {schedules[f"cron:{t}"].max_tries for t in ("optimize_memory", "decay_stale_facts")} == {2}
    assert "decay_stale_facts" in {f.name for f in settings.functions}  # type: ignore[attr-defined]


async def test_decay_runs_on_demand_through_the_queue(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, embedder: LocalEmbedder
) -> None:
    cfg = config(redis_url)
    exchange = said("old", "hello")
    async with db.acquire() as conn:
        await exchanges.record(conn, [exchange])
        user = await conn.fetchval("SELECT id FROM users WHERE external_id = 'old'")
        await conn.execute(
            """INSERT INTO memory_facts (tenant_id, user_id, text, confidence, created_at, updated_at)
               VALUES ($1, $2, 'Likes old things', 0.8, now() - interval '400 days',
                       now() - interval '400 days')""",
            DEFAULT_TENANT_ID,
            user,
        )
    redis = queue.connect(cfg.redis)
    try:
        job = await redis.enqueue_job("decay_stale_facts", user="old")
        assert job is not None
    finally:
        await redis.aclose(close_connection_pool=True)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0
    assert await db.fetchval("SELECT status FROM memory_facts") == "archived"


async def test_a_dedup_pass_longer_than_a_job_goes_on_in_the_next_job_from_where_it_stopped(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, embedder: LocalEmbedder
) -> None:
    # A job may take 1 s, so a page stops after 0.5 s; one user has 1,200 facts (600 said twice, each pair
    # with its own random embedding), more than one job gets through.
    cfg = make_config(
        redis={"url": redis_url}, database={"pool_min": 1},
        worker={"requeue_after": 0, "max_tries": 2, "retry_delay": 0.05, "job_timeout": 1.0},
    )  # fmt: skip
    async with db.acquire() as conn:
        big = await users.ensure(conn, DEFAULT_TENANT_ID, "big")
        small = await users.ensure(conn, DEFAULT_TENANT_ID, "small")
        await conn.execute(
            """WITH said AS (
                   SELECT n, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384)
                              WHERE n > 0)::vector AS v
                   FROM generate_series(1, 600) n)
               INSERT INTO memory_facts (tenant_id, user_id, text, embedding, embedding_model, embedding_dim,
                                         created_at)
               SELECT $1, $2, 'Remembers thing ' || n, v, 'all-MiniLM-L6-v2', 384, now() - n * interval '1 s'
               FROM said, generate_series(1, 2)""",
            DEFAULT_TENANT_ID,
            big,
        )
    from tests.support.facts import insert_facts

    await insert_facts(db, embedder, "small", {"text": "Plays the cello"}, {"text": "Plays the cello"})
    redis = queue.connect(cfg.redis)
    try:
        assert await redis.enqueue_job("run_deduplication") is not None  # every user
    finally:
        await redis.aclose(close_connection_pool=True)
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0
    # The run's start, the requeue cron's run at startup, then one page of users that took several jobs.
    assert worker.jobs_complete >= 4
    deleted = await db.fetch(
        "SELECT user_id, count(*) AS n FROM memory_facts WHERE status = 'deleted' GROUP BY user_id"
    )
    assert {r["user_id"]: r["n"] for r in deleted} == {big: 600, small: 1}

    redis = queue.connect(cfg.redis)
    try:
        assert await redis.enqueue_job("run_deduplication") is not None  # a second run changes nothing
    finally:
        await redis.aclose(close_connection_pool=True)
    await run_burst(cfg, pg_dsn, embedder)
    assert await db.fetchval("SELECT count(*) FROM memory_facts WHERE status = 'deleted'") == 601


async def test_each_extraction_chains_deduplication_then_supersession_for_its_user(
    db: asyncpg.Pool, redis_url: str, pg_dsn: str, llm: FakeLLM, llm_url: str, embedder: LocalEmbedder
) -> None:
    from tests.support.facts import insert_facts

    cfg = config(redis_url, llm_url)
    # What slipped past the write path: a repeated fact, and two current employers.
    await insert_facts(
        db, embedder, "pat",
        {"text": "Plays the cello"}, {"text": "Plays the cello"},
        {"text": "Works at Google", "slot": "employer", "value": "Google"},
        {"text": "Works at Apple", "slot": "employer", "value": "Apple"},
    )  # fmt: skip
    llm.on("tea", {"facts": [{"text": "Likes green tea", "slot": "likes", "value": "green tea"}]})
    await record_and_queue(db, cfg, said("pat", "I love green tea"))
    worker = await run_burst(cfg, pg_dsn, embedder)
    assert worker.jobs_failed == 0
    active = sorted(
        r["text"] for r in await db.fetch("SELECT text FROM memory_facts WHERE status = 'active'")
    )
    assert active == ["Likes green tea", "Plays the cello", "Works at Apple"]
    assert await db.fetchval("SELECT count(*) FROM memory_facts WHERE status = 'deleted'") == 1
    assert await db.fetchval("SELECT count(*) FROM memory_facts WHERE status = 'superseded'") == 1


async def test_an_extraction_while_its_users_chain_runs_gets_the_next_windows_chain(redis_url: str) -> None:
    from arq.jobs import Job, JobStatus

    from worker.tasks import chain

    cfg = make_config(redis={"url": redis_url}, worker={"chain_window": 60.0})
    redis = queue.connect(cfg.redis)
    ctx = {"redis": redis, "config": cfg}
    user = str(new_id())
    if time.time() % 60 > 58:
        await asyncio.sleep(2.5)  # the whole test in one window
    window = int(time.time() // 60)
    prefix = f"run_deduplication:{DEFAULT_TENANT_ID}:{user}"
    try:
        await chain(ctx, "run_deduplication", str(DEFAULT_TENANT_ID), user_id=user)
        await chain(ctx, "run_deduplication", str(DEFAULT_TENANT_ID), user_id=user)  # shares the waiting job
        assert await redis.zcard(redis.default_queue_name) == 1
        # A worker takes the job (arq marks it in progress): it may have read the user's facts already, so
        # the next extraction's chain is the next window's job, which waits for its window to open.
        await redis.psetex(f"arq:in-progress:{prefix}:{window}", 60_000, b"1")
        await chain(ctx, "run_deduplication", str(DEFAULT_TENANT_ID), user_id=user)
        following = Job(f"{prefix}:{window + 1}", redis, _queue_name=redis.default_queue_name)
        assert await following.status() == JobStatus.deferred
        assert await redis.zscore(redis.default_queue_name, f"{prefix}:{window + 1}") == (window + 1) * 60_000
    finally:
        await redis.aclose(close_connection_pool=True)
