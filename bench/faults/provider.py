"""The fault suite's fake provider: the app's chat model and the extraction LLM on one port, counting.

``POST /v1/chat/completions`` with ``"model": "fake-chat"`` answers the app's call with a small
``chat.completion``; any other model is the extraction LLM, which answers three facts as JSON (in the
format :func:`bench.perf.upstream.extraction` gives) and counts, for every call marker
(:data:`MARKER`) in the prompt, when it was asked to extract it (``time.monotonic()``, one clock for every
process of the machine). ``GET /calls`` returns those times, so the suite can tell how many times each
exchange went to the LLM, and during which fault. ``GET /health`` answers 200.

Run: ``python -m bench.faults.provider --port P``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import defaultdict
from typing import Any

import uvicorn

from bench.perf.upstream import REPLY, extraction

#: How the suite marks each call's words, so that its exchange is found wherever it went.
MARKER = re.compile(rb"fault-call-\d+")

_calls: defaultdict[str, list[float]] = defaultdict(list)
_rng = random.Random(5)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if scope["method"] == "GET":
        if path == "/calls":
            await _answer(send, json.dumps(_calls).encode())
        else:
            await _answer(send, b"{}")
        return
    body = await _body(receive)
    if not path.endswith("/chat/completions"):
        await _answer(send, b'{"error": {"message": "not here", "type": "invalid_request_error"}}', 404)
        return
    if b'"fake-chat"' in body:
        await _answer(send, REPLY)
        return
    for marker in set(MARKER.findall(body)):
        _calls[marker.decode()].append(time.monotonic())
    await _answer(send, extraction(_rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
