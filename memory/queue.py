"""The job queue as the memory core sees it: every job's one name, and the interface jobs are handed to.

The core decides what is queued and when (an exchange stored is an extraction to run, a failed job is one
to run again) but not how: :class:`Queue` is implemented on ARQ and Redis by the worker package
(``worker.queue.ArqQueue``), and the top floor (``stack``) hands that implementation to the API process.
So ``memory`` imports neither ``proxy`` nor ``worker``.

Each job has one name, :class:`Task`: the worker registers its functions under it, the cron table, the
``memoire jobs`` command and the admin endpoints read it, and job ids start with it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class Task(enum.StrEnum):
    """Every job the worker runs, by the one name it is queued, registered and reported under."""

    EXTRACT_FACTS = "extract_facts"
    """One recorded exchange: extract its facts, embed, dedup, supersede (queued for every exchange)."""
    RUN_DEDUPLICATION = "run_deduplication"
    """After an extraction, one user's recent facts; on demand, a sweep over every user."""
    RUN_SUPERSESSION = "run_supersession"
    """After deduplication, one user's single-valued slots; on demand, a sweep."""
    OPTIMIZE_MEMORY = "optimize_memory"
    """Every 6 hours: promote essential facts (the profile), demote stale ones."""
    DECAY_STALE_FACTS = "decay_stale_facts"
    """Daily: fade unused facts, archive the faded."""
    CONSOLIDATE_USER_MEMORY = "consolidate_user_memory"
    """Weekly: merge near-duplicates, write each user's profile summary again."""
    CARE_PAGE = "care_page"
    """One page of users of a sweep (the five above, run over everyone)."""
    REQUEUE_PENDING = "requeue_pending"
    """Every 30 s: queue again the exchanges still pending (a Redis that lost its queue)."""
    PURGE_RESPONSE_LINKS = "purge_response_links"
    """Daily: drop the links of responses the provider no longer keeps."""
    REEMBED_FACTS = "reembed_facts"
    """After a change of embedding model: embed again what another model embedded (``memoire jobs run``)."""


#: The sweeps over every user (or the users named): an operator may queue them by hand.
SWEEPS = frozenset(
    {
        Task.OPTIMIZE_MEMORY,
        Task.DECAY_STALE_FACTS,
        Task.CONSOLIDATE_USER_MEMORY,
        Task.RUN_DEDUPLICATION,
        Task.RUN_SUPERSESSION,
    }
)

#: What ``memoire jobs run`` runs in its own process.
BY_HAND = (Task.EXTRACT_FACTS, Task.REEMBED_FACTS, *sorted(SWEEPS))


def extraction_id(tenant_id: uuid.UUID, chat_log_id: uuid.UUID) -> str:
    """The job id of a chat log's extraction: derived from the row, so a replay or the requeue sweep does
    not queue a second job while one is queued."""
    return f"{Task.EXTRACT_FACTS}:{tenant_id}:{chat_log_id}"


@dataclass(frozen=True, slots=True)
class Stats:
    queued: int
    """Jobs waiting, deferred ones included."""
    extractions: Mapping[str, int]
    """Finished extraction jobs by outcome, since Redis began counting."""
    failures: Mapping[str, int]
    """Jobs failed for good, by task."""
    worker_alive: bool
    """Whether a worker has said lately that it runs."""


class Queue(Protocol):
    """Where jobs go. Every method raises :class:`memory.errors.QueueUnavailable` when the queue cannot be
    reached."""

    async def enqueue(
        self, task: str, /, *args: str, job_id: str | None = None, at: datetime | None = None, **kwargs: Any
    ) -> str | None:
        """Queue ``task`` (a :class:`Task`, or the name a failed job was recorded under) with its arguments
        (ids and names only: the task reloads its rows); returns the job's id, or None when a job of that id
        is already queued."""
        ...

    async def extract(self, logs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """Queue the extraction of each ``(tenant_id, chat_log_id)``."""
        ...

    async def ping(self) -> None: ...

    async def worker_alive(self) -> bool:
        """Whether a worker has said lately that it runs."""
        ...

    async def stats(self) -> Stats:
        """How the queue stands, as every worker counted it."""
        ...

    async def aclose(self) -> None: ...
