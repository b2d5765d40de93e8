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


_BATCH = msgspec.json.Encoder()


async def record(conn: Connection, links: list[tuple[uuid.UUID, str, str, str]]) -> None:
    """Link each ``(tenant_id, response_id, user, session)`` in one statement; first links stay.

    The batch travels as one JSON document, which PostgreSQL unpacks: encoding four typed arrays cost the
    caller's event loop 6 µs a link (0.62 ms for 100), the JSON 2 µs (0.46 ms), and the caller is the
    proxy, between two relayed calls.
    """
    if not links:
        return
    await conn.execute(
        """INSERT INTO response_links (tenant_id, response_id, end_user, session)
           SELECT t, r, u, s FROM json_to_recordset($1::json) AS x (t uuid, r text, u text, s text)
           ON CONFLICT (tenant_id, response_id) DO NOTHING""",
        _BATCH.encode([{"t": str(t), "r": r, "u": u, "s": s} for t, r, u, s in links]).decode(),
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
