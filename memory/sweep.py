"""The sweep: the journal segments of API processes that are gone, spooled by one that lives.

Each API process journals what it captured until its spool holds it (:mod:`memory.journal`). A process
killed in between leaves records nobody will spool; the sweep finds them (a segment nobody holds the lock
of), reads each back into its build (``revive``, given by the proxy, which knows how its captures are read)
and spools them, a batch at a time, as the intake spools its own. It runs when an API process starts, so
the one that replaces a dead process takes up its records, and every few seconds after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from memory.exchanges import Exchange
from memory.journal import Journal, Orphan

log = logging.getLogger(__name__)

Build = Callable[[], Exchange | None]
#: Reads a journal record back into the build it was submitted with.
Revive = Callable[[bytes], Build]
#: Spools builds, as the intake's collector does.
Spool = Callable[[list[Build]], Awaitable[None]]


async def sweep(journal: Journal, revive: Revive, spool: Spool, batch_size: int) -> int:
    """Spool the records of the segments whose process is gone; returns how many."""
    orphans = await asyncio.to_thread(list, journal.orphans())  # read off the event loop
    swept = 0
    try:
        while orphans:
            swept += await _spool_orphan(orphans[0], revive, spool, batch_size)
            orphans.pop(0)
    finally:
        for orphan in orphans:  # not spooled (the sweep failed, or was cancelled): left for the next
            orphan.keep()
    return swept


async def _spool_orphan(orphan: Orphan, revive: Revive, spool: Spool, batch_size: int) -> int:
    """Spool ``orphan``'s records and remove it; one that holds a record that cannot be read (written by
    another version) is set aside for an operator once the others are spooled."""
    unreadable = 0
    for at in range(0, len(orphan.records), batch_size):
        builds: list[Build] = []
        for record in orphan.records[at : at + batch_size]:
            try:
                builds.append(revive(record))
            except Exception:
                unreadable += 1
                log.exception("a journal record in %s cannot be read", orphan.path)
        await spool(builds)
    if unreadable:
        orphan.set_aside()
    else:
        orphan.done()
    spooled = len(orphan.records) - unreadable
    if spooled:
        log.info("%d exchanges of a process that is gone were spooled from its journal", spooled)
    return spooled
