"""``POST /v1/responses`` through the proxy, driven by the official ``openai`` SDK, unchanged.

The fake upstream speaks the Responses API's wire format (:mod:`tests.support.responses_fake`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy import responses_reply
from proxy.memory_block import OPEN
from tests.support import responses_fake
from tests.support.blocks import block_of, remember
from tests.support.db import fetch_sync
from tests.support.keys import ADMIN, SERVER_PROVIDER_KEY, new_key
from tests.support.recorded import chat_logs as logs
from tests.support.recorded import sent
from tests.support.servers import ProxyFactory, ServerThread
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("db")

DENVER = {"text": "Lives in Denver", "slot": "home_city", "value": "Denver"}


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
def sdk(proxy: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-client", max_retries=0) as client:
        yield client


def test_a_plain_call_gets_the_block_as_a_developer_item_and_is_teed_without_it(
    http: httpx.Client, sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    remember(http, "alice", DENVER)
    raw = sdk.responses.with_raw_response.create(
        model="fake-chat", input="Where do I live?", user="alice", instructions="Be brief."
    )
    response = raw.parse()
    assert response.output_text == responses_fake.TEXT
    assert raw.headers["x-memoire-recalled"] == "1"
    assert raw.headers["x-request-id"] == "req_fake_123"
    body = sent(fake)
    assert body["instructions"] == "Be brief."  # the client's instructions, untouched
    developer, user = body["input"]
    assert developer["role"] == "developer"
    assert '"Lives in Denver"' in block_of(developer)
    assert user == {"role": "user", "content": "Where do I live?"}

    [log] = logs(pg_dsn, 1)
    assert log["endpoint"] == "/v1/responses"
    assert log["user"] == "alice"
    assert log["messages"] == [{"role": "user", "content": "Where do I live?"}]
    assert log["reply"] == {"role": "assistant", "content": responses_fake.TEXT}
    assert log["usage"]["total_tokens"] == 18
    assert log["session"] == response.id  # the first response of a chain names its session


def test_a_stream_is_relayed_event_for_event_and_teed_from_its_events(
    sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    with sdk.responses.create(
        model="fake-chat",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Tell me a story"}]}],
        stream=True,
        extra_headers={"x-fake-chunks": "4", "x-memoire-user": "bob"},
    ) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "part0 part1 part2 part3 "
    )
    [log] = logs(pg_dsn, 1)
    assert log["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Tell me a story"}]}]
    assert log["reply"] == {"role": "assistant", "content": "part0 part1 part2 part3 "}
    assert log["user"] == "bob"


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_are_teed_as_tool_calls(
    sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str, stream: bool
) -> None:
    if stream:
        with sdk.responses.create(model="fake-tools", input="Weather in Denver?", stream=True) as events:
            [done] = [e.response for e in events if e.type == "response.completed"]
    else:
        done = sdk.responses.create(model="fake-tools", input="Weather in Denver?")
    assert done.output[0].type == "function_call"
    [log] = logs(pg_dsn, 1)
    assert log["reply"]["tool_calls"] == [
        {
            "id": responses_fake.CALL["call_id"],
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Denver"}'},
        }
    ]


def test_a_continuation_puts_the_block_in_instructions_and_joins_the_session(
    http: httpx.Client, sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    remember(http, "carol", DENVER)
    first = sdk.responses.create(model="fake-chat", input="Hi, I am Carol.", user="carol")
    second = sdk.responses.create(
        model="fake-chat",
        previous_response_id=first.id,
        instructions="Answer in French.",
        input=[{"role": "user", "content": "Which city do I live in?"}],
    )
    body = sent(fake)
    # The provider stores input items in the response's history: the block never joins them.
    assert body["input"] == [{"role": "user", "content": "Which city do I live in?"}]
    assert body["instructions"].startswith("Answer in French.\n\n")
    assert '"Lives in Denver"' in block_of({"content": body["instructions"]})
    one, two = logs(pg_dsn, 2)
    # No history re-ingested; the continuation is the same user's, in the first response's session.
    assert two["messages"] == [{"role": "user", "content": "Which city do I live in?"}]
    assert two["user"] == one["user"] == "carol"
    assert two["session"] == one["session"] == first.id
    assert second.previous_response_id == first.id


def test_a_stateless_conversation_keeps_its_prefix_and_records_only_the_new_turn(
    http: httpx.Client, sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    remember(http, "dan", DENVER)
    history: list[dict[str, Any]] = [{"role": "user", "content": "Where do I live?"}]
    sdk.responses.create(model="fake-chat", input=history, user="dan", store=False)  # type: ignore[arg-type]
    first = fake.requests[-1].body
    history += [
        {"role": "assistant", "content": "In Denver."},
        {"role": "user", "content": "And what is the weather like in my city?"},
    ]
    sdk.responses.create(model="fake-chat", input=history, user="dan", store=False)  # type: ignore[arg-type]
    second = fake.requests[-1].body
    # Everything before the block is what the client sent, byte for byte, on both calls.
    prefix = first[: first.index(b'{"role":"developer"')]
    assert second.startswith(prefix)
    assert json.loads(second)["input"][2]["role"] == "developer"
    _, two = logs(pg_dsn, 2)
    assert two["messages"] == [{"role": "user", "content": "And what is the weather like in my city?"}]
    assert two["session"] is None  # nothing stored upstream: no chain to join
    assert not any(OPEN in json.dumps(log) for log in logs(pg_dsn, 2))


def test_an_agent_loop_that_sends_the_conversation_back_opens_no_session_per_call(
    sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    asked: list[Any] = [{"role": "user", "content": "What is the weather in Denver?"}]
    first = sdk.responses.create(model="fake-tools", input=asked, user="erin")
    # As the Agents SDK does: the stored response's output and the tool's result, sent back as input.
    asked += [item.model_dump(exclude_none=True) for item in first.output]
    asked.append({"type": "function_call_output", "call_id": "call_w1", "output": "Sunny, 24 °C"})
    sdk.responses.create(model="fake-chat", input=asked, user="erin")
    one, two = logs(pg_dsn, 2)
    assert one["session"] == first.id  # a first call may be continued: its own id names the session
    assert two["session"] is None  # the client keeps the conversation, as a chat client does
    assert two["messages"] == [{"role": "tool", "tool_call_id": "call_w1", "content": "Sunny, 24 °C"}]
    sessions = fetch_sync(pg_dsn, "SELECT external_id FROM sessions")
    assert [row["external_id"] for row in sessions] == [first.id]


def test_identity_order_header_user_safety_identifier(
    sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str
) -> None:
    sdk.responses.create(model="fake-chat", input="one", safety_identifier="safe-1")
    sdk.responses.create(model="fake-chat", input="two", safety_identifier="safe-1", user="u-2")
    sdk.responses.create(
        model="fake-chat", input="three", user="u-2", extra_headers={"x-memoire-user": "header-3"}
    )
    assert [log["user"] for log in logs(pg_dsn, 3)] == ["safe-1", "u-2", "header-3"]


def test_system_placement_puts_the_block_after_the_clients_instructions(
    start_proxy: ProxyFactory, fake: FakeUpstream
) -> None:
    proxy = start_proxy(memory={"placement": "system", "recall_timeout": 5.0})
    with httpx.Client(base_url=proxy.url) as http:
        remember(http, "erin", DENVER)
        response = http.post(
            "/v1/responses",
            json={"model": "fake-chat", "input": "Where do I live?", "user": "erin", "instructions": "Hi."},
        )
    assert response.status_code == 200
    body = sent(fake)
    assert body["input"] == "Where do I live?"
    assert body["instructions"].startswith("Hi.\n\n")


def test_upstream_errors_come_back_verbatim(sdk: openai.OpenAI, fake: FakeUpstream, pg_dsn: str) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.responses.create(model="fake-error-429", input="hi")
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="fake-error-400", input="hi")
    assert fetch_sync(pg_dsn, "SELECT count(*) FROM chat_logs")[0][0] == 0


def test_bad_input_names_the_field(http: httpx.Client, fake: FakeUpstream) -> None:
    response = http.post("/v1/responses", json={"model": "fake-chat", "input": "x", "user": 7})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "user" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake.requests == []


def test_a_client_that_leaves_mid_stream_cancels_the_upstream(
    proxy: ServerThread, fake: FakeUpstream
) -> None:
    with (
        httpx.Client(base_url=proxy.url, timeout=30) as http,
        http.stream(
            "POST",
            "/v1/responses",
            json={"model": "fake-chat", "input": "long story", "stream": True},
            headers={"x-fake-chunks": "50", "x-fake-interval": "0.1"},
        ) as response,
    ):
        for line in response.iter_lines():
            if "output_text.delta" in line:
                break
    wait_until(lambda: fake.cancelled == 1)


def test_a_stream_cut_by_the_upstream_aborts_the_clients_connection(
    proxy: ServerThread, fake: FakeUpstream, pg_dsn: str
) -> None:
    with httpx.Client(base_url=proxy.url, timeout=30) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/responses", json={"model": "fake-disconnect", "input": "hi", "stream": True})
    # As for chat: the client sees the break, and an exchange without its end is not recorded.
    assert fetch_sync(pg_dsn, "SELECT count(*) FROM chat_logs")[0][0] == 0


class TestSharedProviderKey:
    """With ``Authorization: Bearer mk_…`` every tenant shares one provider account."""

    @pytest.fixture
    def server(self, start_proxy: ProxyFactory) -> ServerThread:
        return start_proxy(
            auth={"enabled": True, "admin_key": ADMIN}, upstream={"api_key": SERVER_PROVIDER_KEY}
        )

    @pytest.fixture
    def keys(self, server: ServerThread) -> tuple[str, str]:
        with httpx.Client(base_url=server.url) as http:
            return new_key(http, "tenant-a"), new_key(http, "tenant-b")

    def client(self, server: ServerThread, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)

    def test_only_the_creating_tenant_may_use_a_response_id(
        self, server: ServerThread, keys: tuple[str, str], fake: FakeUpstream
    ) -> None:
        a, b = (self.client(server, key) for key in keys)
        created = a.responses.create(model="fake-chat", input="hello")
        assert fake.requests[-1].headers["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"
        # The creator continues, reads and lists its items.
        a.responses.create(model="fake-chat", input="again", previous_response_id=created.id)
        assert a.responses.retrieve(created.id).id == created.id
        a.responses.input_items.list(created.id)
        # Another tenant hears of it what it would of an unknown id, and nothing reaches the provider.
        before = len(fake.requests)
        with pytest.raises(openai.NotFoundError) as missing:
            b.responses.create(model="fake-chat", input="steal", previous_response_id=created.id)
        assert missing.value.param == "previous_response_id"
        for call in (
            lambda: b.responses.retrieve(created.id),
            lambda: b.responses.delete(created.id),
            lambda: b.responses.input_items.list(created.id),
            lambda: b.responses.cancel(created.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
        assert len(fake.requests) == before
        a.responses.delete(created.id)
        assert created.id not in fake.stored

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/responses/{id}/"),
            ("GET", "/v1/responses/{id}%2Finput_items"),
            ("GET", "/v1/responses/%72esp_{tail}/input_items/"),
            ("DELETE", "/v1/responses/%72%65%73%70%5F{tail}"),
            ("POST", "/v1/responses/{id}%2fcancel"),
        ],
    )
    def test_an_encoded_response_path_is_checked_for_the_id_it_names(
        self, server: ServerThread, keys: tuple[str, str], fake: FakeUpstream, method: str, path: str
    ) -> None:
        created = self.client(server, keys[0]).responses.create(model="fake-chat", input="hello")
        url = path.format(id=created.id, tail=created.id.removeprefix("resp_"))
        with httpx.Client(base_url=server.url) as http:
            before = len(fake.requests)
            other = http.request(method, url, headers={"authorization": f"Bearer {keys[1]}"})
            assert other.status_code == 404, other.text
            assert other.json()["error"]["param"] == "id"
            assert len(fake.requests) == before
            own = http.request(method, url, headers={"authorization": f"Bearer {keys[0]}"})
            assert len(fake.requests) == before + 1, own.text
            assert fake.requests[-1].headers["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"

    @pytest.mark.parametrize(
        "path", ["/v1/Responses/{id}", "/v1/responses/{id}/input_items/x", "/v1/responses//{id}"]
    )
    def test_a_response_path_in_another_spelling_is_refused(
        self, server: ServerThread, keys: tuple[str, str], fake: FakeUpstream, path: str
    ) -> None:
        created = self.client(server, keys[0]).responses.create(model="fake-chat", input="hello")
        before = len(fake.requests)
        with httpx.Client(base_url=server.url) as http:
            refused = http.get(path.format(id=created.id), headers={"authorization": f"Bearer {keys[0]}"})
        assert refused.status_code == 403, refused.text
        assert len(fake.requests) == before

    def test_another_api_process_honours_the_link(
        self, server: ServerThread, keys: tuple[str, str], start_proxy: ProxyFactory, pg_dsn: str
    ) -> None:
        created = self.client(server, keys[0]).responses.create(model="fake-chat", input="hello")
        wait_until(
            lambda: fetch_sync(pg_dsn, "SELECT 1 FROM response_links WHERE response_id = $1", created.id)
        )
        other = start_proxy(
            auth={"enabled": True, "admin_key": ADMIN}, upstream={"api_key": SERVER_PROVIDER_KEY}
        )
        again = self.client(other, keys[0]).responses.create(
            model="fake-chat", input="again", previous_response_id=created.id
        )
        assert again.previous_response_id == created.id
        with pytest.raises(openai.NotFoundError):
            self.client(other, keys[1]).responses.retrieve(created.id)

    def test_a_continuation_that_beats_the_link_write_to_another_process_is_honoured(
        self, server: ServerThread, keys: tuple[str, str], start_proxy: ProxyFactory
    ) -> None:
        other = self.client(
            start_proxy(
                auth={"enabled": True, "admin_key": ADMIN}, upstream={"api_key": SERVER_PROVIDER_KEY}
            ),
            keys[0],
        )
        here = self.client(server, keys[0])
        # A burst: the first link is written at once, the others wait for the writer's next turn.
        created = [here.responses.create(model="fake-chat", input=f"hello {n}") for n in range(5)]
        for response in created:  # straight on, on another process: it looks again until the link lands
            again = other.responses.create(model="fake-chat", input="again", previous_response_id=response.id)
            assert again.previous_response_id == response.id

    def test_shared_account_objects_stay_closed(
        self, server: ServerThread, keys: tuple[str, str], fake: FakeUpstream
    ) -> None:
        a = self.client(server, keys[0])
        with pytest.raises(openai.PermissionDeniedError) as refused:
            a.responses.create(model="fake-chat", input="hi", conversation="conv_123")
        assert refused.value.param == "conversation"
        with pytest.raises(openai.PermissionDeniedError):
            a.conversations.create()
        assert fake.requests == []

    def test_the_clients_own_key_passes_through(
        self, server: ServerThread, keys: tuple[str, str], fake: FakeUpstream
    ) -> None:
        own = openai.OpenAI(
            base_url=f"{server.url}/v1",
            api_key="sk-client-own",
            default_headers={"x-memoire-key": keys[1]},
            max_retries=0,
        )
        created = own.responses.create(model="fake-chat", input="hi")
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-client-own"
        assert own.responses.retrieve(created.id).id == created.id


def test_a_stream_without_its_terminal_event_is_rebuilt_from_what_arrived() -> None:
    request = {"model": "fake-chat", "stream": True}
    events = responses_fake.stream_events(request, "resp_1", 3)
    cut = b"".join(e for e in events if b"output_text.delta" in e or b"output_item.added" in e)
    reply = responses_reply.parse([cut[: len(cut) // 2], cut[len(cut) // 2 :]], "text/event-stream", None)
    assert reply.message == {"role": "assistant", "content": "part0 part1 part2 "}
    calls = responses_fake.stream_events({"model": "fake-tools", "stream": True}, "resp_2", 3)
    reply = responses_reply.parse([e for e in calls if b"completed" not in e], "text/event-stream", None)
    assert reply.message is not None
    assert reply.message["tool_calls"][0]["function"]["arguments"] == '{"city": "Denver"}'


def test_a_cut_stream_keeps_a_refusal_and_records_nothing_for_unfinished_reasoning() -> None:
    def event(data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

    reasoning = {"type": "response.output_item.added", "output_index": 0,
                 "item": {"id": "rs_1", "type": "reasoning", "summary": []}}  # fmt: skip
    message = {"type": "response.output_item.added", "output_index": 1,
               "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []}}  # fmt: skip
    refusal = {"type": "response.refusal.delta", "output_index": 1, "content_index": 0, "delta": "I can't"}
    only_reasoning = responses_reply.parse([event(reasoning)], "text/event-stream", None)
    assert only_reasoning.message is None  # no empty assistant message
    cut = responses_reply.parse([event(reasoning), event(message), event(refusal)], "text/event-stream", None)
    assert cut.message == {"role": "assistant", "content": None, "refusal": "I can't"}
