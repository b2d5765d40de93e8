"""``Memoire.wrap(client)``: an OpenAI or Anthropic client that remembers, with the same interface.

Each ``chat.completions.create`` and ``responses.create`` (OpenAI) or ``messages.create`` (Anthropic), sync or
async, streamed or not:

1. asks Mémoire for the memory block of the latest user message, within ``recall_timeout`` (150 ms);
2. adds it to the prompt by the proxy's default rule (a system message of its own just before the latest
   user message; for Responses, a developer item before it, or ``instructions`` for a call that continues
   a stored response; for Anthropic, a text block of the latest user message, ahead of the user's text);
3. calls the provider directly, with the app's own key;
4. queues the exchange (the new messages and the reply, also when streamed) for ingestion in the
   background.

Fail-open: if Mémoire is down, slow or refuses, the call goes ahead unchanged; a warning is logged once.
Nothing Mémoire-related after the provider's answer can raise into the app.

Only ``create`` remembers: ``with_options()``, ``with_raw_response``, the ``stream()`` and ``parse()``
helpers and other resources are the client's own and go to the provider without memory.
The end user is the call's ``X-Memoire-User`` extra header, else OpenAI's ``user`` / Anthropic's
``metadata.user_id`` (for Responses, ``user`` then ``safety_identifier``), else the wrap's ``user_id``, else
``"default"``. ``X-Memoire-*`` extra headers are read here and never sent to the provider. Everything else
on the client passes through untouched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from memoire import responses_rules
from memoire.rules import (
    CONTEXT_TURNS,
    DEFAULT_USER,
    MAX_CONTENT_CHARS,
    MAX_QUERY_CHARS,
    add_to_messages,
    storable,
)
from memoire.streams import AsyncStream, Delegate, Stream


class _Reachability(Protocol):
    def failed(self, why: str) -> None: ...

    def ok(self) -> None: ...


class Memoire(Protocol):
    """What a wrapped client asks of :class:`memoire.Memoire` (typed here, so this module need not import
    the one that imports it)."""

    @property
    def recall_timeout(self) -> float: ...

    @property
    def reachability(self) -> _Reachability: ...

    def context(
        self, user_id: str, query: str, *, context: Sequence[str] = (), timeout: float | None = None
    ) -> dict[str, Any]: ...

    async def acontext(
        self,
        user_id: str,
        query: str,
        *,
        context: Sequence[str] = (),
        timeout: float | None = None,  # noqa: ASYNC109 (HTTP timeout)
    ) -> dict[str, Any]: ...

    def remember_later(
        self, user_id: str, messages: list[dict[str, Any]], session_id: str | None = None
    ) -> None: ...


#: Seconds an abandoned context request may go on in the background before it is dropped.
CONTEXT_TIMEOUT = 2.0
#: Sync recalls that may wait for an answer at once; past it, calls go on without memory at once.
MAX_WAITING = 8
_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=MAX_WAITING, thread_name_prefix="memoire-recall"
)
_slots = threading.BoundedSemaphore(MAX_WAITING)
log = logging.getLogger("memoire.sdk")


def _context(memoire: Memoire, user: str, turns: list[str]) -> dict[str, Any]:
    try:
        return memoire.context(user, turns[-1], context=turns[:-1], timeout=CONTEXT_TIMEOUT)
    finally:
        _slots.release()


# -- what a call says -----------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") if isinstance(p, dict) else getattr(p, "text", None) for p in content)
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _new_messages(messages: Any) -> list[dict[str, Any]]:
    """The request's messages after the last assistant message, without system prompts, as text."""
    items = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    last = max((i for i, m in enumerate(items) if m.get("role") == "assistant"), default=-1)
    out = []
    for message in items[last + 1 :]:
        role, text = message.get("role"), _text(message.get("content"))
        if role in ("user", "tool") and text:
            out.append({"role": role, "content": text[:MAX_CONTENT_CHARS]})
    return out


def _turns(messages: Any) -> list[str]:
    """The last user messages with text, oldest first, each its last :data:`MAX_QUERY_CHARS` characters:
    the latest is recall's query, the others its context (as the proxy reads them). A user message of
    tool results only (Anthropic's tool loop) is skipped: the question is the one that asked."""
    turns: list[str] = []
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text(message.get("content"))
            if not text.strip():
                continue
            turns.append(text[-MAX_QUERY_CHARS:])
            if len(turns) > CONTEXT_TURNS:
                break
    return turns[::-1]


