"""The tee: what the proxy keeps of a finished exchange, turned into an :class:`Exchange` later.

On the request path the proxy only keeps references (the request body it already has, the chunks the relay
captured). :meth:`Capture.build` runs in the intake's background task: it decodes the request's messages,
keeps the new ones, and rebuilds the reply, each by the rules of the API the call spoke (:class:`Dialect`).

"New" messages are those after the last assistant message: an OpenAI client resends the whole conversation
on every call, and everything up to the previous reply was recorded with the previous exchange. System and
developer prompts are the app's instructions, not the user's words, and are never recorded. The request body
read is the client's own, so a memory block the proxy added is never recorded as the user's words.

:func:`keep` runs as the answer ends, before its last byte goes out (:func:`proxy.relay.relay`'s
``on_end``): the capture's bytes go to the intake's journal as a :class:`Record` (one ``write(2)``), so an
API process killed right after answering loses no exchange, and :func:`revive` reads a record back.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from memory.exchanges import Exchange, new_id
from memory.intake import Intake
from proxy import replies
from proxy.relay import Outcome

log = logging.getLogger(__name__)

_SKIPPED_ROLES = frozenset({"system", "developer"})


class _Messages(msgspec.Struct):
    messages: list[dict[str, Any]]


_messages = msgspec.json.Decoder(_Messages)


def new_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    return [m for m in messages[last_assistant + 1 :] if m.get("role") not in _SKIPPED_ROLES]


def _chat_messages(body: bytes) -> list[dict[str, Any]]:
    return new_messages(_messages.decode(body).messages)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one API's exchange is read: its endpoint, its new messages, and its reply."""

    endpoint: str
    messages: Callable[[bytes], list[dict[str, Any]]]
    """The request's new messages, chat-shaped, from the client's body."""
    reply: Callable[[list[bytes], str | None, str | None], replies.Reply]
    """The reply from the captured chunks, the content type and the content encoding."""

    def __post_init__(self) -> None:
        _DIALECTS[self.endpoint] = self


#: Each dialect by its endpoint, as a journal record names it.
_DIALECTS: dict[str, Dialect] = {}


CHAT = Dialect("/v1/chat/completions", _chat_messages, replies.parse)


class Record(msgspec.Struct, array_like=True, frozen=True):
    """A capture as the journal keeps it: its bytes, unparsed."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    user: str
    session: str | None
    model: str | None
    occurred_at: datetime
    endpoint: str
    request_body: bytes
    content_type: str | None
    content_encoding: str | None
    reply: bytes


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)


@dataclass(slots=True)
class Capture:
    id: uuid.UUID
    tenant_id: uuid.UUID
    user: str
    session: str | None
    model: str | None
    occurred_at: datetime
    request_body: bytes
    response_headers: Mapping[str, str]
    chunks: list[bytes]
    dialect: Dialect = CHAT

    def record(self) -> bytes:
        return _record_encoder.encode(
            Record(
                self.id,
                self.tenant_id,
                self.user,
                self.session,
                self.model,
                self.occurred_at,
                self.dialect.endpoint,
                self.request_body,
                self.response_headers.get("content-type"),
                self.response_headers.get("content-encoding"),
                b"".join(self.chunks),
            )
        )

    def build(self) -> Exchange | None:
        messages = self.dialect.messages(self.request_body)
        reply = replies.Reply()
        try:
            reply = self.dialect.reply(
                self.chunks,
                self.response_headers.get("content-type"),
                self.response_headers.get("content-encoding"),
            )
        except (ValueError, TypeError, AttributeError, KeyError, zlib.error, msgspec.MsgspecError) as exc:
            log.warning(
                "could not read the reply of exchange %s (%s); storing its messages only", self.id, exc
            )
        if not messages and reply.message is None:
            return None
        return Exchange(
            id=self.id,
            tenant_id=self.tenant_id,
            user=self.user,
            session=self.session,
            source="proxy",
            endpoint=self.dialect.endpoint,
            model=reply.model or self.model,
            messages=messages,
            reply=reply.message,
            usage=reply.usage,
            occurred_at=self.occurred_at,
        )


def keep(
    intake: Intake,
    outcome: Outcome,
    dialect: Dialect,
    *,
    tenant_id: uuid.UUID,
    user: str,
    session: str | None,
    model: str | None,
    occurred_at: datetime,
    request_body: bytes,
) -> None:
    """Hand a call that succeeded to the intake, as a :class:`Capture` it builds later (journaled now);
    any other is not an exchange (the provider refused it)."""
    if not 200 <= outcome.status < 300:
        return
    capture = Capture(
        id=new_id(),
        tenant_id=tenant_id,
        user=user,
        session=session,
        model=model,
        occurred_at=occurred_at,
        request_body=request_body,
        response_headers=outcome.headers,
        chunks=[b"".join(outcome.chunks)],  # joined once: the record and the build both read it whole
        dialect=dialect,
    )
    intake.submit(capture.build, capture.record())


def revive(data: bytes) -> Callable[[], Exchange | None]:
    """The build of the capture a journal record holds."""
    record = _record_decoder.decode(data)
    headers = {
        name: value
        for name, value in (
            ("content-type", record.content_type),
            ("content-encoding", record.content_encoding),
        )
        if value is not None
    }
    return Capture(
        id=record.id,
        tenant_id=record.tenant_id,
        user=record.user,
        session=record.session,
        model=record.model,
        occurred_at=record.occurred_at,
        request_body=record.request_body,
        response_headers=headers,
        chunks=[record.reply],
        dialect=_DIALECTS[record.endpoint],
    ).build
