"""The Python SDK against a live server: explicit calls, and wrapped OpenAI and Anthropic clients (sync and
async, streamed and not) calling fake providers directly; then with Mémoire stopped or hanging."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from memoire import Memoire, MemoireAPIError, rules
from proxy.memory_block import OPEN
from tests.support.anthropic_fake import REPLY as ANTHROPIC_REPLY
from tests.support.db import fetch_sync
from tests.support.keys import ADMIN, new_key
from tests.support.life import LIFE
from tests.support.responses_fake import TEXT as RESPONSES_TEXT
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.usefixtures("db")

DENVER = {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"}
ASK = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Where do I live?"}]


@pytest.fixture
def server(start_proxy: ProxyFactory) -> ServerThread:
    return start_proxy(auth={"enabled": True, "admin_key": ADMIN})


@pytest.fixture
def key(server: ServerThread) -> str:
    with httpx.Client(base_url=server.url) as http:
        return new_key(http, "sdk")


@pytest.fixture
def memoire(server: ServerThread, key: str) -> Iterator[Memoire]:
    # These tests are about what a wrapped call sends and keeps, not about the recall budget (see
    # test_a_hanging_memoire_costs_at_most_the_recall_budget): a loaded CI machine must not drop the block.
    client = Memoire(api_key=key, base_url=f"{server.url}/v1", recall_timeout=2.0)
    yield client
    client.close()


def logs(pg_dsn: str) -> list[dict[str, Any]]:
    rows = fetch_sync(pg_dsn, "SELECT source, messages FROM chat_logs ORDER BY occurred_at")
    return [{"source": r["source"], "messages": json.loads(r["messages"])} for r in rows]


def sent_system(fake: FakeUpstream) -> str:
    body = fake.requests[-1].json()
    if "max_tokens" in body:  # Anthropic: a text block of the latest user message
        latest = body["messages"][-1]["content"]
        held = [p["text"] for p in latest if isinstance(latest, list) and OPEN in p.get("text", "")]
        return held[0] if held else ""
    held = [m for m in body["messages"] if m["role"] == "system" and OPEN in str(m["content"])]
    return str(held[0]["content"]) if held else ""


def test_explicit_calls(
    memoire: Memoire, monkeypatch: pytest.MonkeyPatch, key: str, server: ServerThread
) -> None:
    [added] = memoire.facts.create("ana", [DENVER])
    assert added["outcome"] == "added"
    assert memoire.facts.get(added["id"])["text"] == "Lives in Denver"
    assert [f["text"] for f in memoire.recall("ana", "where does she live")] == ["Lives in Denver"]
    assert memoire.facts.update(added["id"], importance=0.9)["importance"] == 0.9
    assert [f["id"] for f in memoire.facts.list("ana")["facts"]] == [added["id"]]
    assert len(memoire.facts.history(added["id"])) == 1
    assert memoire.users.profile("ana")["core"][0]["text"] == "Lives in Denver"
    assert memoire.ingest("ana", [{"role": "user", "content": "I like jazz"}])["status"] == "accepted"
    with pytest.raises(MemoireAPIError) as bad:
        memoire.facts.create("ana", [{"text": ""}])
    assert (bad.value.status, bad.value.param) == (400, "facts[0].text")
    memoire.facts.delete(added["id"])
    assert memoire.users.delete("ana")["verified"] is True
    # The key comes from MEMOIRE_API_KEY when none is given.
    monkeypatch.setenv("MEMOIRE_API_KEY", key)
    with Memoire(base_url=server.url) as from_env:
        assert from_env.facts.create("bo", [DENVER])[0]["outcome"] == "added"


async def test_explicit_calls_async(memoire: Memoire) -> None:
    [added] = await memoire.facts.acreate("ana", [DENVER])
    assert (await memoire.facts.aget(added["id"]))["text"] == "Lives in Denver"
    assert [f["text"] for f in await memoire.arecall("ana", "where does she live")] == ["Lives in Denver"]
    assert (await memoire.facts.aupdate(added["id"], importance=0.2))["importance"] == 0.2
    assert len((await memoire.facts.alist("ana"))["facts"]) == 1
    assert (await memoire.users.aprofile("ana"))["facts"] == {"active": 1}
    assert (await memoire.aingest("ana", [{"role": "user", "content": "hi"}]))["status"] == "accepted"
    await memoire.facts.adelete(added["id"])
    assert (await memoire.users.adelete("ana"))["deleted"]["facts"] == 0
    await memoire.aclose()


def test_wrapped_openai_recalls_injects_and_ingests(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    memoire.facts.create("ana", [DENVER])
    client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
    reply = client.chat.completions.create(model="fake-chat", messages=ASK, user="ana")
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    system = sent_system(fake)
    assert system.startswith(OPEN)
    assert '"Lives in Denver"' in system
    # By the proxy's rule: the app's system prompt untouched, the block just before the latest question.
    sent = fake.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user"]
    assert sent[0] == ASK[0]
    assert sent[2] == ASK[-1]
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-app"

    stream = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "Denver weather?"}], stream=True,
        extra_headers={"X-Memoire-User": "ana", "X-Memoire-Session": "s1"},
    )  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "part0 part1 part2 "
    assert not any(k.startswith("x-memoire") for k in fake.requests[-1].headers)
    assert OPEN in fake.requests[-1].json()["messages"][0]["content"]
    # Everything else on the client is the client's own.
    assert client.models.list().data[0].id == "fake-chat"

    assert memoire.backlog.flush(10)
    stored = _wait_for_logs(pg_dsn, 2)
    assert [log["source"] for log in stored] == ["sdk", "sdk"]
    assert stored[0]["messages"] == [
        {"role": "user", "content": "Where do I live?"},
        {"role": "assistant", "content": "Hello from the fake upstream."},
    ]
    assert stored[1]["messages"][-1] == {"role": "assistant", "content": "part0 part1 part2 "}


async def test_wrapped_async_openai(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    await memoire.facts.acreate("ana", [DENVER])
    client = memoire.wrap(
        openai.AsyncOpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0), user_id="ana"
    )
    reply = await client.chat.completions.create(model="fake-chat", messages=ASK)
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    assert '"Lives in Denver"' in sent_system(fake)
    stream = await client.chat.completions.create(model="fake-chat", messages=ASK, stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "part0 part1 part2 "
    assert '"Lives in Denver"' in sent_system(fake)
    await client.close()
    await memoire.aclose()
    stored = await _await_logs(pg_dsn, 2)
    assert stored[1]["messages"][-1]["content"] == "part0 part1 part2 "


def test_wrapped_openai_responses(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    memoire.facts.create("ana", [DENVER])
    client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
    first = client.responses.create(
        model="fake-chat", input="Where do I live?", instructions="Be brief.", user="ana"
    )
    assert first.output_text == RESPONSES_TEXT
    sent = fake.requests[-1].json()
    # By the proxy's rule: a developer item just before the user's input, the instructions untouched.
    assert sent["instructions"] == "Be brief."
    assert [item["role"] for item in sent["input"]] == ["developer", "user"]
    assert '"Lives in Denver"' in sent["input"][0]["content"]
    # A continuation: the provider stores input items, so the block goes to the instructions.
    with client.responses.create(
        model="fake-chat",
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather in my city?"}]}],
        stream=True,
        extra_headers={"X-Memoire-User": "ana"},
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "part0 part1 part2 "
    sent = fake.requests[-1].json()
    assert len(sent["input"]) == 1
    assert '"Lives in Denver"' in sent["instructions"]
    assert not any(k.startswith("x-memoire") for k in fake.requests[-1].headers)

    assert memoire.backlog.flush(10)
    stored = _wait_for_logs(pg_dsn, 2)
    assert stored[0]["messages"] == [
        {"role": "user", "content": "Where do I live?"},
        {"role": "assistant", "content": RESPONSES_TEXT},
    ]
    assert stored[1]["messages"] == [
        {"role": "user", "content": "Weather in my city?"},
        {"role": "assistant", "content": "part0 part1 part2 "},
    ]


def test_wrapped_responses_history_sent_back_as_output_objects_is_not_recorded_again(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    client = memoire.wrap(
        openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0), user_id="ana"
    )
    history: list[Any] = [{"role": "user", "content": "I moved to Denver."}]
    first = client.responses.create(model="fake-chat", input=history, store=False)
    history += first.output  # the SDK's own objects, as OpenAI's docs keep a stateless conversation
    history.append({"role": "user", "content": "Where do I live?"})
    client.responses.create(model="fake-chat", input=history, store=False)
    assert memoire.backlog.flush(10)
    stored = _wait_for_logs(pg_dsn, 2)
    assert [m["content"] for m in stored[1]["messages"] if m["role"] == "user"] == ["Where do I live?"]


async def test_wrapped_async_openai_responses(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    await memoire.facts.acreate("ana", [DENVER])
    client = memoire.wrap(
        openai.AsyncOpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0), user_id="ana"
    )
    reply = await client.responses.create(model="fake-chat", input=[{"role": "user", "content": "Home?"}])
    assert reply.output_text == RESPONSES_TEXT
    assert '"Lives in Denver"' in fake.requests[-1].json()["input"][0]["content"]
    stream = await client.responses.create(model="fake-chat", input="And the weather?", stream=True)
    parts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(parts) == "part0 part1 part2 "
    await client.close()
    await memoire.aclose()
    stored = await _await_logs(pg_dsn, 2)
    assert stored[1]["messages"][-1]["content"] == "part0 part1 part2 "


def test_wrapped_anthropic(memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str) -> None:
    memoire.facts.create("ana", [DENVER])
    client = memoire.wrap(
        anthropic.Anthropic(base_url=upstream_url.removesuffix("/v1"), api_key="sk-ant", max_retries=0)
    )
    question = [{"role": "user", "content": "Where do I live?"}]
    reply = client.messages.create(
        model="claude-fake", max_tokens=50, system="Be brief.", messages=question, metadata={"user_id": "ana"}
    )
    assert reply.content[0].text == ANTHROPIC_REPLY
    system = sent_system(fake)
    assert system.startswith(OPEN)
    assert '"Lives in Denver"' in system
    sent = fake.requests[-1].json()
    assert sent["system"] == "Be brief."  # the cached prefix stays the app's own
    assert sent["messages"][-1]["content"][1] == {"type": "text", "text": "Where do I live?"}
    stream = client.messages.create(
        model="claude-fake", max_tokens=50, messages=question, metadata={"user_id": "ana"}, stream=True
    )
    texts = [e.delta.text for e in stream if e.type == "content_block_delta"]
    assert "".join(texts) == "part0 part1 part2 "
    assert '"Lives in Denver"' in sent_system(fake)
    # In a tool loop the API wants the tool results first in their message: the block follows them.
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}
    use = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    loop = [
        *question,
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    client.messages.create(model="claude-fake", max_tokens=50, messages=loop, metadata={"user_id": "ana"})
    sent_loop = fake.requests[-1].json()["messages"]
    assert sent_loop[:2] == loop[:2]
    assert sent_loop[2]["content"][0] == result
    assert sent_loop[2]["content"][1]["text"].startswith(OPEN)
    assert memoire.backlog.flush(10)
    stored = _wait_for_logs(pg_dsn, 2)
    assert stored[0]["messages"] == [
        {"role": "user", "content": "Where do I live?"},  # the user's words, never the block
        {"role": "assistant", "content": ANTHROPIC_REPLY},
    ]
    assert stored[1]["messages"][-1] == {"role": "assistant", "content": "part0 part1 part2 "}


async def test_wrapped_async_anthropic(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str, pg_dsn: str
) -> None:
    await memoire.facts.acreate("ana", [DENVER])
    client = memoire.wrap(
        anthropic.AsyncAnthropic(base_url=upstream_url.removesuffix("/v1"), api_key="sk-ant", max_retries=0),
        user_id="ana",
    )
    question = [{"role": "user", "content": "Where do I live?"}]
    reply = await client.messages.create(model="claude-fake", max_tokens=50, messages=question)
    assert reply.content[0].text == ANTHROPIC_REPLY
    assert '"Lives in Denver"' in sent_system(fake)
    stream = await client.messages.create(model="claude-fake", max_tokens=50, messages=question, stream=True)
    texts = [e.delta.text async for e in stream if e.type == "content_block_delta"]
    assert "".join(texts) == "part0 part1 part2 "
    await client.close()
    await memoire.aclose()
    stored = await _await_logs(pg_dsn, 2)
    assert stored[1]["messages"][-1]["content"] == "part0 part1 part2 "


def test_with_memoire_stopped_calls_go_ahead_and_exchanges_land_once_it_is_back(
    start_proxy: ProxyFactory,
    fake: FakeUpstream,
    upstream_url: str,
    pg_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = start_proxy(auth={"enabled": True, "admin_key": ADMIN})
    with httpx.Client(base_url=first.url) as http:
        key = new_key(http, "sdk")
    port = first.port
    first.stop()

    memoire = Memoire(api_key=key, base_url=f"http://127.0.0.1:{port}")
    client = memoire.wrap(
        openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0), user_id="ana"
    )
    caplog.set_level(logging.INFO, logger="memoire.sdk")
    for i in range(3):
        started = time.perf_counter()
        reply = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": f"hi {i}"}]
        )
        elapsed = time.perf_counter() - started
        assert reply.choices[0].message.content == "Hello from the fake upstream."
        assert fake.requests[-1].json()["messages"] == [{"role": "user", "content": f"hi {i}"}]
        assert elapsed < memoire.recall_timeout + 0.5, elapsed
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if w.startswith("Mémoire recall failed")]) == 1
    assert len([w for w in warnings if w.startswith("Mémoire ingestion failed")]) <= 1
    assert len(memoire.backlog) == 3

    start_proxy(port=port, auth={"enabled": True, "admin_key": ADMIN})
    assert memoire.backlog.flush(30)
    stored = _wait_for_logs(pg_dsn, 2)
    assert sorted(log["messages"][0]["content"] for log in stored) == ["hi 0", "hi 1", "hi 2"]
    memoire.close()


def test_a_hanging_memoire_costs_at_most_the_recall_budget(fake: FakeUpstream, upstream_url: str) -> None:
    with socket.socket() as hole:  # accepts connections, never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        memoire = Memoire(
            api_key="mk_x", base_url=f"http://127.0.0.1:{hole.getsockname()[1]}", recall_timeout=0.1
        )
        client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
        started = time.perf_counter()
        reply = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi"}]
        )
        elapsed = time.perf_counter() - started
        assert reply.choices[0].message.content == "Hello from the fake upstream."
        assert elapsed < 0.1 + 0.5, elapsed
        memoire.close(flush=0)  # nothing answers there


def test_wrap_refuses_what_it_cannot_wrap(memoire: Memoire) -> None:
    with pytest.raises(TypeError, match="cannot wrap"):
        memoire.wrap(httpx.Client())


def _wait_for_logs(pg_dsn: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = logs(pg_dsn)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(json.dumps(logs(pg_dsn)))


async def _await_logs(pg_dsn: str, count: int) -> list[dict[str, Any]]:
    import asyncio

    return await asyncio.to_thread(_wait_for_logs, pg_dsn, count)


async def test_an_async_stream_closes_like_the_providers_own(
    memoire: Memoire, upstream_url: str, pg_dsn: str
) -> None:
    client = memoire.wrap(
        openai.AsyncOpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0), user_id="cy"
    )
    stream = await client.chat.completions.create(model="fake-chat", messages=ASK, stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    await stream.close()
    async with await client.chat.completions.create(model="fake-chat", messages=ASK, stream=True) as managed:
        assert [c async for c in managed]
    await client.close()
    await memoire.aclose()
    assert len(await _await_logs(pg_dsn, 2)) == 2


def test_what_the_sdk_cannot_read_never_breaks_the_call(memoire: Memoire, upstream_url: str) -> None:
    client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk", max_retries=0))
    reply = client.chat.completions.create(
        model="fake-null-message", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message is None


def test_memoire_headers_set_on_the_client_never_reach_the_provider(
    memoire: Memoire, key: str, fake: FakeUpstream, upstream_url: str
) -> None:
    provider = openai.OpenAI(
        base_url=upstream_url,
        api_key="sk-app",
        max_retries=0,
        default_headers={"X-Memoire-Key": key, "X-Team": "a"},
    )
    client = memoire.wrap(provider)
    client.chat.completions.create(model="fake-chat", messages=ASK)
    sent = fake.requests[-1].headers
    assert "x-memoire-key" not in sent
    assert key not in json.dumps(sent)
    assert sent["x-team"] == "a"


def test_a_refused_exchange_is_logged_once(
    server: ServerThread, fake: FakeUpstream, upstream_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="memoire.sdk")
    with Memoire(api_key="mk_" + "x" * 43, base_url=server.url) as revoked:
        client = revoked.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
        for _ in range(3):
            assert client.chat.completions.create(model="fake-chat", messages=ASK).choices
        assert revoked.backlog.flush(10)
    assert len([r for r in caplog.records if "refused an exchange" in r.message]) == 1


def test_forgetting_a_user_with_a_slash_in_the_id_and_its_unsent_exchanges(
    memoire: Memoire, pg_dsn: str
) -> None:
    memoire.facts.create("team/ana", [DENVER])
    memoire.backlog.close()  # nothing is sent from here on: what is queued stays queued
    memoire.remember_later("team/ana", [{"role": "user", "content": "secret"}])
    memoire.remember_later("bob", [{"role": "user", "content": "hello"}])
    deleted = memoire.users.delete("team/ana")
    assert deleted["deleted"]["facts"] == 1
    assert deleted["verified"] is True
    assert len(memoire.backlog) == 1
    assert fetch_sync(pg_dsn, "SELECT count(*) AS n FROM users WHERE external_id = 'team/ana'")[0]["n"] == 0


def test_a_user_id_too_long_to_store_is_named_as_the_proxy_names_it(
    memoire: Memoire, upstream_url: str, pg_dsn: str
) -> None:
    client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
    client.chat.completions.create(model="fake-chat", messages=ASK, user="u" * 300)
    assert memoire.backlog.flush(10)
    _wait_for_logs(pg_dsn, 1)
    [name] = [r["external_id"] for r in fetch_sync(pg_dsn, "SELECT external_id FROM users")]
    assert name == rules.storable("u" * 300)
    assert len(name) == 256


def test_a_wrapped_follow_up_is_recalled_with_the_turn_it_refers_to(
    memoire: Memoire, fake: FakeUpstream, upstream_url: str
) -> None:
    for start in range(0, len(LIFE), 20):
        memoire.facts.create("zoe", [{"text": text} for text in LIFE[start : start + 20]])
    client = memoire.wrap(openai.OpenAI(base_url=upstream_url, api_key="sk-app", max_retries=0))
    friend, mother = '"Best friend is Joana, a pharmacist"', '"Mother is a retired teacher"'
    conversation = [
        {"role": "user", "content": "My best friend Joana is coming over tonight"},
        {"role": "assistant", "content": "Have a lovely evening!"},
        {"role": "user", "content": "What does she do?"},
    ]
    client.chat.completions.create(model="fake-chat", messages=conversation, user="zoe")
    system = sent_system(fake)
    assert system.index(friend) < system.index(mother)
    # The explicit call takes the same context.
    block = memoire.context("zoe", "What does she do?", context=[conversation[0]["content"]])["block"]
    assert block.index(friend) < block.index(mother)
    alone = memoire.context("zoe", "What does she do?")["block"]
    assert alone.index(mother) < alone.index(friend)


ROOT = Path(__file__).resolve().parents[2]
#: Run in a venv that holds the SDK alone and the one provider client an app brings: a wrapped call, then
#: which server packages got imported on the way.
SDK_ONLY_APP = """
import json, sys
from memoire import Memoire