class _Call:
    """Who a call is for, and its keyword arguments once Mémoire's own headers are taken out."""

    def __init__(self, kwargs: dict[str, Any], default_user: str | None, provider_user: Any) -> None:
        given = kwargs.get("extra_headers")
        headers = dict(given) if isinstance(given, Mapping) else {}
        ours = {
            str(k).lower(): headers.pop(k) for k in list(headers) if str(k).lower().startswith("x-memoire-")
        }
        self.kwargs = {**kwargs, "extra_headers": headers} if isinstance(given, Mapping) else dict(kwargs)
        named = ours.get("x-memoire-user") or provider_user or default_user or DEFAULT_USER
        # As the proxy names users: NUL replaced, over 256 characters cut and suffixed with a hash.
        self.user = storable(str(named))
        session = ours.get("x-memoire-session")
        self.session: str | None = storable(str(session)) if session else None
        self.recall = str(ours.get("x-memoire-recall", "on")).lower() != "off"
        self.ingest = str(ours.get("x-memoire-ingest", "on")).lower() != "off"


def _block(memoire: Memoire, call: _Call, turns: list[str]) -> str | None:
    """The memory block within the recall budget; None on any trouble (logged once)."""
    if not call.recall or not turns or not turns[-1].strip():
        return None
    if not _slots.acquire(blocking=False):  # this many already hang: do not pile more up
        memoire.reachability.failed("too many recalls waiting for an answer")
        return None
    try:
        future = _executor.submit(_context, memoire, call.user, turns)
    except RuntimeError:  # the interpreter is shutting down
        _slots.release()
        return None
    try:
        found = future.result(timeout=memoire.recall_timeout)
    except concurrent.futures.TimeoutError:
        if future.cancel():  # it never started: its slot is free again
            _slots.release()
        memoire.reachability.failed(f"no answer within {memoire.recall_timeout * 1000:.0f} ms")
        return None
    except Exception as exc:  # noqa: BLE001 (fail-open: nothing from Mémoire may break the call)
        memoire.reachability.failed(type(exc).__name__)
        return None
    memoire.reachability.ok()
    block: str | None = found.get("block")
    return block


async def _ablock(memoire: Memoire, call: _Call, turns: list[str]) -> str | None:
    if not call.recall or not turns or not turns[-1].strip():
        return None
    try:
        found = await asyncio.wait_for(
            memoire.acontext(call.user, turns[-1], context=turns[:-1], timeout=CONTEXT_TIMEOUT),
            memoire.recall_timeout,
        )
    except TimeoutError:
        memoire.reachability.failed(f"no answer within {memoire.recall_timeout * 1000:.0f} ms")
        return None
    except Exception as exc:  # noqa: BLE001 (fail-open: nothing from Mémoire may break the call)
        memoire.reachability.failed(type(exc).__name__)
        return None
    memoire.reachability.ok()
    block: str | None = found.get("block")
    return block


def _remember(memoire: Memoire, call: _Call, new: list[dict[str, Any]], reply: str) -> None:
    if not call.ingest:
        return
    exchange = list(new)
    if exchange and reply:
        exchange.append({"role": "assistant", "content": reply[:MAX_CONTENT_CHARS]})
    memoire.remember_later(call.user, exchange, session_id=call.session)


def _openai_delta(chunk: Any) -> str | None:
    choices = getattr(chunk, "choices", None)
    if choices and getattr(choices[0], "index", 0) == 0:
        return getattr(choices[0].delta, "content", None)
    return None


def _openai_reply(response: Any) -> str:
    choices = getattr(response, "choices", None)
    message = getattr(choices[0], "message", None) if choices else None
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else ""


def _anthropic_delta(event: Any) -> str | None:
    if getattr(event, "type", None) == "content_block_delta":
        return getattr(event.delta, "text", None)
    return None


def _anthropic_reply(response: Any) -> str:
    return "".join(b.text for b in getattr(response, "content", []) if getattr(b, "type", None) == "text")


