"""The worker's jobs. Each takes ids, reloads its rows, and is safe to run twice."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from arq import Retry

from memoire.errors import StorageUnavailable
from memory import db
from worker.queue import enqueue_ingest

log = logging.getLogger(__name__)

#: Chat logs re-queued by one sweep at most, oldest first.
REQUEUE_BATCH = 1000


async def ingest_exchange(ctx: dict[str, Any], tenant_id: str, chat_log_id: str) -> str:
    """Take in a recorded exchange. For now it marks the chat log received; extraction builds on this."""
    try:
        async with db.transaction(ctx["pool"]) as conn:
            status = await conn.fetchval(
                """UPDATE chat_logs SET status = 'received', received_at = coalesce(received_at, now())
                   WHERE tenant_id = $1 AND id = $2 RETURNING status""",
                uuid.UUID(tenant_id),
                uuid.UUID(chat_log_id),
            )
    except StorageUnavailable as exc:
        raise Retry(defer=min(60, 2 ** ctx.get("job_try", 1))) from exc
    if status is None:
        log.info("chat log %s is gone (its user was deleted); nothing to do", chat_log_id)
        return "missing"
    return "received"


async def requeue_pending(ctx: dict[str, Any]) -> int:
    """Queue again chat logs still pending after ``worker.requeue_after`` seconds.

    Covers a Redis that lost its queue (restarted without persistence). Job ids are derived from the chat
    log, so a log whose job is still queued is not queued twice.
    """
    after: float = ctx["config"].worker.requeue_after
    try:
        async with db.transaction(ctx["pool"]) as conn:
            rows = await conn.fetch(
                """SELECT tenant_id, id FROM chat_logs
                   WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
                   ORDER BY created_at LIMIT $2""",
                after,
                REQUEUE_BATCH,
            )
    except StorageUnavailable:
        log.warning("requeue sweep skipped: database unavailable")
        return 0
    await enqueue_ingest(ctx["redis"], [(r["tenant_id"], r["id"]) for r in rows])
    if rows:
        log.info("queued %d pending chat logs again", len(rows))
    return len(rows)
