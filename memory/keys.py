"""API keys: created, listed, revoked and looked up. Only a key's SHA-256 is ever stored.

A key is ``mk_`` followed by 32 random bytes in base64url (43 characters). It is shown once, when created.
Each key belongs to one tenant; ``create`` makes the tenant when it does not exist yet.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import datetime

import msgspec

from memoire.rules import DEFAULT_USER
from memory.db import Connection
from memory.errors import TenantExists
from memory.exchanges import DEFAULT_TENANT_ID

PREFIX = "mk_"
#: Characters of the key kept in clear, to tell keys apart in listings (``mk_`` and 6 of the 43).
SHOWN = len(PREFIX) + 6


def generate() -> str:
    """A new key: ``mk_`` and 32 random bytes, base64url without padding."""
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def digest(key: str | bytes) -> bytes:
    """The SHA-256 a key is stored and looked up by."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts for: the tenant, the key (None with auth off and no key), and its settings."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None
    default_user: str = DEFAULT_USER
    rate_limit: int | None = None
    """Requests per minute; None: the server's default."""


ANONYMOUS = Principal(DEFAULT_TENANT_ID, None)
"""Calls without a key while auth is off."""


class KeyInfo(msgspec.Struct, kw_only=True):
    """A key as listed: everything but the key itself."""

    id: uuid.UUID
    name: str
    tenant: str
    tenant_id: uuid.UUID
    prefix: str
    default_user: str
    rate_limit: int | None
    created_at: datetime
    revoked_at: datetime | None


class NewKey(msgspec.Struct, kw_only=True):
    """A key just created: its listing and, this once, the key."""

    key: str
    info: KeyInfo


_SELECT = """
SELECT k.id, k.name, t.name AS tenant, k.tenant_id, k.prefix, k.default_user, k.rate_limit,
       k.created_at, k.revoked_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
"""


def _info(row: object) -> KeyInfo:
    return msgspec.convert(dict(row), KeyInfo)  # type: ignore[call-overload]


async def create(
    conn: Connection,
    name: str,
    *,
    tenant: str | None = None,
    default_user: str = DEFAULT_USER,
    rate_limit: int | None = None,
) -> NewKey:
    """Create a key. With ``tenant`` (a name), the key joins that tenant, made if new. Without, the key gets
    a new tenant named like the key; :class:`TenantExists` if one has that name already, so that a key
    never joins another's data by accident."""
    key = generate()
    async with conn.transaction():
        if tenant is None:
            tenant_id = await conn.fetchval(
                "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id", name
            )
            if tenant_id is None:
                raise TenantExists(name)
        else:
            tenant_id = await conn.fetchval(
                """INSERT INTO tenants (name) VALUES ($1)
                   ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
                tenant,
            )
        key_id = await conn.fetchval(
            """INSERT INTO api_keys (tenant_id, name, hash, prefix, default_user, rate_limit)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            tenant_id,
            name,
            digest(key),
            key[:SHOWN],
            default_user,
            rate_limit,
        )
        row = await conn.fetchrow(_SELECT + "WHERE k.id = $1", key_id)
    return NewKey(key=key, info=_info(row))


async def listing(conn: Connection, *, include_revoked: bool = False) -> list[KeyInfo]:
    rows = await conn.fetch(
        _SELECT + "WHERE $1 OR k.revoked_at IS NULL ORDER BY k.created_at, k.id", include_revoked
    )
    return [_info(r) for r in rows]


async def revoke(conn: Connection, key_id: uuid.UUID) -> KeyInfo | None:
    """Revoke the key; None if there is no such key. Revoking twice keeps the first time."""
    row = await conn.fetchrow(
        """WITH r AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
                      RETURNING *)
           SELECT r.id, r.name, t.name AS tenant, r.tenant_id, r.prefix, r.default_user, r.rate_limit,
                  r.created_at, r.revoked_at
           FROM r JOIN tenants t ON t.id = r.tenant_id""",
        key_id,
    )
    return None if row is None else _info(row)


async def lookup(conn: Connection, key_digest: bytes) -> Principal | None:
    """The principal of a live key with this digest, or None."""
    row = await conn.fetchrow(
        "SELECT id, tenant_id, default_user, rate_limit FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
        key_digest,
    )
    if row is None:
        return None
    return Principal(row["tenant_id"], row["id"], row["default_user"], row["rate_limit"])


async def any_exist(conn: Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)"))