def _into_latest_turn(kwargs: dict[str, Any], block: str) -> dict[str, Any]:
    """``kwargs`` with ``block`` as a text block of the latest user message, ahead of the user's own text
    (after its tool results, which the API wants first). Anthropic caches tools, ``system`` and the messages
    in that order: a block in ``system`` would invalidate the cached conversation whenever recall changes.
    Without a user message, the block goes to ``system``."""
    messages = kwargs.get("messages")
    if not isinstance(messages, list):
        return _with_system(kwargs, block)
    at = next((i for i in range(len(messages) - 1, -1, -1) if _role(messages[i]) == "user"), None)
    if at is None:
        return _with_system(kwargs, block)
    latest = messages[at]
    content = latest.get("content")
    ours = {"type": "text", "text": block}
    if isinstance(content, str):
        parts: list[Any] = [ours, {"type": "text", "text": content}] if content else [ours]
    elif isinstance(content, list):
        results = 0
        while results < len(content) and _kind(content[results]) == "tool_result":
            results += 1
        parts = [*content[:results], ours, *content[results:]]
    else:
        return _with_system(kwargs, block)
    out = list(messages)
    out[at] = {**latest, "content": parts}
    return {**kwargs, "messages": out}


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else None


def _kind(part: Any) -> Any:
    return part.get("type") if isinstance(part, Mapping) else getattr(part, "type", None)


def _with_system(kwargs: dict[str, Any], block: str) -> dict[str, Any]:
    system = kwargs.get("system")
    if isinstance(system, list):
        return {**kwargs, "system": [*system, {"type": "text", "text": block}]}
    return {**kwargs, "system": f"{system}\n\n{block}" if system else block}


def _anthropic_user(kwargs: dict[str, Any]) -> Any:
    metadata = kwargs.get("metadata")
    return metadata.get("user_id") if isinstance(metadata, dict) else None


def _after(
    memoire: Memoire,
    call: _Call,
    new: list[dict[str, Any]],
    response: Any,
    is_async: bool,
    delta: Any,
    reply: Any,
) -> Any:
    """The provider's response for the app, with the exchange (``new`` messages and the reply) queued for
    Mémoire, at the stream's end for a stream. Whatever goes wrong here, the app gets its response."""
    try:
        if call.kwargs.get("stream"):
            wrapper = AsyncStream if is_async else Stream
            return wrapper(response, delta, lambda text: _remember(memoire, call, new, text))
        _remember(memoire, call, new, reply(response))
    except Exception:
        log.warning("could not queue an exchange for Mémoire", exc_info=True)
    return response


# -- the wrapped resources ----------------------------------------------------------------------------


class _Completions(Delegate):
    def __init__(self, target: Any, memoire: Memoire, user: str | None, is_async: bool) -> None:
        super().__init__(target)
        self._memoire, self._user, self._async = memoire, user, is_async

    def create(self, *args: Any, **kwargs: Any) -> Any:
        if self._async:
            return self._acreate(*args, **kwargs)
        call = _Call(kwargs, self._user, kwargs.get("user"))
        messages = call.kwargs.get("messages")
        block = _block(self._memoire, call, _turns(messages))
        if block is not None and isinstance(messages, list):
            call.kwargs["messages"] = add_to_messages(messages, block)
        response = self._target.create(*args, **call.kwargs)
        return self._after(call, messages, response)

    async def _acreate(self, *args: Any, **kwargs: Any) -> Any:
        call = _Call(kwargs, self._user, kwargs.get("user"))
        messages = call.kwargs.get("messages")
        block = await _ablock(self._memoire, call, _turns(messages))
        if block is not None and isinstance(messages, list):
            call.kwargs["messages"] = add_to_messages(messages, block)
        response = await self._target.create(*args, **call.kwargs)
        return self._after(call, messages, response)

    def _after(self, call: _Call, messages: Any, response: Any) -> Any:
        return _after(
            self._memoire, call, _new_messages(messages), response, self._async, _openai_delta, _openai_reply
        )


class _Messages(Delegate):
    def __init__(self, target: Any, memoire: Memoire, user: str | None, is_async: bool) -> None:
        super().__init__(target)
        self._memoire, self._user, self._async = memoire, user, is_async

    def create(self, *args: Any, **kwargs: Any) -> Any:
        if self._async:
            return self._acreate(*args, **kwargs)
        call = _Call(kwargs, self._user, _anthropic_user(kwargs))
        messages = call.kwargs.get("messages")
        block = _block(self._memoire, call, _turns(messages))
        if block is not None:
            call.kwargs = _into_latest_turn(call.kwargs, block)
        response = self._target.create(*args, **call.kwargs)
        return self._after(call, messages, response)

    async def _acreate(self, *args: Any, **kwargs: Any) -> Any:
        call = _Call(kwargs, self._user, _anthropic_user(kwargs))
        messages = call.kwargs.get("messages")
        block = await _ablock(self._memoire, call, _turns(messages))
        if block is not None:
            call.kwargs = _into_latest_turn(call.kwargs, block)
        response = await self._target.create(*args, **call.kwargs)
        return self._after(call, messages, response)

    def _after(self, call: _Call, messages: Any, response: Any) -> Any:
        new = _new_messages(messages)
        return _after(self._memoire, call, new, response, self._async, _anthropic_delta, _anthropic_reply)


