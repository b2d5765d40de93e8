"""Facts without an LLM: ``POST /v1/facts``; a user's facts; a fact's supersession history."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Response, delete, get, patch, post
from litestar.params import FromPath, FromQuery, QueryParameter

from memoire import rules
from memory import browse, db, edits, users
from memory.errors import InvalidField, NotFound
from memory.facts import NO_NUL, Fact, FactStatus, NewFact, Outcome, TemporalStatus
from memory.routes.context import AnyRequest, MemoryDep, TenantId, json_body, status_headers

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=rules.MAX_NAME, pattern=NO_NUL)]
#: Most facts one ``POST /v1/facts`` takes.
MAX_FACTS = 1000


class FactsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: UserId
    facts: Annotated[list[NewFact], msgspec.Meta(min_length=1, max_length=MAX_FACTS)]


class FactResult(msgspec.Struct):
    id: uuid.UUID
    outcome: Outcome


class FactsResponse(msgspec.Struct):
    results: list[FactResult]


class FactsPage(msgspec.Struct):
    facts: list[Fact]
    next_cursor: str | None


class History(msgspec.Struct):
    history: list[Fact]


_decoder = msgspec.json.Decoder(FactsRequest)


@post("/v1/facts", status_code=200, opt={"body": FactsRequest})
async def create_facts(
    request: AnyRequest, memory: MemoryDep, tenant_id: TenantId
) -> Response[FactsResponse]:
    """Remember facts through the same embed → dedup → supersede path as extraction; all or nothing."""
    body = await json_body(request, _decoder, memory.config)
    results = await memory.remember(tenant_id, body.user_id, body.facts)
    return Response(
        FactsResponse(results=[FactResult(r.id, r.outcome) for r in results]), headers=status_headers([])
    )


_cursor_encoder = msgspec.msgpack.Encoder()
_cursor_decoder = msgspec.msgpack.Decoder(tuple[datetime, uuid.UUID])


def _encode_cursor(cursor: browse.Cursor | None) -> str | None:
    if cursor is None:
        return None
    raw = _cursor_encoder.encode((cursor.created_at, cursor.id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str | None) -> browse.Cursor | None:
    if not text:
        return None
    try:
        created_at, fact_id = _cursor_decoder.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidField("cursor is not one this API gave out", param="cursor") from exc
    return browse.Cursor(created_at, fact_id)


@get("/v1/users/{user_id:str}/facts")
async def list_user_facts(
    memory: MemoryDep,
    tenant_id: TenantId,
    user_id: FromPath[str],
    status: FromQuery[list[FactStatus] | None] = None,
    temporal: FromQuery[list[TemporalStatus] | None] = None,
    slot: FromQuery[str | None] = None,
    category: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    cursor: FromQuery[str | None] = None,
) -> FactsPage:
    """The user's facts, newest first; filters: status (default active), temporal, slot, category."""
    after = _decode_cursor(cursor)
    for name, value in (("slot", slot), ("category", category)):
        if value and "\x00" in value:
            raise InvalidField(f"{name} holds a NUL character", param=name)
    filters = browse.Filters(statuses=status or ("active",), temporal=temporal, slot=slot, category=category)
    async with db.connection(memory.pool) as conn:
        user = await users.find(conn, tenant_id, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", param="user_id")
        facts, next_cursor = await browse.list_facts(conn, tenant_id, user, filters, limit=limit, after=after)
    return FactsPage(facts=facts, next_cursor=_encode_cursor(next_cursor))


@get("/v1/facts/{fact_id:uuid}/history")
async def fact_history(memory: MemoryDep, tenant_id: TenantId, fact_id: FromPath[uuid.UUID]) -> History:
    """The fact, what it superseded and what superseded it, oldest first."""
    async with db.connection(memory.pool) as conn:
        chain = await browse.history(conn, tenant_id, fact_id)
    if not chain:
        raise NotFound(f"no fact {fact_id}", param="fact_id")
    return History(history=chain)


@get("/v1/facts/{fact_id:uuid}")
async def get_fact(memory: MemoryDep, tenant_id: TenantId, fact_id: FromPath[uuid.UUID]) -> Fact:
    """One fact, whatever its status."""
    async with db.connection(memory.pool) as conn:
        fact = await edits.get(conn, tenant_id, fact_id)
    if fact is None:
        raise NotFound(f"no fact {fact_id}", param="fact_id")
    return fact


_patch_decoder = msgspec.json.Decoder(edits.FactPatch)


@patch("/v1/facts/{fact_id:uuid}", opt={"body": edits.FactPatch})
async def patch_fact(
    request: AnyRequest,
    memory: MemoryDep,
    tenant_id: TenantId,
    fact_id: FromPath[uuid.UUID],
) -> Fact:
    """Correct a fact: only the fields given change; a new text is embedded again."""
    body = await json_body(request, _patch_decoder, memory.config)
    embedding = None
    if isinstance(body.text, str):
        embedder = memory.embedder
        embedding = ((await embedder.embed([body.text]))[0], embedder.model)
    async with db.transaction(memory.pool) as conn:
        fact = await edits.update(conn, tenant_id, fact_id, body, embedding)
    if fact is None:
        raise NotFound(f"no fact {fact_id}", param="fact_id")
    memory.forget_profile(tenant_id)
    return fact


@delete("/v1/facts/{fact_id:uuid}", status_code=204)
async def delete_fact(memory: MemoryDep, tenant_id: TenantId, fact_id: FromPath[uuid.UUID]) -> None:
    """Delete a fact and its vector for good."""
    async with db.transaction(memory.pool) as conn:
        if not await edits.delete(conn, tenant_id, fact_id):
            raise NotFound(f"no fact {fact_id}", param="fact_id")
    memory.forget_profile(tenant_id)
