"""``memoire keys create|list|revoke``: manage API keys in the database of a running ``memoire up`` (found
through ``--data-dir``) or at ``MEMOIRE_DATABASE_URL``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import asyncpg

from memoire.rules import DEFAULT_USER
from memory import keys
from memory.errors import TenantExists


def _line(info: keys.KeyInfo) -> str:
    revoked = f"  revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else ""
    limit = "default" if info.rate_limit is None else f"{info.rate_limit}/min"
    return (
        f"{info.id}  {info.prefix}…  {info.name!r}  tenant {info.tenant!r}  user {info.default_user!r}"
        f"  rate {limit}  created {info.created_at:%Y-%m-%d %H:%M}{revoked}"
    )


async def _run(dsn: str, args: argparse.Namespace) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        if args.action == "create":
            try:
                new = await keys.create(
                    conn,
                    args.name,
                    tenant=args.tenant,
                    default_user=args.default_user or DEFAULT_USER,
                    rate_limit=args.rate_limit,
                )
            except TenantExists as exc:
                return 1, [f"memoire: {exc} (--tenant {exc.name})"]
            return 0, [
                f"created {_line(new.info)}",
                "the key is shown this once; store it now:",
                new.key,
            ]
        if args.action == "list":
            return 0, [_line(i) for i in await keys.listing(conn, include_revoked=args.all)] or ["no keys"]
        try:
            key_id = uuid.UUID(args.id)
        except ValueError:
            return 2, [f"memoire: {args.id!r} is not a key id (see `memoire keys list`)"]
        info = await keys.revoke(conn, key_id)
        if info is None:
            return 1, [f"memoire: no key {key_id}"]
        return 0, [f"revoked {_line(info)}"]
    finally:
        await conn.close()


def run(dsn: str, args: argparse.Namespace) -> int:
    code, lines = asyncio.run(_run(dsn, args))
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code


async def ensure_development_key(dsn: str) -> str | None:
    """On a database with no key at all, create one for the default tenant and return it (first start)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
            if await keys.any_exist(conn):
                return None
            return (await keys.create(conn, "development", tenant="default")).key
    finally:
        await conn.close()
