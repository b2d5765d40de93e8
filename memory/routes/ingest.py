"""``POST /v1/ingest``: an exchange the app had itself, through the same pipeline as the proxy's tee.

The exchange is accepted (202) once it is safe in the intake's spool on disk, from where it is stored and
queued for extraction; concurrent calls share one spool write, and the call costs no database round trip.
With an ``idempotency_key``, the exchange's id is derived from it, so sending the same exchange again stores
nothing new. Message timestamps are honoured: facts extracted from a backdated exchange are dated when it
happened.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, post

from memory.exchanges import Exchange, new_id, now
from memory.facts import NO_NUL, Moment, check_range
from memory.routes.context import AnyRequest, IntakeDep, MemoryDep, TenantId, json_body, status_headers
from memory.routes.facts import UserId

#: Namespace of exchange ids derived from idempotency keys.
_IDEMPOTENCY_NS = uuid.UUID("6f1c1b6e-93a4-4c8e-9a55-0b8d5e2f4a10")


class IngestMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Annotated[str, msgspec.Meta(pattern=r"^(user|assistant|system|developer|tool)$")]
    content: Annotated[str, msgspec.Meta(max_length=200_000)]
    timestamp: Moment | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_range(self.timestamp, "timestamp")


class IngestRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: UserId
    messages: Annotated[list[IngestMessage], msgspec.Meta(min_length=1, max_length=1000)]
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_NUL)] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    source: Literal["api", "sdk"] = "api"
    """Who captured the exchange: an app calling this API, or the Python SDK's wrapped client."""


class IngestResponse(msgspec.Struct):
    id: uuid.UUID
    status: str = "accepted"


_decoder = msgspec.json.Decoder(IngestRequest)


def _message(message: IngestMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.timestamp:
        out["timestamp"] = message.timestamp.isoformat()
    return out


@post("/v1/ingest", status_code=202, opt={"body": IngestRequest})
async def ingest(
    request: AnyRequest,
    memory: MemoryDep,
    tenant_id: TenantId,
    intake: IntakeDep,
) -> Response[IngestResponse]:
    """Accept an exchange for extraction: 202 once it is safe on disk; extraction follows in the worker."""
    body = await json_body(request, _decoder, memory.config)
    tenant_id = tenant_id
    exchange_id = (
        uuid.uuid5(_IDEMPOTENCY_NS, f"{tenant_id}:{body.user_id}:{body.idempotency_key}")
        if body.idempotency_key
        else new_id()
    )
    stamps = [m.timestamp for m in body.messages if m.timestamp is not None]
    exchange = Exchange(
        id=exchange_id,
        tenant_id=tenant_id,
        user=body.user_id,
        session=body.session_id,
        source=body.source,
        endpoint="/v1/ingest",
        messages=[_message(m) for m in body.messages],
        occurred_at=max(stamps) if stamps else now(),
        metadata=body.metadata,
    )
    await intake.accept(exchange)
    return Response(IngestResponse(id=exchange_id), status_code=202, headers=status_headers([]))
