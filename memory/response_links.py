"""Response links: which tenant, end user and session created an OpenAI response id.

Every tenant that calls ``/v1/responses`` with the server's provider key shares one provider account, in
which any response id can be read, continued or deleted. The proxy therefore writes a link when a response
is created and honours an id only for the tenant that holds its link. The link also carries the end user
and session, so a call that continues a response (``previous_response_id``) joins its session.
"""

from __future__ import annotations

import uuid

import msgspec

from memory.db import Connection

#: The provider keeps a stored response for 30 days; a link outlives it by a day, then is purged.
RETENTION_DAYS = 31


class Link(msgspec.Struct, frozen=True):
    user: str
    session: str


async def record(conn: Connection, tenant_id: uuid.UUID, response_id: str, user: str, session: str) -> None:
    """Link ``response_id`` to the tenant; a second write of the same id keeps the first link."""
    await conn.execute(
        """INSERT INTO response_links (tenant_id, response_id, end_user, session)
           VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, response_id) DO NOTHING""",
        tenant_id,
        response_id,
        user,
        session,
    )


async def record_many(conn: Connection, links: list[tuple[uuid.UUID, str, str, str]]) -> None:
    """Link each ``(tenant_id, response_id, user, session)`` in one statement; first links stay."""
    if not links:
        return
    tenants, ids, users, sessions = (list(column) for column in zip(*links, strict=True))
    await conn.execute(
        """INSERT INTO response_links (tenant_id, response_id, end_user, session)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
           ON CONFLICT (tenant_id, response_id) DO NOTHING""",
        tenants,
        ids,
        users,
        sessions,
    )


async def find(conn: Connection, tenant_id: uuid.UUID, response_id: str) -> Link | None:
    """The tenant's link for ``response_id``; None when another tenant, or nobody, created it."""
    row = await conn.fetchrow(
        "SELECT end_user, session FROM response_links WHERE tenant_id = $1 AND response_id = $2",
        tenant_id,
        response_id,
    )
    return Link(row["end_user"], row["session"]) if row else None


async def forget_user(conn: Connection, tenant_id: uuid.UUID, user: str) -> int:
    """Drop the links of an end user who is being forgotten; returns how many there were."""
    status = await conn.execute(
        "DELETE FROM response_links WHERE tenant_id = $1 AND end_user = $2", tenant_id, user
    )
    return int(status.split()[-1])


async def purge_expired(conn: Connection) -> int:
    """Drop links older than the provider keeps their responses; returns how many."""
    status = await conn.execute(
        "DELETE FROM response_links WHERE created_at < now() - make_interval(days => $1)", RETENTION_DAYS
    )
    return int(status.split()[-1])
