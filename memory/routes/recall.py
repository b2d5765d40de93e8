"""``POST /v1/recall``: the user's facts relevant to a query, ranked."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Response, post

from memory import recall
from memory.errors import NotFound
from memory.facts import TEMPORAL_STATUSES, Category, Fact, TemporalStatus
from memory.routes.context import AnyRequest, MemoryDep, TenantId, json_body, status_headers
from memory.routes.facts import UserId


class RecallRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: UserId
    query: Annotated[str, msgspec.Meta(max_length=8000)] = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    categories: list[Category] | None = None
    temporal: list[TemporalStatus | Literal["all"]] = msgspec.field(default_factory=lambda: ["current"])
    min_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    context: Annotated[list[Annotated[str, msgspec.Meta(max_length=8000)]], msgspec.Meta(max_length=8)] = (
        msgspec.field(default_factory=list)
    )
    """Earlier user messages of the conversation, oldest first: a short or referring query ("and hers?")
    is searched with the last two."""


class RecallResponse(msgspec.Struct):
    facts: list[Fact]


_decoder = msgspec.json.Decoder(RecallRequest)


@post("/v1/recall", status_code=200, opt={"body": RecallRequest})
async def recall_facts(
    request: AnyRequest, memory: MemoryDep, tenant_id: TenantId
) -> Response[RecallResponse]:
    """The user's facts for the query's parts, ranked and fused; current ones unless ``temporal`` asks."""
    body = await json_body(request, _decoder, memory.config)
    temporal: tuple[TemporalStatus, ...] = (
        TEMPORAL_STATUSES if "all" in body.temporal else tuple(t for t in body.temporal if t != "all")
    )
    query = recall.Query(
        text=body.query,
        limit=body.limit,
        categories=body.categories,
        temporal=temporal or ("current",),
        min_score=body.min_score,
        context=tuple(body.context[-2:]),
    )
    found = await memory.recall_for_call(tenant_id, body.user_id, query, profile=False)
    if found.facts is None:
        raise NotFound(f"no user {body.user_id!r}", param="user_id")
    headers = status_headers(found.degraded)
    headers["server-timing"] = f"embed;dur={found.embed_ms:.3f}, db;dur={found.db_ms:.3f}"
    return Response(RecallResponse(facts=found.facts), headers=headers)
