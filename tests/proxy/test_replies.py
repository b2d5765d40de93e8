"""Rebuilding the assistant's reply from the bytes the relay captured, for each API: plain JSON or SSE, cut
anywhere into chunks, compressed or not. A stream rebuilds the same reply as the same answer unstreamed."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from proxy import anthropic_reply, replies, responses_reply
from tests.support import anthropic_fake, responses_fake

SSE = "text/event-stream; charset=utf-8"


def sse(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks)


def cut(body: bytes, size: int) -> list[bytes]:
    """``body`` in pieces of ``size`` bytes: events split anywhere, as the network splits them."""
    return [body[i : i + size] for i in range(0, len(body), size)]


def parsed(message: dict[str, Any] | None) -> dict[str, Any] | None:
    """``message`` with its tool calls' arguments decoded."""
    if message is None or "tool_calls" not in message:
        return message
    calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
             for c in message["tool_calls"]]  # fmt: skip
    return {**message, "tool_calls": calls}


def delta(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "choices": [{"index": 0, "delta": fields}]}


STREAM = sse(
    delta(role="assistant", content=""),
    delta(content="Hel"),
    delta(content="lo"),
    delta(
        tool_calls=[
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_", "arguments": '{"ci'},
            }
        ]
    ),
    delta(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": 'ty": "Oslo"}'}}]),
    delta(tool_calls=[{"index": 1, "id": "call_2", "function": {"name": "now", "arguments": "{}"}}]),
    {"model": "gpt-x", "choices": [{"index": 1, "delta": {"content": "another choice"}}]},
    {"model": "gpt-x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}},
    "[DONE]",
)
EXPECTED = {
    "role": "assistant",
    "content": "Hello",
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ],
}


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_a_chat_stream_folds_as_the_sdk_folds_it_however_it_was_cut(size: int) -> None:
    reply = replies.parse(cut(STREAM, size), SSE, None)
    assert reply.message == EXPECTED
    assert reply.model == "gpt-x"
    assert reply.usage == {"prompt_tokens": 3, "completion_tokens": 5}


def test_a_chat_stream_with_crlf_lines_multiline_data_and_a_refusal() -> None:
    body = (
        b"data: " + json.dumps(delta(content="a")).encode() + b"\r\n\r\n"
        b": a comment\r\n\r\n"
        b'data: {"model": "gpt-x", "choices": [{"index": 0,\r\ndata: "delta": {"refusal": "no"}}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    assert replies.parse([body], SSE, None).message == {"role": "assistant", "content": "a", "refusal": "no"}


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [(None, lambda b: b), ("gzip", gzip.compress), ("deflate", zlib.compress),
     ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS))],  # raw deflate, as some servers send
)  # fmt: skip
def test_a_chat_json_reply_in_any_encoding(encoding: str | None, encode: Any) -> None:
    body = {"model": "gpt-x", "choices": [{"message": EXPECTED}], "usage": {"total_tokens": 8}}
    reply = replies.parse(cut(encode(json.dumps(body).encode()), 10), "application/json", encoding)
    assert (reply.message, reply.model, reply.usage) == (EXPECTED, "gpt-x", {"total_tokens": 8})


def test_an_unreadable_encoding_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="br"):
        replies.parse([b"..."], "application/json", "br")


def test_what_is_not_a_reply_rebuilds_none() -> None:
    assert replies.parse([b"[1, 2]"], "application/json", None).message is None
    assert replies.parse([b'{"choices": []}'], "application/json", None).message is None
    assert replies.parse([sse("not json", "[DONE]")], SSE, None).message == {
        "role": "assistant",
        "content": None,
    }


@pytest.mark.parametrize("model", ["claude-x", "claude-tools", "claude-thinking"])
def test_an_anthropic_stream_rebuilds_the_message_it_streams(model: str) -> None:
    streamed = anthropic_reply.parse(
        cut(b"".join(anthropic_fake.stream_events(model, 3, "Hi there")), 9), SSE, None
    )
    whole = anthropic_reply.parse(
        [json.dumps(anthropic_fake.message(model, "Hi there")).encode()], "application/json", None
    )
    # The same call either way; its arguments as the provider's JSON text, spaced as it was sent.
    assert parsed(streamed.message) == parsed(whole.message)
    assert streamed.model == whole.model == model
    if model == "claude-tools":  # text and the tool call, its arguments joined from their fragments
        assert parsed(whole.message) == {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "toolu_01", "type": "function",
                            "function": {"name": "get_weather", "arguments": {"city": "Denver"}}}],
        }  # fmt: skip
    else:  # a thinking block is not the reply
        assert whole.message == {"role": "assistant", "content": "Hi there"}
    assert streamed.usage == {"input_tokens": 5, "output_tokens": 3}


@pytest.mark.parametrize("model", ["fake-chat", "fake-tools"])
def test_a_responses_stream_rebuilds_the_response_it_streams(model: str) -> None:
    request = {"model": model, "stream": True}
    events = b"".join(responses_fake.stream_events(request, "resp_1", 3))
    streamed = responses_reply.parse(cut(events, 11), SSE, None)
    whole = responses_reply.parse(
        [json.dumps(responses_fake.complete(request, "resp_1", 3)).encode()], "application/json", None
    )
    assert streamed.message == whole.message is not None
    assert streamed.model == whole.model == model
    if model == "fake-tools":
        assert whole.message["tool_calls"][0]["function"] == {
            "name": "get_weather", "arguments": '{"city": "Denver"}'
        }  # fmt: skip
    else:
        assert whole.message == {"role": "assistant", "content": "part0 part1 part2 "}