provider, base, key, upstream, server = sys.argv[1:6]
memoire = Memoire(api_key=key, base_url=base, recall_timeout=2.0)
if provider == "openai":
    import openai

    client = memoire.wrap(openai.OpenAI(base_url=upstream, api_key="sk-app", max_retries=0))
    reply = client.chat.completions.create(
        model="fake-chat", user="ana",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Where do I live?"},
        ],
    ).choices[0].message.content
else:
    import anthropic

    client = memoire.wrap(
        anthropic.Anthropic(base_url=upstream.removesuffix("/v1"), api_key="sk-ant", max_retries=0)
    )
    reply = client.messages.create(
        model="claude-fake", max_tokens=50, metadata={"user_id": "ana"},
        messages=[{"role": "user", "content": "Where do I live?"}],
    ).content[0].text
assert memoire.backlog.flush(10)
loaded = {name.split(".")[0] for name in sys.modules}
print(json.dumps({"reply": reply, "server_modules": sorted(loaded & set(server.split(",")))}))
"""


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "-q", *args], check=True, timeout=600)


@pytest.mark.timeout(900)
def test_the_sdk_installs_alone_and_wraps_both_providers(
    memoire: Memoire, key: str, server: ServerThread, fake: FakeUpstream, upstream_url: str, pg_dsn: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server_deps = {_dist(req) for req in project["optional-dependencies"]["server"]}
    # Built from a copy of what the package holds: a build/ left in the checkout may hold stale modules.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    )
    _pip(Path(sys.executable), "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source))
    [wheel] = tmp_path.glob("memoire-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip(python, "install", str(wheel))
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, timeout=120
    )
    installed = {_dist(d["name"]) for d in json.loads(listed.stdout)}
    assert "httpx" in installed
    assert not installed & server_deps, "the SDK alone pulled in server dependencies"
    # What an app brings itself, then a wrapped call of each.
    memoire.facts.create("ana", [DENVER])
    # The provider clients are the app's own; nothing else of the server may load.
    own = {"openai", "anthropic"}
    packages = {"proxy", "memory", "worker", "stack", *(d.replace("-", "_") for d in server_deps - own)}

    def call(provider: str) -> dict[str, Any]:
        args = [provider, f"{server.url}/v1", key, upstream_url, ",".join(sorted(packages))]
        ran = subprocess.run(
            [str(python), "-c", SDK_ONLY_APP, *args], check=True, capture_output=True, text=True, timeout=120,
            cwd=tmp_path,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(ran.stdout)
        assert result["server_modules"] == []
        return result

    # An app with OpenAI's SDK only (Anthropic's is not installed), then one with Anthropic's too.
    _pip(python, "install", "openai")
    assert call("openai")["reply"] == "Hello from the fake upstream."
    chat_call = fake.requests[-1].json()
    assert [m["role"] for m in chat_call["messages"]] == ["system", "system", "user"]
    assert '"Lives in Denver"' in chat_call["messages"][1]["content"]
    _pip(python, "install", "anthropic")
    assert call("anthropic")["reply"] == ANTHROPIC_REPLY
    assert '"Lives in Denver"' in fake.requests[-1].json()["messages"][-1]["content"][0]["text"]
    assert len(_wait_for_logs(pg_dsn, 2)) == 2


def _dist(requirement: str) -> str:
    """A distribution's normalised name, from a requirement or a listed name."""
    name = requirement.split(";")[0].split("[")[0]
    for mark in "<>=!~ ":
        name = name.split(mark)[0]
    return name.strip().lower().replace("_", "-")
