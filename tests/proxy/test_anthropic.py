"""``/anthropic/v1/messages`` through the proxy, driven by the official ``anthropic`` SDK, unchanged, with
``base_url`` set as ``ANTHROPIC_BASE_URL`` would.

The fake upstream speaks Anthropic's wire format (:mod:`tests.support.anthropic_fake`).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from proxy.memory_block import CLOSE, OPEN
from tests.support import anthropic_fake
from tests.support.blocks import remember
from tests.support.db import fetch_sync
from tests.support.keys import ADMIN, new_key
from tests.support.recorded import chat_logs as logs
from tests.support.recorded import sent
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("db")

DENVER = {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"}
SERVER_ANTHROPIC_KEY = "sk-ant-server-side"


@pytest.fixture
def proxy(start_proxy: ProxyFactory) -> ServerThread:
    """The proxy, with a recall budget no loaded machine misses: these tests are about what is sent and
    kept (the budget is tested in test_outage.py), and a cold embedder's first batch can take 150 ms."""
    return start_proxy(memory={"recall_timeout": 5.0})


@pytest.fixture
def http(proxy: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        yield client


@pytest.fixture
def claude(proxy: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=f"{proxy.url}/anthropic", api_key="sk-ant-client", max_retries=0
    ) as client:
        yield client


def credential(headers: dict[str, str]) -> str | None:
    """The Anthropic credential a request carries: ``x-api-key``, or a bearer token (SDKs send either)."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    bearer = headers.get("authorization", "")
    return bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None


def the_block(text: str) -> str:
    assert text.count(OPEN) == 1
    return text[text.index(OPEN) : text.index(CLOSE) + len(CLOSE)]


SYSTEM = [{"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}}]


def test_the_block_is_a_text_block_of_the_latest_turn_and_the_tee_keeps_the_users_words(
    http: httpx.Client, claude: anthropic.Anthropic, fake: FakeUpstream, pg_dsn: str
) -> None:
    remember(http, "alice", DENVER)
    raw = claude.messages.with_raw_response.create(
        model="claude-fake",
        max_tokens=100,
        system=SYSTEM,  # type: ignore[arg-type]
        metadata={"user_id": "alice"},
        messages=[{"role": "user", "content": "Where do I live?"}],
    )
    message = raw.parse()
    assert message.content[0].text == anthropic_fake.REPLY  # type: ignore[union-attr]
    assert raw.headers["request-id"] == "req_fake_anthropic"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert raw.headers["x-memoire-recalled"] == "1"
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert credential(request.headers) == "sk-ant-client"  # the client's own key, as its SDK sent it
    assert request.headers["anthropic-version"]
    body = sent(fake)
    assert body["system"] == SYSTEM  # the cached prefix, untouched
    [turn] = body["messages"]
    ours, theirs = turn["content"]
    assert '"Lives in Denver"' in the_block(ours["text"])
    assert theirs == {"type": "text", "text": "Where do I live?"}

    [log] = logs(pg_dsn, 1)
    assert log["endpoint"] == "/anthropic/v1/messages"
    assert log["user"] == "alice"
    assert log["messages"] == [{"role": "user", "content": "Where do I live?"}]
    assert log["reply"] == {"role": "assistant", "content": anthropic_fake.REPLY}
    assert log["usage"]["output_tokens"] == 7


def test_a_stream_is_relayed_event_for_event_and_thinking_is_not_stored(
    claude: anthropic.Anthropic, fake: FakeUpstream, pg_dsn: str
) -> None:
    with claude.messages.stream(
        model="claude-thinking",
        max_tokens=100,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
        extra_headers={"x-fake-chunks": "4", "x-memoire-user": "bob"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert "thinking" in kinds
    assert kinds[-1] == "message_stop"
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[1].text == "part0 part1 part2 part3 "  # type: ignore[union-attr]
    [log] = logs(pg_dsn, 1)
    assert log["user"] == "bob"
    assert log["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
    assert log["reply"] == {"role": "assistant", "content": "part0 part1 part2 part3 "}
    assert anthropic_fake.THOUGHT not in json.dumps(log)
    assert log["usage"] == {"input_tokens": 5, "output_tokens": 4}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_is_teed_as_tool_calls(
    claude: anthropic.Anthropic, fake: FakeUpstream, pg_dsn: str, stream: bool
) -> None:
    ask = [{"role": "user", "content": "Weather in Denver?"}]
    if stream:
        with claude.messages.stream(model="claude-tools", max_tokens=100, messages=ask) as events:  # type: ignore[arg-type]
            final = events.get_final_message()
    else:
        final = claude.messages.create(model="claude-tools", max_tokens=100, messages=ask)  # type: ignore[arg-type]
    assert final.content[1].type == "tool_use"
    [log] = logs(pg_dsn, 1)
    [call] = log["reply"]["tool_calls"]
    assert log["reply"]["content"] == "Let me look."
    assert call["id"] == "toolu_01"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Denver"}


def test_in_a_tool_loop_the_block_follows_the_tool_results_and_recall_asks_the_question(
    http: httpx.Client, claude: anthropic.Anthropic, fake: FakeUpstream, pg_dsn: str
) -> None:
    remember(http, "carol", DENVER)
    claude.messages.create(
        model="claude-fake",
        max_tokens=100,
        metadata={"user_id": "carol"},
        messages=[
            {"role": "user", "content": "What is the weather where I live?"},
            {"role": "assistant", "content": [{"type": "tool_use", **anthropic_fake.TOOL}]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny"}],
            },
        ],
    )
    latest = sent(fake)["messages"][-1]["content"]
    assert latest[0]["type"] == "tool_result"  # the API wants results first
    assert '"Lives in Denver"' in the_block(latest[1]["text"])
    assert sent(fake)["messages"][0] == {"role": "user", "content": "What is the weather where I live?"}
    [log] = logs(pg_dsn, 1)
    assert log["messages"] == [{"role": "tool", "tool_call_id": "toolu_01", "content": "Sunny"}]


def test_a_growing_conversation_keeps_everything_before_the_block(
    http: httpx.Client, fake: FakeUpstream
) -> None:
    """Sent as the provider reads the prompt (tools, system, messages), each call's bytes up to its latest
    turn are the next call's: tools, system and history stay cached."""
    remember(http, "dan", DENVER)
    tools = [{"name": "weather", "description": "The weather in a city.", "input_schema": {"type": "object"}}]
    history: list[dict[str, Any]] = [{"role": "user", "content": "Where do I live?"}]
    replies = ["In Denver.", "Sunny, 20 °C."]
    questions = ["And what is the weather like there?", "Should I take a coat?"]
    bodies: list[bytes] = []
    for n in range(3):
        raw = json.dumps(
            {"model": "claude-fake", "max_tokens": 50, "tools": tools, "system": SYSTEM,
             "metadata": {"user_id": "dan"}, "messages": history},
        ).encode()  # fmt: skip
        headers = {"x-api-key": "sk", "anthropic-version": "2023-06-01", "content-type": "application/json"}
        answer = http.post("/anthropic/v1/messages", content=raw, headers=headers)
        assert answer.status_code == 200
        bodies.append(fake.requests[-1].body)
        if n < 2:
            history = [
                *history,
                {"role": "assistant", "content": replies[n]},
                {"role": "user", "content": questions[n]},
            ]
    for before, after in itertools.pairwise(bodies):
        latest = before.rindex(b'{"role":"user"')
        assert after.startswith(before[:latest])  # tools, system and the history before the latest turn
        assert OPEN.encode() in before[latest:]  # the block is in the latest turn, past the shared prefix
        assert OPEN.encode() not in after[:latest]


def test_a_breakpoint_in_the_latest_turn_keeps_the_block_behind_it(
    http: httpx.Client, claude: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    remember(http, "dana", DENVER)
    turn = [
        {"type": "text", "text": "Here is my long file.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "What does it do?"},
    ]
    claude.messages.create(model="claude-fake", max_tokens=50, metadata={"user_id": "dana"},
                           messages=[{"role": "user", "content": turn}])  # type: ignore[typeddict-item]  # fmt: skip
    latest = sent(fake)["messages"][-1]["content"]
    assert latest[0] == turn[0]  # the entry cached at the breakpoint does not hold the block
    assert OPEN in latest[1]["text"]
    assert latest[2] == turn[1]


def test_system_placement_goes_after_the_last_cache_breakpoint(
    start_proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    proxy = start_proxy(memory={"placement": "system", "recall_timeout": 5.0})
    system = [SYSTEM[0], {"type": "text", "text": "Today is Monday."}]
    with httpx.Client(base_url=proxy.url) as http:
        remember(http, "erin", DENVER)
        with anthropic.Anthropic(
            base_url=f"{proxy.url}/anthropic", api_key="sk-ant", max_retries=0
        ) as claude:
            claude.messages.create(
                model="claude-fake",
                max_tokens=50,
                system=system,  # type: ignore[arg-type]
                metadata={"user_id": "erin"},
                messages=[{"role": "user", "content": "Where do I live?"}],
            )
    body = sent(fake)
    assert body["messages"] == [{"role": "user", "content": "Where do I live?"}]
    assert body["system"][0] == SYSTEM[0]
    assert OPEN in body["system"][1]["text"]
    assert body["system"][2] == system[1]


def test_upstream_errors_come_back_verbatim(claude: anthropic.Anthropic, pg_dsn: str) -> None:
    ask = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="claude-error-429", max_tokens=10, messages=ask)  # type: ignore[arg-type]
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body == anthropic_fake.error(429)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="claude-error-400", max_tokens=10, messages=ask)  # type: ignore[arg-type]
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model="claude-error-529", max_tokens=10, messages=ask)  # type: ignore[arg-type]
    assert overloaded.value.status_code == 529
    assert fetch_sync(pg_dsn, "SELECT count(*) FROM chat_logs")[0][0] == 0


def test_the_proxys_own_errors_are_in_anthropics_shape(http: httpx.Client, fake: FakeUpstream) -> None:
    bad = http.post(
        "/anthropic/v1/messages", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["type"] == "error"
    assert bad.json()["error"]["type"] == "invalid_request_error"
    missing = http.post("/anthropic/v1/messages", json={"model": "claude-fake", "max_tokens": 5})
    assert missing.status_code == 400
    assert "messages" in missing.json()["error"]["message"]
    outside = http.get("/anthropic/v1/%2e%2e/%2e%2e/v1/admin/keys")
    assert outside.status_code == 400
    assert outside.json()["error"]["type"] == "invalid_request_error"
    assert http.get("/anthropic/other").json()["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


def test_count_tokens_and_models_pass_through(claude: anthropic.Anthropic, fake: FakeUpstream) -> None:
    counted = claude.messages.count_tokens(
        model="claude-fake", messages=[{"role": "user", "content": "hello"}]
    )
    assert counted.input_tokens > 0
    assert fake.requests[-1].path == "/v1/messages/count_tokens"
    assert [m.id for m in claude.models.list()] == ["claude-fake"]


def test_a_client_that_leaves_mid_stream_cancels_the_upstream(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    with (
        httpx.Client(base_url=proxy.url, timeout=30) as http,
        http.stream(
            "POST",
            "/anthropic/v1/messages",
            json={
                "model": "claude-fake",
                "max_tokens": 5,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-fake-chunks": "50", "x-fake-interval": "0.1", "x-api-key": "sk-ant"},
        ) as response,
    ):
        for line in response.iter_lines():
            if "text_delta" in line:
                break
    wait_until(lambda: fake.cancelled == 1)


def test_a_coding_agents_request_passes_unchanged_but_for_the_block(
    http: httpx.Client, claude: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    remember(http, "dev", DENVER)
    system = [
        {"type": "text", "text": "You are a coding agent. " * 4000, "cache_control": {"type": "ephemeral"}}
    ]
    tools = [
        {"name": f"tool_{i}", "description": f"Tool number {i}. " * 20,
         "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
        for i in range(60)
    ]  # fmt: skip
    image = base64.b64encode(bytes(range(256)) * 4096).decode()  # 1 MiB
    history: list[dict[str, Any]] = []
    for i in range(30):
        history += [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}",
                                          "content": "x" * 2000}]}
            if i
            else {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                {"type": "text", "text": "Where do I live? Fix the bug in this screenshot."},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{i + 1}", "name": "tool_1",
                                                "input": {"path": f"src/file_{i}.py"}}]},
        ]  # fmt: skip
    history.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_30", "content": "ok"}]}
    )
    claude.messages.create(
        model="claude-fake",
        max_tokens=1000,
        system=system,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
        messages=history,  # type: ignore[arg-type]
        metadata={"user_id": "dev"},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    request = fake.requests[-1]
    assert request.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    body = request.json()
    latest = body["messages"][-1]["content"]
    assert '"Lives in Denver"' in the_block(latest[1]["text"])  # the question was the first turn's
    del latest[1]
    assert body == {
        "model": "claude-fake",
        "max_tokens": 1000,
        "system": system,
        "tools": tools,
        "messages": history,
        "metadata": {"user_id": "dev"},
    }


class TestKeys:
    """Both ways of naming the Mémoire key, and the ``mk_`` key never going upstream."""

    @pytest.fixture
    def server(self, start_proxy: ProxyFactory) -> ServerThread:
        return start_proxy(
            auth={"enabled": True, "admin_key": ADMIN}, upstream={"anthropic_api_key": SERVER_ANTHROPIC_KEY}
        )

    @pytest.fixture
    def key(self, server: ServerThread) -> str:
        with httpx.Client(base_url=server.url) as http:
            return new_key(http, "agent")

    def test_an_mk_key_as_x_api_key_or_bearer_sends_the_servers_key(
        self, server: ServerThread, key: str, fake: FakeUpstream
    ) -> None:
        ask = [{"role": "user", "content": "hi"}]
        for client in (
            anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key=key, max_retries=0),
            anthropic.Anthropic(base_url=f"{server.url}/anthropic", auth_token=key, max_retries=0),
        ):
            client.messages.create(model="claude-fake", max_tokens=10, messages=ask)  # type: ignore[arg-type]
            headers = fake.requests[-1].headers
            assert headers["x-api-key"] == SERVER_ANTHROPIC_KEY
            assert "authorization" not in headers
            assert key not in json.dumps(headers)
        # Coding agents that send the key as x-api-key, as Anthropic's API documents it.
        with httpx.Client(base_url=server.url) as http:
            response = http.post(
                "/anthropic/v1/messages",
                json={"model": "claude-fake", "max_tokens": 10, "messages": ask},
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
            )
        assert response.status_code == 200
        assert fake.requests[-1].headers["x-api-key"] == SERVER_ANTHROPIC_KEY
        assert fake.requests[-1].headers["anthropic-version"] == "2023-06-01"

    def test_the_clients_own_key_with_x_memoire_key_passes_untouched(
        self, server: ServerThread, key: str, fake: FakeUpstream
    ) -> None:
        client = anthropic.Anthropic(
            base_url=f"{server.url}/anthropic", api_key="sk-ant-own", default_headers={"X-Memoire-Key": key},
            max_retries=0,
        )  # fmt: skip
        client.messages.create(
            model="claude-fake", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        assert credential(fake.requests[-1].headers) == "sk-ant-own"
        assert not any(name.startswith("x-memoire") for name in fake.requests[-1].headers)

    def test_without_a_key_the_error_is_anthropics(self, server: ServerThread, fake: FakeUpstream) -> None:
        client = anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key="sk-ant-own", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as refused:
            client.messages.create(
                model="claude-fake", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert fake.requests == []

    def test_with_the_servers_key_only_stateless_routes_pass(
        self, server: ServerThread, key: str, fake: FakeUpstream
    ) -> None:
        client = anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key=key, max_retries=0)
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            client.messages.batches.list()
        assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert fake.requests == []
        client.messages.count_tokens(model="claude-fake", messages=[{"role": "user", "content": "hello"}])
        assert fake.requests[-1].headers["x-api-key"] == SERVER_ANTHROPIC_KEY
