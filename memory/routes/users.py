"""An end user as a whole: ``GET /v1/users/{id}/profile`` and ``DELETE /v1/users/{id}`` (forget them)."""

from __future__ import annotations

import uuid

import msgspec
from litestar import delete, get
from litestar.params import FromPath, FromQuery

from memoire import rules
from memory import browse, db, purge, users
from memory.errors import Conflict, NotFound
from memory.intake import Intake
from memory.routes.context import IntakeDep, MemoryDep, TenantId
from memory.service import Memory


class Forgotten(msgspec.Struct, kw_only=True):
    user_id: str
    deleted: purge.Purged
    verified: bool
    """Checked after the deletes: nothing of the user is left in the database or this process's spool."""


@get("/v1/users/{user_id:str}/profile")
async def user_profile(memory: MemoryDep, tenant_id: TenantId, user_id: FromPath[str]) -> browse.Profile:
    """Who the user is now (current single-valued facts) and how many facts Mémoire holds, by status."""
    async with db.connection(memory.pool) as conn:
        found = await users.find(conn, tenant_id, user_id)
        profile = None if found is None else await browse.profile(conn, tenant_id, found)
    if profile is None:
        raise NotFound(f"no user {user_id!r}", param="user_id")
    return profile


async def _forget(memory: Memory, intake: Intake, tenant_id: uuid.UUID, user_id: str) -> Forgotten:
    name = rules.storable(user_id)
    pool = memory.pool

    async with db.transaction(pool) as conn:
        # Storing the user's exchanges waits on this lock, in every API process, and then stores only
        # what is still spooled: nothing read from the spool before can be stored after.
        await users.lock_names(conn, [(tenant_id, name)])
        spooled = await intake.drop_spooled(tenant_id, name)
        purged = await purge.purge_user(conn, tenant_id, name)
    memory.forget_profile(tenant_id)
    if purged is None and not spooled:
        raise NotFound(f"no user {user_id!r}", param="user_id")
    deleted = purged or purge.Purged()
    deleted.spool_entries = spooled
    async with db.connection(pool) as conn:
        left = await users.find(conn, tenant_id, name)
    if left is not None:  # new data arrived for the user in between: nothing was kept of the old
        raise Conflict(f"new data for {user_id!r} arrived while it was being forgotten; delete again")
    return Forgotten(user_id=user_id, deleted=deleted, verified=True)


@delete("/v1/users/{user_id:str}", status_code=200)
async def forget_user(
    memory: MemoryDep,
    intake: IntakeDep,
    tenant_id: TenantId,
    user_id: FromPath[str],
) -> Forgotten:
    """Delete every fact, embedding, chat log, session and spooled exchange of the user, then check that
    nothing is left."""
    return await _forget(memory, intake, tenant_id, user_id)


@delete("/v1/users", status_code=200)
async def forget_user_by_query(
    memory: MemoryDep,
    intake: IntakeDep,
    tenant_id: TenantId,
    user_id: FromQuery[str],
) -> Forgotten:
    """As ``DELETE /v1/users/{user_id}``, for user ids a path cannot carry (with ``/``)."""
    return await _forget(memory, intake, tenant_id, user_id)
