"""``GET /v1/slots``: the slot vocabulary, a stable API."""

from __future__ import annotations

from litestar import get

from memory.slots import VOCABULARY, Slot


@get("/v1/slots", sync_to_thread=False)
def list_slots() -> dict[str, list[Slot]]:
    """Every slot the extractor knows, with its cardinality (single or multi) and a description."""
    return {"slots": list(VOCABULARY)}
