"""One fact by id: read, corrected by the app (``PATCH``), or deleted. Always within the caller's tenant.

A patch changes only the fields it names; a new ``text`` is embedded again, so recall finds the fact by its
new wording. Status moves only between ``active`` and ``archived``: supersession is the write path's, and
history stays as it was. A deleted fact is gone (row and vector); a fact it had superseded, or that had
superseded it, keeps its row and loses the pointer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from memory import users
from memory.db import Connection
from memory.embeddings import Vector
from memory.errors import InvalidField
from memory.facts import (
    COLUMNS,
    NO_NUL,
    Category,
    Fact,
    Moment,
    SlotName,
    TemporalStatus,
    Text,
    Unit,
    check_range,
    from_row,
)


class FactPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields of ``PATCH /v1/facts/{id}``; each one left out stays as it is, ``null`` clears it."""

    text: Text | UnsetType = UNSET
    category: Category | UnsetType | None = UNSET
    slot: SlotName | UnsetType | None = UNSET
    value: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)] | UnsetType | None = UNSET
    temporal_status: TemporalStatus | UnsetType = UNSET
    valid_from: Moment | UnsetType | None = UNSET
    valid_to: Moment | UnsetType | None = UNSET
    confidence: Unit | UnsetType = UNSET
    importance: Unit | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    status: Literal["active", "archived"] | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET
    """A pinned fact never decays."""

    def __post_init__(self) -> None:
        for name in ("valid_from", "valid_to"):
            moment = getattr(self, name)
            check_range(moment if isinstance(moment, datetime) else None, name)

    def changes(self) -> dict[str, Any]:
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not UNSET}


_GET = f"""
SELECT {COLUMNS}
FROM memory_facts f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
WHERE f.tenant_id = $1 AND f.id = $2
"""


async def get(conn: Connection, tenant_id: uuid.UUID, fact_id: uuid.UUID) -> Fact | None:
    row = await conn.fetchrow(_GET, tenant_id, fact_id)
    return None if row is None else from_row(row)


async def _locked(conn: Connection, tenant_id: uuid.UUID, fact_id: uuid.UUID) -> Any:
    """The fact's row, with its user's write lock held until the transaction ends."""
    user_id = await conn.fetchval(
        "SELECT user_id FROM memory_facts WHERE tenant_id = $1 AND id = $2", tenant_id, fact_id
    )
    if user_id is None:
        return None
    await users.lock(conn, tenant_id, user_id)
    return await conn.fetchrow(
        "SELECT * FROM memory_facts WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, fact_id
    )


async def update(
    conn: Connection,
    tenant_id: uuid.UUID,
    fact_id: uuid.UUID,
    patch: FactPatch,
    embedding: tuple[Vector, str] | None,
) -> Fact | None:
    """Apply ``patch`` in the caller's transaction; None if the tenant has no such fact.

    ``embedding`` is the new text's vector and model name, required when the patch changes ``text``.
    """
    row = await _locked(conn, tenant_id, fact_id)
    if row is None:
        return None
    changes = patch.changes()
    if "status" in changes and row["status"] not in ("active", "archived"):
        raise InvalidField(f"a {row['status']} fact keeps its status; it is history", param="status")
    valid_from = changes.get("valid_from", row["valid_from"])
    valid_to = changes.get("valid_to", row["valid_to"])
    if valid_from and valid_to and valid_to < valid_from:
        raise InvalidField("valid_to is before valid_from", param="valid_to")
    if "text" in changes:
        if embedding is None:
            raise ValueError("a new text needs its embedding")
        vector, model = embedding
        changes.update(embedding=vector, embedding_model=model, embedding_dim=len(vector))
    if "status" in changes:
        changes["expired_at"] = datetime.now(UTC) if changes["status"] == "archived" else None

    if changes:
        # Column names come from FactPatch's fields (and the three above), never from the request.
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=3))
        await conn.execute(
            f"UPDATE memory_facts SET {assignments}, updated_at = now() WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            fact_id,
            *changes.values(),
        )
    return await get(conn, tenant_id, fact_id)


async def delete(conn: Connection, tenant_id: uuid.UUID, fact_id: uuid.UUID) -> bool:
    """Delete the fact (in the caller's transaction); False if the tenant has no such fact."""
    if await _locked(conn, tenant_id, fact_id) is None:
        return False
    await conn.execute(
        "UPDATE memory_facts SET superseded_by = NULL WHERE tenant_id = $1 AND superseded_by = $2",
        tenant_id,
        fact_id,
    )
    await conn.execute("DELETE FROM memory_facts WHERE tenant_id = $1 AND id = $2", tenant_id, fact_id)
    return True
