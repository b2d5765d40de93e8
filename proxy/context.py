"""``POST /v1/context``: the memory block for a query, built exactly as the proxy builds it.

For clients that call their provider directly (the Python SDK's ``wrap``): they ask for the block, add it to
their own prompt with the same rules (:func:`memoire.rules.add_to_messages`), and ingest the exchange
afterwards through ``/v1/ingest``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, post

from memoire import rules
from memoire.rules import CONTEXT_TURNS, clip
from memory import recall
from memory.facts import NO_NUL
from memory.routes.context import AnyRequest, TenantId, json_body, status_headers
from memory.routes.facts import UserId
from proxy.remember import RECALL_TEMPORAL
from proxy.services import ServicesDep


class ContextRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    user_id: UserId
    query: Annotated[str, msgspec.Meta(max_length=200_000)]
    """The latest user message; its last characters are searched, as the proxy does."""
    context: Annotated[list[Annotated[str, msgspec.Meta(max_length=200_000)]], msgspec.Meta(max_length=8)] = (
        msgspec.field(default_factory=list)
    )
    """Earlier user messages, oldest first: a short or referring query is searched with the last two."""
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_NUL)] | None = None


class ContextResponse(msgspec.Struct):
    block: str | None
    """The memory block to add to the system prompt; null when nothing relevant is remembered."""
    recalled: int
    """How many facts the block holds."""


_decoder = msgspec.json.Decoder(ContextRequest)


@post("/v1/context", status_code=200, opt={"body": ContextRequest})
async def memory_context(
    request: AnyRequest, services: ServicesDep, tenant_id: TenantId
) -> Response[ContextResponse]:
    """The memory block the proxy would add for this user and message."""
    body = await json_body(request, _decoder, services.config)
    text = clip(body.query)
    earlier = tuple(clip(turn) for turn in body.context[-CONTEXT_TURNS:])
    block: str | None = None
    count = 0
    degraded: list[str] = []
    if text.strip():
        query = recall.Query(
            text=text, limit=services.config.memory.recall_limit, temporal=RECALL_TEMPORAL, context=earlier
        )
        found = await services.memory.recall_for_call(tenant_id, rules.storable(body.user_id), query)
        degraded = found.degraded
        if found.facts or found.profile:
            block, count = services.block.build(found.facts or [], found.profile)
    return Response(ContextResponse(block=block, recalled=count), headers=status_headers(degraded))
