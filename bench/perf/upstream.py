"""A fast fake OpenAI upstream: raw HTTP/1.1 on uvloop, so that it costs the benchmark as little as it can.

``POST …/chat/completions`` answers a fixed small ``chat.completion``; with ``"stream": true`` it sends
``--chunks`` SSE chunks ``--interval`` seconds apart, then ``data: [DONE]``. Each chunk carries the time it
was sent (``time.monotonic()``, one clock for every process of the machine) in ``x_sent``, so a client can
tell the gap at the source from the gap it sees. ``GET /health`` answers 200. Keep-alive throughout.

With ``--extract`` it plays the extraction LLM instead: every call gets three facts (a home, an employer, a
habit) drawn at random, as JSON, at once.

Run: ``python -m bench.perf.upstream --port P [--chunks N --interval S]``.
"""

from __future__ import annotations

import argparse
import asyncio
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
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
CHUNK = (
    '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"fake-chat",'
    '"choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}],"x_sent":%.6f}'
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
            if head.startswith(b"get"):
                self.transport.write(HEAD % 2 + b"{}")
            elif self.extract is not None:
                reply = extraction(self.extract)
                self.transport.write(HEAD % len(reply) + reply)
            elif b'"stream":true' in body.replace(b" ", b""):
                self.busy = True
                self.task = asyncio.get_running_loop().create_task(self._stream())
            else:
                self.transport.write(HEAD % len(REPLY) + REPLY)

    async def _stream(self) -> None:
        assert self.transport is not None
        self.transport.write(STREAM_HEAD)
        for n in range(self.chunks):
            if n:
                await asyncio.sleep(self.interval)
            if self.transport.is_closing():
                return
            event = b"data: " + (CHUNK % time.monotonic()).encode() + b"\n\n"
            self.transport.write(_chunked(event))
        self.transport.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        self.busy = False
        self._next()


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
