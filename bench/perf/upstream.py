"""A fast fake OpenAI upstream: raw HTTP/1.1 on uvloop, so that it costs the benchmark as little as it can.

``POST …/chat/completions`` answers a fixed small ``chat.completion``; with ``"stream": true`` it sends
``--chunks`` SSE chunks ``--interval`` seconds apart, then ``data: [DONE]``. ``POST …/responses`` and
``POST …/messages`` answer the same way in the Responses API's and Anthropic's formats (a response object
with a new id each time, or their typed events; a message, or its events). Each chunk carries the time it
was sent (``time.monotonic()``, one clock for every process of the machine) in ``x_sent``, so a client can
tell the gap at the source from the gap it sees. ``GET /health`` answers 200. Keep-alive throughout.

With ``--extract`` it plays the extraction LLM instead: every call gets three facts (a home, an employer, a
habit) drawn at random, as JSON, at once.

Run: ``python -m bench.perf.upstream --port P [--chunks N --interval S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time

import uvloop

from bench.perf import corpus

REPLY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"fake-chat",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Noted: a fixed, small reply."},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)
_SERVED = itertools.count(1)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
CHUNK = (
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"fake-chat",'
    '"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}],"x_sent":%.6f}'
)


RESPONSE = (
    '{"id":"resp_bench%d","object":"response","created_at":1700000000,"status":"completed","model":"fake-chat",'
    '"output":[{"id":"msg_bench","type":"message","status":"completed","role":"assistant","content":'
    '[{"type":"output_text","text":"Noted: a fixed, small reply.","annotations":[]}]}],'
    '"usage":{"input_tokens":12,"output_tokens":7,"total_tokens":19}}'
)
RESPONSE_DELTA = (
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_bench",'
    '"output_index":0,"content_index":0,"delta":"word ","sequence_number":%d,"x_sent":%.6f}\n\n'
)
MESSAGE = (
    b'{"id":"msg_bench","type":"message","role":"assistant","model":"claude-bench","content":'
    b'[{"type":"text","text":"Noted: a fixed, small reply."}],"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":12,"output_tokens":7}}'
)
MESSAGE_DELTA = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"word "},"x_sent":%.6f}\n\n'
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def extraction(rng: random.Random) -> bytes:
    city, company = rng.choice(corpus.CITIES), rng.choice(corpus.COMPANIES)
    hobby = rng.choice(corpus.HOBBIES)
    facts = [
        {"text": f"Lives in {city}", "slot": "home_city", "value": city, "category": "location"},
        {"text": f"Works at {company}", "slot": "employer", "value": company, "category": "work"},
        {"text": f"Enjoys {hobby} on weekends", "slot": "hobby", "value": hobby, "category": "preferences"},
    ]
    content = json.dumps({"facts": facts})
    return json.dumps(
        {"id": "chatcmpl-x", "object": "chat.completion", "created": 1700000000, "model": "fake-extractor",
         "choices": [
             {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
         ],
         "usage": {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360}}
    ).encode()  # fmt: skip


class Upstream(asyncio.Protocol):
    def __init__(self, chunks: int, interval: float, extract: random.Random | None = None) -> None:
        self.chunks, self.interval, self.extract = chunks, interval, extract
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        while not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            dialect = _dialect(head)
            self.served = next(_SERVED)
            if head.startswith(b"get"):
                self.transport.write(HEAD % 2 + b"{}")
            elif self.extract is not None:
                reply = extraction(self.extract)
                self.transport.write(HEAD % len(reply) + reply)
            elif b'"stream":true' in body.replace(b" ", b""):
                self.busy = True
                self.task = asyncio.get_running_loop().create_task(self._stream(dialect))
            else:
                reply = _reply(dialect, self.served)
                self.transport.write(HEAD % len(reply) + reply)

    async def _stream(self, dialect: str) -> None:
        assert self.transport is not None
        self.transport.write(STREAM_HEAD)
        first, last = _stream_ends(dialect, self.served)
        if first:
            self.transport.write(_chunked(first))
        for n in range(self.chunks):
            if n:
                await asyncio.sleep(self.interval)
            if self.transport.is_closing():
                return
            if dialect == "responses":
                event = (RESPONSE_DELTA % (n + 1, time.monotonic())).encode()
            elif dialect == "anthropic":
                event = (MESSAGE_DELTA % time.monotonic()).encode()
            else:
                event = b"data: " + (CHUNK % time.monotonic()).encode() + b"\n\n"
            self.transport.write(_chunked(event))
        self.transport.write(_chunked(last) + b"0\r\n\r\n")
        self.busy = False
        self._next()


def _dialect(head: bytes) -> str:
    path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    if path.endswith(b"/responses"):
        return "responses"
    if path.endswith(b"/messages"):
        return "anthropic"
    return "chat"


def _reply(dialect: str, served: int) -> bytes:
    if dialect == "responses":
        return (RESPONSE % served).encode()
    return MESSAGE if dialect == "anthropic" else REPLY


def _event(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _stream_ends(dialect: str, served: int) -> tuple[bytes, bytes]:
    """What a stream sends before its deltas and after them, by dialect."""
    if dialect == "responses":
        created = RESPONSE % served
        created = created.replace('"status":"completed"', '"status":"in_progress"', 1)
        first = _event(
            "response.created", f'{{"type":"response.created","sequence_number":0,"response":{created}}}'
        )
        done = RESPONSE % served
        last = _event(
            "response.completed", f'{{"type":"response.completed","sequence_number":999,"response":{done}}}'
        )
        return first, last
    if dialect == "anthropic":
        start = MESSAGE.decode().replace('"content":[{"type":"text","text":"Noted: a fixed, small reply."}]',
                                         '"content":[]')  # fmt: skip
        first = _event("message_start", f'{{"type":"message_start","message":{start}}}') + _event(
            "content_block_start",
            '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        )
        last = (
            _event("content_block_stop", '{"type":"content_block_stop","index":0}')
            + _event("message_delta", '{"type":"message_delta","delta":{"stop_reason":"end_turn"},'
                     '"usage":{"output_tokens":7}}')
            + _event("message_stop", '{"type":"message_stop"}')
        )  # fmt: skip
        return first, last
    return b"", b"data: [DONE]\n\n"


async def serve(port: int, chunks: int, interval: float, extract: bool) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(3) if extract else None
    server = await loop.create_server(
        lambda: Upstream(chunks, interval, rng), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--extract", action="store_true", help="play the extraction LLM")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.chunks, args.interval, args.extract))


if __name__ == "__main__":
    main()
