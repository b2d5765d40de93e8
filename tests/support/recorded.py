"""What a test reads back after a call through the proxy: the body the fake upstream last received, and
the chat logs the tee wrote."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from tests.support.db import fetch_sync
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_until


def sent(fake: FakeUpstream) -> dict[str, Any]:
    """The JSON body of the last request the fake upstream received."""
    body: dict[str, Any] = fake.requests[-1].json()
    return body


def chat_logs(dsn: str, count: int) -> list[dict[str, Any]]:
    """The chat logs, oldest first, once there are ``count``: endpoint, messages, reply, usage, session
    and user, as stored."""

    def ready() -> list[asyncpg.Record] | None:
        rows = fetch_sync(
            dsn,
            """SELECT l.endpoint, l.messages::text AS messages, l.reply::text AS reply,
                      l.usage::text AS usage, s.external_id AS session, u.external_id AS user
               FROM chat_logs l JOIN users u ON u.id = l.user_id LEFT JOIN sessions s ON s.id = l.session_id
               ORDER BY l.occurred_at""",
        )
        return rows if len(rows) >= count else None

    return [
        {
            "endpoint": r["endpoint"],
            "messages": json.loads(r["messages"]),
            "reply": json.loads(r["reply"]) if r["reply"] else None,
            "usage": json.loads(r["usage"]) if r["usage"] else None,
            "session": r["session"],
            "user": r["user"],
        }
        for r in wait_until(ready)
    ]