class _Responses(Delegate):
    """OpenAI's Responses API: ``responses.create``, by the proxy's rules (:mod:`memoire.responses_rules`)."""

    def __init__(self, target: Any, memoire: Memoire, user: str | None, is_async: bool) -> None:
        super().__init__(target)
        self._memoire, self._user, self._async = memoire, user, is_async

    def _call(self, kwargs: dict[str, Any]) -> _Call:
        named = kwargs.get("user") if isinstance(kwargs.get("user"), str) else None
        safety = kwargs.get("safety_identifier")
        return _Call(kwargs, self._user, named or (safety if isinstance(safety, str) else None))

    def create(self, *args: Any, **kwargs: Any) -> Any:
        if self._async:
            return self._acreate(*args, **kwargs)
        call = self._call(kwargs)
        block = _block(self._memoire, call, responses_rules.turns(call.kwargs.get("input")))
        if block is not None:
            call.kwargs = responses_rules.with_block(call.kwargs, block)
        new = responses_rules.new_messages(kwargs, MAX_CONTENT_CHARS)
        response = self._target.create(*args, **call.kwargs)
        return self._after(call, new, response)

    async def _acreate(self, *args: Any, **kwargs: Any) -> Any:
        call = self._call(kwargs)
        block = await _ablock(self._memoire, call, responses_rules.turns(call.kwargs.get("input")))
        if block is not None:
            call.kwargs = responses_rules.with_block(call.kwargs, block)
        new = responses_rules.new_messages(kwargs, MAX_CONTENT_CHARS)
        response = await self._target.create(*args, **call.kwargs)
        return self._after(call, new, response)

    def _after(self, call: _Call, new: list[dict[str, Any]], response: Any) -> Any:
        return _after(
            self._memoire, call, new, response, self._async, responses_rules.delta, responses_rules.reply
        )


class _Chat(Delegate):
    def __init__(self, target: Any, completions: _Completions) -> None:
        super().__init__(target)
        self.completions = completions


class _OpenAI(Delegate):
    def __init__(self, client: Any, memoire: Memoire, user: str | None, is_async: bool) -> None:
        super().__init__(client)
        self.chat = _Chat(client.chat, _Completions(client.chat.completions, memoire, user, is_async))
        self.responses = _Responses(client.responses, memoire, user, is_async)


class _Anthropic(Delegate):
    def __init__(self, client: Any, memoire: Memoire, user: str | None, is_async: bool) -> None:
        super().__init__(client)
        self.messages = _Messages(client.messages, memoire, user, is_async)


def _without_memoire_headers(client: Any) -> Any:
    """``client``, or a copy of it without ``X-Memoire-*`` default headers: an ``mk_`` key set there for
    the proxy must not go to the provider."""
    custom = getattr(client, "_custom_headers", None)
    if not isinstance(custom, Mapping) or not any(str(k).lower().startswith("x-memoire-") for k in custom):
        return client
    kept = {k: v for k, v in custom.items() if not str(k).lower().startswith("x-memoire-")}
    return client.copy(set_default_headers=kept)


def wrap(memoire: Memoire, client: Any, *, user_id: str | None = None) -> Any:
    # A client's module is loaded by now; the other provider's SDK may not be installed at all.
    openai, anthropic = sys.modules.get("openai"), sys.modules.get("anthropic")
    client = _without_memoire_headers(client)
    if openai is not None and isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        return _OpenAI(client, memoire, user_id, isinstance(client, openai.AsyncOpenAI))
    if anthropic is not None and isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic):
        return _Anthropic(client, memoire, user_id, isinstance(client, anthropic.AsyncAnthropic))
    raise TypeError(
        f"cannot wrap {type(client).__name__}: expected openai.OpenAI, openai.AsyncOpenAI, "
        "anthropic.Anthropic or anthropic.AsyncAnthropic"
    )
