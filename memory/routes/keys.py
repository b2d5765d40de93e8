"""The admin API: create, list and revoke API keys. Guarded by ``auth.admin_key`` (see :mod:`proxy.auth`)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import delete, get, post
from litestar.params import FromPath, FromQuery

from memoire import rules
from memory import db, keys
from memory.errors import NotFound
from memory.facts import NO_NUL
from memory.routes.context import AnyRequest, AuthenticatorDep, MemoryDep, json_body

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class CreateKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    tenant: Name | None = None
    """The tenant to add the key to, made if new. Default: a new tenant named like the key."""
    default_user: Annotated[str, msgspec.Meta(min_length=1, max_length=rules.MAX_NAME, pattern=NO_NUL)] = (
        rules.DEFAULT_USER
    )
    rate_limit: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None


class CreatedKey(msgspec.Struct):
    key: str
    """The key itself: shown this once, stored only as a hash."""
    info: keys.KeyInfo


class KeyList(msgspec.Struct):
    keys: list[keys.KeyInfo]


_decoder = msgspec.json.Decoder(CreateKey)


@post("/v1/admin/keys", status_code=201, opt={"admin": True, "body": CreateKey})
async def create_key(request: AnyRequest, memory: MemoryDep) -> CreatedKey:
    """Create an API key (``mk_…``), shown once, for a tenant."""
    body = await json_body(request, _decoder, memory.config)
    async with db.connection(memory.pool) as conn:
        new = await keys.create(
            conn, body.name, tenant=body.tenant, default_user=body.default_user, rate_limit=body.rate_limit
        )  # a tenant's name taken: TenantExists, a Conflict on ``tenant``
    return CreatedKey(key=new.key, info=new.info)


@get("/v1/admin/keys", opt={"admin": True})
async def list_keys(memory: MemoryDep, include_revoked: FromQuery[bool] = False) -> KeyList:
    """Every key (not the keys themselves), oldest first."""
    async with db.connection(memory.pool) as conn:
        return KeyList(keys=await keys.listing(conn, include_revoked=include_revoked))


@delete("/v1/admin/keys/{key_id:uuid}", status_code=200, opt={"admin": True})
async def revoke_key(
    memory: MemoryDep,
    authenticator: AuthenticatorDep,
    key_id: FromPath[uuid.UUID],
) -> keys.KeyInfo:
    """Revoke a key: at once in this process, within ``auth.cache_ttl`` seconds in the others."""
    async with db.connection(memory.pool) as conn:
        info = await keys.revoke(conn, key_id)
    if info is None:
        raise NotFound(f"no key {key_id}", param="key_id")
    authenticator.forget()
    return info
