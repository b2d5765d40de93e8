"""The spool keeps entries across restarts until they are removed, honours retry delays, and hands each due
entry to one of the processes that share it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memory.spool import Spool


async def test_entries_survive_a_reopen_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    await spool.put([("a", b"1"), ("b", b"2")])
    await spool.put([("a", b"changed")])  # the same id again is ignored
    await spool.close()

    reopened = Spool(tmp_path / "spool.sqlite3")
    entries = await reopened.claim(10, lease=30)
    assert [(e.id, e.payload) for e in entries] == [("a", b"1"), ("b", b"2")]
    await reopened.remove(["a"])
    assert await reopened.size() == 1
    await reopened.close()


async def test_deferred_entries_wait_their_turn(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    await spool.put([("a", b"1"), ("b", b"2")])
    await spool.defer(["a"], delay=60, error="database unavailable")
    assert [e.id for e in await spool.claim(10, lease=30)] == ["b"]
    await spool.remove(["b"])
    wait = await spool.next_due_in()
    assert wait is not None
    assert 55 < wait <= 60
    await spool.defer(["a"], delay=0, error="again")
    (entry,) = await spool.claim(10, lease=30)
    assert entry.attempts == 2
    await spool.remove(["a"])
    assert await spool.next_due_in() is None
    await spool.close()


async def test_processes_sharing_a_spool_each_claim_different_entries(tmp_path: Path) -> None:
    """Three spools on one file, as three API processes hold it, claim in turn while more comes in: every
    entry is taken once, by one of them."""
    path = tmp_path / "spool.sqlite3"
    spools = [Spool(path) for _ in range(3)]
    ids = [f"e{n:04d}" for n in range(600)]
    claimed: list[list[str]] = [[] for _ in spools]

    async def writer() -> None:
        for start in range(0, len(ids), 50):
            await spools[0].put((eid, b"x") for eid in ids[start : start + 50])
            await asyncio.sleep(0.002)

    async def deliverer(n: int) -> None:
        while sum(map(len, claimed)) < len(ids):
            entries = await spools[n].claim(7, lease=60)
            claimed[n] += [e.id for e in entries]
            await asyncio.sleep(0.003)  # the delivery
            await spools[n].remove(e.id for e in entries)

    await asyncio.wait_for(asyncio.gather(writer(), *(deliverer(n) for n in range(3))), 60)
    taken = [eid for mine in claimed for eid in mine]
    assert sorted(taken) == ids  # each once
    assert all(claimed), [len(mine) for mine in claimed]  # and the work was shared
    for spool in spools:
        await spool.close()


async def test_a_claim_that_is_not_settled_lapses_to_another_process(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    dead, alive = Spool(path), Spool(path)
    await dead.put([("a", b"1"), ("b", b"2")])
    assert [e.id for e in await dead.claim(1, lease=0.3)] == ["a"]
    # While the claim holds, the other process passes "a" by; once it lapses, it takes it.
    assert [e.id for e in await alive.claim(10, lease=30)] == ["b"]
    assert await alive.claim(10, lease=30) == []
    await asyncio.sleep(0.35)
    [entry] = await alive.claim(10, lease=30)
    assert (entry.id, entry.payload) == ("a", b"1")
    await dead.close()
    await alive.close()
