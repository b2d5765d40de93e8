"""Forgetting an end user: ``DELETE /v1/users/{id}`` removes every trace, then checks that none is left.

In one transaction, under the user's write lock: the user's facts (and with them their vectors), chat logs,
sessions, the links of the responses they were given, and the user row. Then the API process's spool, which
may still hold exchanges of that user waiting for the database. Each count is reported, and the check runs
after the deletes, in the same transaction.
"""

from __future__ import annotations

import uuid

import msgspec

from memory import response_links, users
from memory.db import Connection
from memory.errors import PurgeIncomplete

#: What a user's data lives in, each scoped by tenant and user.
_TABLES = ("memory_facts", "chat_logs", "sessions")


class Purged(msgspec.Struct, kw_only=True):
    facts: int = 0
    chat_logs: int = 0
    sessions: int = 0
    response_links: int = 0
    spool_entries: int = 0


async def purge_user(conn: Connection, tenant_id: uuid.UUID, external_id: str) -> Purged | None:
    """Delete everything stored for the user, in the caller's transaction; None if there is no such user."""
    user_id = await users.find(conn, tenant_id, external_id)
    if user_id is None:
        return None
    await users.lock(conn, tenant_id, user_id)
    counts: dict[str, int] = {}
    for table in _TABLES:
        status = await conn.execute(
            f"DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2",  # noqa: S608 (fixed names)
            tenant_id,
            user_id,
        )
        counts[table] = int(status.split()[-1])
    links = await response_links.forget_user(conn, tenant_id, external_id)
    await conn.execute("DELETE FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, user_id)
    left = await conn.fetchval(
        """SELECT (SELECT count(*) FROM memory_facts WHERE tenant_id = $1 AND user_id = $2)
                + (SELECT count(*) FROM chat_logs WHERE tenant_id = $1 AND user_id = $2)
                + (SELECT count(*) FROM sessions WHERE tenant_id = $1 AND user_id = $2)
                + (SELECT count(*) FROM users WHERE tenant_id = $1 AND id = $2)
                + (SELECT count(*) FROM response_links WHERE tenant_id = $1 AND end_user = $3)""",
        tenant_id,
        user_id,
        external_id,
    )
    if left:
        raise PurgeIncomplete(f"{left} rows of the user remained after the deletes")
    return Purged(
        facts=counts["memory_facts"],
        chat_logs=counts["chat_logs"],
        sessions=counts["sessions"],
        response_links=links,
    )
