"""A scripted fake extraction LLM: OpenAI's ``/v1/chat/completions`` and Anthropic's ``/v1/messages``;
also ``/v1/embeddings``, answering 8-dimensional vectors derived from each input's words.

Served on loopback by :class:`ServerThread`. Tests script it: :meth:`FakeLLM.on` maps a phrase of the
conversation to answers, given in turn (the last one repeats). An answer is a dict (sent as the JSON
output), a string (sent as it is, e.g. bad JSON), or an int (an HTTP error status). Conversations no script
matches get ``{"facts": []}``. Every request is kept in :attr:`FakeLLM.requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import answer_lifespan, read_body

Answer = dict[str, Any] | str | int
CONVERSATION_MARK = "Conversation (data):"


@dataclass
class FakeLLM:
    requests: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[tuple[str, list[Answer]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    embed_delay: float = 0.0
    """Seconds ``/v1/embeddings`` waits before it answers (a slow embeddings provider)."""

    def on(self, phrase: str, *answers: Answer) -> None:
        with self.lock:
            self.scripts.append((phrase, list(answers)))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.scripts.clear()
            self.embed_delay = 0.0

    def prompts(self) -> list[str]:
        """The user prompt of every request, in order."""
        out = []
        for request in self.requests:
            for message in request.get("messages", []):
                if message.get("role") == "user":
                    content = message["content"]
                    out.append(content if isinstance(content, str) else json.dumps(content))
        return out

    def _answer(self, prompt: str) -> Answer:
        conversation = prompt.split(CONVERSATION_MARK, 1)[-1]
        with self.lock:
            for phrase, answers in self.scripts:
                if phrase.lower() in conversation.lower():
                    return answers.pop(0) if len(answers) > 1 else answers[0]
        return {"facts": []}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        request = json.loads(body or b"{}")
        if scope["path"].endswith("/embeddings"):
            if self.embed_delay:
                await asyncio.sleep(self.embed_delay)
            await _send(send, 200, _embeddings(request))
            return
        with self.lock:
            self.requests.append(request)
        user = next((m["content"] for m in request.get("messages", []) if m.get("role") == "user"), "")
        answer = self._answer(user if isinstance(user, str) else json.dumps(user))
        if isinstance(answer, int):
            await _send(send, answer, {"error": {"message": "scripted failure", "type": "server_error"}})
            return
        text = answer if isinstance(answer, str) else json.dumps(answer)
        if scope["path"].endswith("/messages"):
            await _send(send, 200, _anthropic(request, answer, text))
        else:
            await _send(send, 200, _openai(request, text))


def _embeddings(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    data = []
    for index, text in enumerate(inputs):
        vector = [0.0] * 8
        for word in str(text).lower().split():
            vector[sum(word.encode()) % 8] += 1.0
        # Out of order on purpose: clients must sort by index.
        data.insert(0, {"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": request.get("model"), "usage": {"total_tokens": 1}}


def _openai(request: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "fake-extractor"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def _anthropic(request: dict[str, Any], answer: Answer, text: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": "toolu_1", "name": "record_facts", "input": answer}]
        if isinstance(answer, dict)
        else [{"type": "text", "text": text}]
    )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "fake-claude"),
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 90, "output_tokens": 30},
    }


async def _send(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
