"""An end user as a whole: ``GET /v1/users/{id}/profile`` and ``DELETE /v1/users/{id}`` (forget them)."""

from __future__ import annotations

import msgspec
from litestar import delete, get
from litestar.params import FromPath

from memoire.errors import NotFound
from memory import browse, db, purge, users
from memory.intake import Intake
from memory.routes.context import AnyRequest, memory, tenant


class Forgotten(msgspec.Struct, kw_only=True):
    user_id: str
    deleted: purge.Purged
    verified: bool
    """Checked after the deletes: nothing of the user is left in the database or this process's spool."""


@get("/v1/users/{user_id:str}/profile")
async def user_profile(request: AnyRequest, user_id: FromPath[str]) -> browse.Profile:
    """Who the user is now (current single-valued facts) and how many facts Mémoire holds, by status."""
    async with db.connection(memory(request).pool) as conn:
        found = await users.find(conn, tenant(request), user_id)
        profile = None if found is None else await browse.profile(conn, tenant(request), found)
    if profile is None:
        raise NotFound(f"no user {user_id!r}", param="user_id")
    return profile


@delete("/v1/users/{user_id:str}", status_code=200)
async def forget_user(request: AnyRequest, user_id: FromPath[str]) -> Forgotten:
    """Delete every fact, embedding, chat log, session and spooled exchange of the user, then check that
    nothing is left."""
    tenant_id = tenant(request)
    name = users.storable(user_id)
    intake: Intake = request.app.state.intake
    spooled = await intake.purge(tenant_id, name)
    async with db.transaction(memory(request).pool) as conn:
        purged = await purge.purge_user(conn, tenant_id, name)
    # An exchange that reached the spool while the transaction ran is dropped too.
    spooled += await intake.purge(tenant_id, name)
    if purged is None and not spooled:
        raise NotFound(f"no user {user_id!r}", param="user_id")
    deleted = purged or purge.Purged()
    deleted.spool_entries = spooled
    async with db.connection(memory(request).pool) as conn:
        verified = await users.find(conn, tenant_id, name) is None
    return Forgotten(user_id=user_id, deleted=deleted, verified=verified)
