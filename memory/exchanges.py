"""An exchange (the new messages of one call and the reply), its bytes in the spool, and how it is recorded.

Recording is idempotent: the exchange's id is the chat log's primary key, so storing the same exchange twice
(a spool replay after a crash, a retried batch) leaves one row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from memoire import rules
from memory.db import Connection, json_text

#: Until API keys exist, everything runs under this tenant (inserted by the first migration).
DEFAULT_TENANT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")

Source = Literal["proxy", "api", "sdk"]


class Exchange(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    """Given at capture; becomes the chat log's id."""
    tenant_id: uuid.UUID
    user: str
    """The end user's external id, as the app names them."""
    session: str | None = None
    """The app's session id, if it sent one."""
    source: Source = "proxy"
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    messages: list[dict[str, Any]]
    """The request's new messages: those after the last assistant message, without system prompts."""
    reply: dict[str, Any] | None = None
    """The assistant's message: role, content and tool calls."""
    usage: dict[str, Any] | None = None
    occurred_at: datetime
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    """The app's own data about the exchange (``/v1/ingest``)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Exchange)


#: msgpack integers stop at 64 bits; JSON bodies do not.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def pack(exchange: Exchange) -> bytes:
    """The spool's bytes for ``exchange``. Integers beyond msgpack's range (a client may send any JSON
    number) are kept as their decimal text rather than losing the exchange."""
    try:
        return _encoder.encode(exchange)
    except OverflowError:
        return _encoder.encode(
            msgspec.structs.replace(
                exchange,
                messages=_big_ints_as_text(exchange.messages),
                reply=_big_ints_as_text(exchange.reply),
                usage=_big_ints_as_text(exchange.usage),
                metadata=_big_ints_as_text(exchange.metadata),
            )
        )


def unpack(data: bytes) -> Exchange:
    """The exchange :func:`pack` gave ``data`` for; raises msgspec.DecodeError."""
    return _decoder.decode(data)


def _big_ints_as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, dict):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_big_ints_as_text(v) for v in value]
    return value


def _json(value: Any) -> str | None:
    """``value`` as JSON text for jsonb (NUL-safe), or None."""
    return None if value is None else json_text(value)


def _storable_names(exchange: Exchange) -> Exchange:
    """The exchange with its user and session names as the store keeps them (see memoire.rules.storable)."""
    user = rules.storable(exchange.user)
    session = rules.storable(exchange.session) if exchange.session else None
    if user == exchange.user and session == exchange.session:
        return exchange
    return msgspec.structs.replace(exchange, user=user, session=session)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def now() -> datetime:
    return datetime.now(UTC)


_UPSERT_USERS = """
INSERT INTO users (tenant_id, external_id, last_seen_at)
SELECT $1, u.external_id, u.seen FROM unnest($2::text[], $3::timestamptz[]) AS u(external_id, seen)
ON CONFLICT (tenant_id, external_id)
    DO UPDATE SET last_seen_at = GREATEST(users.last_seen_at, EXCLUDED.last_seen_at)
RETURNING external_id, id
"""

_UPSERT_SESSIONS = """
INSERT INTO sessions (tenant_id, user_id, external_id, last_seen_at)
SELECT $1, s.user_id, s.external_id, s.seen
FROM unnest($2::uuid[], $3::text[], $4::timestamptz[]) AS s(user_id, external_id, seen)
ON CONFLICT (tenant_id, user_id, external_id)
    DO UPDATE SET last_seen_at = GREATEST(sessions.last_seen_at, EXCLUDED.last_seen_at)
RETURNING user_id, external_id, id
"""

_INSERT_LOGS = """
INSERT INTO chat_logs (tenant_id, id, user_id, session_id, source, endpoint, model, messages, reply, usage,
                       occurred_at, metadata)
SELECT $1, l.id, l.user_id, l.session_id, l.source, l.endpoint, l.model, l.messages::jsonb, l.reply::jsonb,
       l.usage::jsonb, l.occurred_at, l.metadata::jsonb
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::text[], $11::timestamptz[], $12::text[])
     AS l(id, user_id, session_id, source, endpoint, model, messages, reply, usage, occurred_at, metadata)
ON CONFLICT (tenant_id, id) DO NOTHING
RETURNING id
"""


async def record(conn: Connection, exchanges: list[Exchange]) -> list[uuid.UUID]:
    """Store ``exchanges`` (users, sessions, chat logs) in the caller's transaction.

    Returns the ids of the chat logs inserted now; ids already stored are left alone.
    """
    inserted: list[uuid.UUID] = []
    by_tenant: dict[uuid.UUID, list[Exchange]] = {}
    for exchange in map(_storable_names, exchanges):
        by_tenant.setdefault(exchange.tenant_id, []).append(exchange)
    for tenant_id, group in by_tenant.items():
        inserted.extend(await _record_tenant(conn, tenant_id, group))
    return inserted


async def _record_tenant(conn: Connection, tenant_id: uuid.UUID, group: list[Exchange]) -> list[uuid.UUID]:
    seen: dict[str, datetime] = {}
    for ex in group:
        seen[ex.user] = max(seen.get(ex.user, ex.occurred_at), ex.occurred_at)
    # Sorted, so that concurrent batches lock user rows in the same order.
    names = sorted(seen)
    rows = await conn.fetch(_UPSERT_USERS, tenant_id, names, [seen[n] for n in names])
    user_ids: dict[str, uuid.UUID] = {r["external_id"]: r["id"] for r in rows}

    sessions: dict[tuple[uuid.UUID, str], datetime] = {}
    for ex in group:
        if ex.session is not None:
            key = (user_ids[ex.user], ex.session)
            sessions[key] = max(sessions.get(key, ex.occurred_at), ex.occurred_at)
    session_ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
    if sessions:
        keys = sorted(sessions)
        rows = await conn.fetch(
            _UPSERT_SESSIONS,
            tenant_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [sessions[k] for k in keys],
        )
        session_ids = {(r["user_id"], r["external_id"]): r["id"] for r in rows}

    unique = list({ex.id: ex for ex in group}.values())
    rows = await conn.fetch(
        _INSERT_LOGS,
        tenant_id,
        [ex.id for ex in unique],
        [user_ids[ex.user] for ex in unique],
        [session_ids.get((user_ids[ex.user], ex.session)) if ex.session else None for ex in unique],
        [ex.source for ex in unique],
        [ex.endpoint for ex in unique],
        [ex.model for ex in unique],
        # JSON as text: asyncpg would read a list of lists as a two-dimensional array.
        [_json(ex.messages) for ex in unique],
        [_json(ex.reply) for ex in unique],
        [_json(ex.usage) for ex in unique],
        [ex.occurred_at for ex in unique],
        [_json(ex.metadata) for ex in unique],
    )
    return [r["id"] for r in rows]
